"""Fix commands built from what hosts reported, with nothing in them a host could inject.

A finding's fix quotes values that came from hosts (addresses and gateways read
from ``ip`` output, adapter names) or from the inventory.  Each value goes into
a command only as what it claims to be: an ``Address`` must parse as one
(``ipaddress``), a ``Target`` must be a host name or an address (the checks'
``valid_target``), a ``Port`` a port number; free text (an adapter or user
name) is a ``Word``, quoted for the shell the line is written for
(``shlex.quote`` for sh, single quotes for PowerShell).  A value that fails its
check is never put in a command: its line is left out and the value is listed
in ``Fix.refused``, which the finder shows as evidence.
"""

from __future__ import annotations

import ipaddress
import re
import shlex
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from fleet.checks.params import valid_target
from fleet.text import safe_text


@dataclass(frozen=True)
class Address:
    """An IPv4 or IPv6 address (a host's own, its gateway's)."""

    value: object
    kind = "address"

    def valid(self) -> bool:
        try:
            ipaddress.ip_address(str(self.value))
        except ValueError:
            return False
        return isinstance(self.value, str) and "%" not in self.value


@dataclass(frozen=True)
class Target:
    """A host name or an address, as a command's destination."""

    value: object
    kind = "host name"

    def valid(self) -> bool:
        return valid_target(self.value)


@dataclass(frozen=True)
class Port:
    """A TCP port number."""

    value: object
    kind = "port"

    def valid(self) -> bool:
        return (
            isinstance(self.value, int)
            and not isinstance(self.value, bool)
            and (0 < self.value < 65536)
        )


@dataclass(frozen=True)
class Word:
    """Free text passed as one argument (an adapter name, a user): only quoted."""

    value: object
    kind = "word"

    def valid(self) -> bool:
        return isinstance(self.value, (str, int)) and bool(str(self.value))


@dataclass(frozen=True)
class Note:
    """Text in a comment after ``#``: folded onto one printable line, never run."""

    value: object
    kind = "note"

    def valid(self) -> bool:
        return True


Value = Address | Target | Port | Word | Note

# PowerShell takes the typographic single quotes for quotes too: each is doubled.
_PS_QUOTES = re.compile("['\u2018\u2019\u201a\u201b]")


def ps_quote(text: str) -> str:
    """``text`` as one PowerShell argument that expands nothing: single-quoted."""
    return "'" + _PS_QUOTES.sub(lambda m: m.group() * 2, text) + "'"


def _shown(value: Value, quote: object) -> str:
    text = str(value.value)
    if isinstance(value, Note):
        return safe_text(text, 200)
    if isinstance(value, Word):
        return ps_quote(text) if quote is ps_quote else shlex.quote(text)
    return text  # validated: only letters, digits and . : - _ are left


@dataclass
class Fix:
    """A fix being written, one command or comment per line."""

    lines: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  # evidence: values kept out of commands

    def sh(self, template: str, **values: Value) -> bool:
        """Add a sh line; False (and the line left out) when a value is not what it claims.
        Only the values the template names are used (and checked)."""
        return self._add(template, values, shlex.quote)

    def ps(self, template: str, **values: Value) -> bool:
        """Add a PowerShell line, as ``sh``."""
        return self._add(template, values, ps_quote)

    def note(self, text: str, **values: Value) -> None:
        """Add a comment line; its values are folded onto one line, never checked."""
        self._add("# " + text, {k: Note(v.value) for k, v in values.items()}, shlex.quote)

    def steps(self, shell: str, steps: Sequence[str], **values: Value) -> None:
        """Add each of ``steps``: a comment when it starts with "# ", else a ``shell`` line."""
        for step in steps:
            if step.startswith("# "):
                self.note(step[2:], **values)
            elif shell == "powershell":
                self.ps(step, **values)
            else:
                self.sh(step, **values)

    def _add(self, template: str, values: Mapping[str, Value], quote: object) -> bool:
        used = {name for _, name, _, _ in string.Formatter().parse(template) if name}
        bad = [values[name] for name in sorted(used) if not values[name].valid()]
        for v in bad:
            if v.value in ("", None):
                continue  # nothing was reported: nothing to show
            line = f"{safe_text(repr(v.value), 80)} is not a valid {v.kind}: left out of the fix"
            if line not in self.refused:
                self.refused.append(line)
        if bad:
            return False
        self.lines.append(template.format(**{k: _shown(values[k], quote) for k in used}))
        return True

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


def ssh_options(port: int | None, user: str) -> str:
    """The ``-p {port} -l {user}`` part of an ssh command line for a login, "" for the defaults."""
    parts = [" -p {port}"] if port not in (None, 22) else []
    return "".join(parts + ([" -l {user}"] if user else []))
