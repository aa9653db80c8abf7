"""Ansible's INI inventory format.

::

    mx00.example.com                      # before any section: ungrouped
    [mail]                                # a group and its hosts
    mx[01:20].example.com ansible_user=ops
    smtp-in:2525 fleet_role=relay         # host:port and inline vars
    [mail:vars]                           # the group's variables
    smarthost=relay.example.com
    [europe:children]                     # groups inside a group
    mail

Values are read as the INI plugin reads them: a Python literal (``25``,
``True``, ``[1, 2]``, ``'quoted'``) becomes that value, anything else stays
a string.  On host lines the words are split like a shell would (quotes
group words, ``#`` starts a comment); in ``[g:vars]`` the value is the whole
rest of the line.  Section names are kept as written (``mail-eu``), or made
safe (``mail_eu``) when ``force_valid_group_names`` says so, as in Ansible.
A ``[g:children]`` or ``[g:vars]`` section may name a group declared further
down the same file.
"""

from __future__ import annotations

import ast
import re
import shlex
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fleet.errors import InventoryError
from fleet.inventory.builder import InventoryBuilder
from fleet.inventory.hostnames import expand_host_entry

_SECTION = re.compile(r"^\[([^:\]\s]+)(?::(\w+))?\]\s*(?:#.*)?$")
_GROUP_NAME = re.compile(r"^([^:\]\s]+)\s*(?:#.*)?$")
_PLAIN_WORD = re.compile(r"^[A-Za-z_][\w.-]*$")
_INTEGER = re.compile(r"^-?[1-9][0-9]*$|^0$")
_SHELL_SPECIAL = re.compile(r"[\"'\\#]")
_SCALARS = (str, int, float, bool, type(None))


@dataclass
class _Pending:
    """A group named by [g:children] or [g:vars] before its own section."""

    line: int
    kind: str  # "children" | "vars"
    parents: list[str] = field(default_factory=list)


class _IniReader:
    def __init__(self, builder: InventoryBuilder, path: Path) -> None:
        self.builder = builder
        self.path = path
        self.group = "ungrouped"
        self.state = "hosts"
        self.pending: dict[str, _Pending] = {}
        # Literals read so far (an inventory repeats its values), for this file's reading only:
        # a process-wide cache would keep inventory values, passwords among them, for good.
        self.literals: dict[str, Any] = {}

    def read(self, text: str) -> None:
        for number, raw in enumerate(text.splitlines(), start=1):
            line = raw.strip()
            if not line or line[0] in "#;":
                continue
            try:
                self._line(line, number)
            except InventoryError:
                raise
            except ValueError as exc:
                raise InventoryError(str(exc), path=self.path, line=number) from exc
        self._check_pending()

    def _line(self, line: str, number: int) -> None:
        section = _SECTION.match(line)
        if section:
            self._section(section.group(1), section.group(2) or "hosts", number)
        elif line.startswith("[") and line.endswith("]"):
            raise ValueError(
                f"invalid section header {line!r}: write [group], [group:vars] or "
                "[group:children], with no spaces inside the brackets"
            )
        elif self.state == "hosts":
            self._host_line(line)
        elif self.state == "vars":
            key, value = parse_variable_line(line, self.literals)
            self.builder.set_group_var(self.group, key, value)
        else:
            self._child_line(line, number)

    def _section(self, name: str, kind: str, number: int) -> None:
        if kind not in ("hosts", "children", "vars"):
            raise ValueError(
                f"section [{name}:{kind}] has unknown type {kind!r}: use :vars or :children"
            )
        group = self.builder.group_name(name, f"{self.path}:{number}")
        if group not in self.builder.groups:
            # [g:vars] alone does not declare g; remember to check it is declared later.
            if kind == "vars" and group not in self.pending:
                self.pending[group] = _Pending(line=number, kind="vars")
            self.builder.add_group(group)
        waiting = self.pending.get(group)
        if waiting and kind != "vars":
            if waiting.kind == "children":
                self._attach_pending_children(group)
            else:
                del self.pending[group]
        self.group, self.state = group, kind

    def _attach_pending_children(self, group: str) -> None:
        for parent in self.pending[group].parents:
            self.builder.add_child(parent, group)
            waiting = self.pending.get(parent)
            if waiting and waiting.kind == "children":
                self._attach_pending_children(parent)
        del self.pending[group]

    def _host_line(self, line: str) -> None:
        words = split_host_line(line)
        if not words:
            return
        names, port = expand_host_entry(words[0])
        variables = {}
        for word in words[1:]:
            if "=" not in word:
                raise ValueError(
                    "expected key=value after the host name, found a word without '=' "
                    '(quote values that contain spaces: key="two words")'
                )
            key, value = word.split("=", 1)
            variables[key] = parse_value(value, self.literals)
        for name in names:
            self.builder.add_host(name, self.group, port=port, source=self.path)
            for key, value in variables.items():
                self.builder.set_host_var(name, key, _copy(value))

    def _child_line(self, line: str, number: int) -> None:
        match = _GROUP_NAME.match(line)
        if not match:
            raise ValueError(f"expected one group name per line in [{self.group}:children]")
        child = match.group(1)
        if child in self.builder.groups:
            self.builder.add_child(self.group, child)
        elif child in self.pending:
            self.pending[child].parents.append(self.group)
        else:
            self.pending[child] = _Pending(line=number, kind="children", parents=[self.group])

    def _check_pending(self) -> None:
        for name, waiting in self.pending.items():
            if waiting.kind == "vars":
                message = (
                    f"section [{name}:vars] is for a group that is never declared: "
                    f"add a [{name}] or [{name}:children] section"
                )
            else:
                message = f"[{waiting.parents[-1]}:children] names {name!r}, " + self._why_unknown(
                    name
                )
            raise InventoryError(message, path=self.path, line=waiting.line)

    def _why_unknown(self, name: str) -> str:
        if name in self.builder.hosts:
            return "which is a host, not a group: list hosts in a [group] section"
        if name in self.builder.renamed:
            return (
                f"but that group was renamed {self.builder.renamed[name]!r} "
                "(force_valid_group_names): use that name in both places"
            )
        return f"which is not a group: declare it with a [{name}] section"


def read_ini(text: str, path: Path, builder: InventoryBuilder) -> None:
    """Add the hosts, groups and variables of one INI inventory file to ``builder``."""
    _IniReader(builder, path).read(text)


def split_host_line(line: str) -> list[str]:
    """The words of a host line, split as a POSIX shell would (quotes, ``#`` comments)."""
    if not _SHELL_SPECIAL.search(line):
        return line.split()  # what shlex gives for such a line, ten times faster
    try:
        return shlex.split(line, comments=True)
    except ValueError as exc:
        # Not the line itself in the message: it may hold a password.
        raise ValueError(f"cannot split the host line: {exc} (check the quotes)") from exc


def parse_variable_line(line: str, literals: dict[str, Any] | None = None) -> tuple[str, Any]:
    """``key = value`` from a ``[g:vars]`` section."""
    if "=" not in line:
        raise ValueError("expected key=value in a [group:vars] section")
    key, value = (part.strip() for part in line.split("=", 1))
    return key, parse_value(value, literals)


def parse_value(text: str, literals: dict[str, Any] | None = None) -> Any:
    """An INI value as Ansible's INI plugin reads it (a Python literal, else the string).

    ``literals`` keeps the literals already read (frozen; each use gets a fresh copy).
    """
    # Fast paths for what inventories are mostly made of; the results are the
    # same literal_eval gives (a bare word is not a literal; True/False/None are).
    if _INTEGER.match(text):
        return int(text)
    if _PLAIN_WORD.match(text) and text not in ("True", "False", "None"):
        return text
    if literals is None:
        return _copy(_literal(text))
    if text not in literals:
        literals[text] = _literal(text)
    return _copy(literals[text])


def _literal(text: str) -> Any:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SyntaxWarning)
            value = ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text
    return _coerce(value)


def _coerce(value: Any) -> Any:
    """Literal types Ansible does not keep, turned into those it does."""
    if isinstance(value, (list, tuple, set, frozenset)):
        return tuple(_coerce(v) for v in value)  # tuple while kept; lists in _copy
    if isinstance(value, dict):
        return _FrozenDict((k, _coerce(v)) for k, v in value.items())
    if isinstance(value, bytes):
        return value.decode("utf-8", "surrogateescape")
    if value is Ellipsis:
        return "..."
    if isinstance(value, complex):
        return str(value)
    return value


class _FrozenDict(tuple):
    """A kept dict literal; ``_copy`` makes a fresh dict of it for each use."""


def _copy(value: Any) -> Any:
    """A fresh mutable copy, so no two hosts share one list or dict."""
    if isinstance(value, _SCALARS):
        return value
    if isinstance(value, _FrozenDict):
        return {k: _copy(v) for k, v in value}
    if isinstance(value, (tuple, list)):
        return [_copy(v) for v in value]
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    return value
