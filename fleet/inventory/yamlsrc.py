"""Ansible's YAML inventory format.

::

    all:
      vars: {smarthost: relay.example.com}
      children:
        mail:
          hosts:
            mx[01:20].example.com:          # ranges work in host keys
            smtp-in:2525: {fleet_role: relay}
          children:
            mail_eu: {hosts: {mx-eu1: }}

Every top-level key is a group; each group may have ``hosts`` (host ->
variables), ``children`` (group -> the same structure, nested) and ``vars``.
As Ansible, a section written as a single string is one name, a value that
is not a mapping is skipped with a warning, and an unknown key is skipped
with a warning.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fleet.errors import InventoryError
from fleet.inventory.builder import InventoryBuilder
from fleet.inventory.hostnames import expand_host_entry
from fleet.inventory.yamlload import LineDict, load_inventory_yaml, plain

_SECTIONS = ("vars", "children", "hosts")


class _YamlReader:
    def __init__(self, builder: InventoryBuilder, path: Path) -> None:
        self.builder = builder
        self.path = path

    def error(self, message: str, where: Any = None, key: Any = None) -> InventoryError:
        lines = getattr(where, "lines", {})
        return InventoryError(message, path=self.path, line=lines.get(key))

    def warn(self, message: str, where: Any = None, key: Any = None) -> None:
        line = getattr(where, "lines", {}).get(key)
        self.builder.warnings.append(f"{self.path}:{line or '?'}: {message}")

    def read(self, text: str) -> None:
        data = load_inventory_yaml(text, self.path)
        if not data:
            raise InventoryError(
                "the YAML inventory is empty: write at least 'all:' with hosts or children",
                path=self.path,
            )
        if not isinstance(data, Mapping):
            raise InventoryError(
                "a YAML inventory must be a mapping of group names (usually just 'all:'), "
                f"not a {type(data).__name__}",
                path=self.path,
                line=1,
            )
        if "plugin" in data:
            raise self.error(
                "this is an inventory plugin configuration (dynamic inventory), which fleet "
                "does not run: export it with 'ansible-inventory --list -y' and use that file",
                data,
                "plugin",
            )
        for name, body in data.items():
            self.group(name, body, data)

    def group(self, name: Any, body: Any, parent: Any) -> str | None:
        if not isinstance(name, str) or not name:
            raise self.error(f"group name {name!r} must be a non-empty string", parent, name)
        if body is not None and not isinstance(body, Mapping):
            self.warn(
                f"skipping {name!r}: a group must be a mapping, not a list or value", parent, name
            )
            return None
        line = getattr(parent, "lines", {}).get(name)
        name = self.builder.group_name(name, f"{self.path}:{line or '?'}")
        self.builder.add_group(name)
        if body:
            self.sections(name, _normalised_sections(body))
        return name

    def sections(self, group: str, body: Mapping) -> None:
        for section in _SECTIONS:
            value = body.get(section)
            if value is not None and not isinstance(value, Mapping):
                raise self.error(
                    f"the {section!r} of group {group!r} must be a mapping "
                    f"(name: value), not a {type(value).__name__}",
                    body,
                    section,
                )
        for key, value in body.items():
            if key not in _SECTIONS:
                self.warn(
                    f"skipping {key!r} in group {group!r}: only vars, children and hosts are read",
                    body,
                    key,
                )
            elif value:
                getattr(self, f"read_{key}")(group, value)

    def read_vars(self, group: str, variables: Mapping) -> None:
        for key, value in variables.items():
            try:
                self.builder.set_group_var(group, str(key), plain(value))
            except ValueError as exc:
                raise self.error(str(exc), variables, key) from exc

    def read_children(self, group: str, children: Mapping) -> None:
        for name, body in children.items():
            child = self.group(name, body, children)
            if child is None:
                continue
            try:
                self.builder.add_child(group, child)
            except ValueError as exc:
                raise self.error(str(exc), children, name) from exc

    def read_hosts(self, group: str, hosts: Mapping) -> None:
        for entry, variables in hosts.items():
            if not isinstance(entry, str):
                raise self.error(
                    f"host {entry!r} must be a string: quote numbers and addresses", hosts, entry
                )
            if variables is not None and not isinstance(variables, Mapping):
                raise self.error(
                    f"the variables of host {entry!r} must be a mapping (name: value), "
                    f"not a {type(variables).__name__}",
                    hosts,
                    entry,
                )
            try:
                names, port = expand_host_entry(entry)
                for name in names:
                    self.builder.add_host(name, group, port=port, source=self.path)
                    for key, value in (variables or {}).items():
                        self.builder.set_host_var(name, str(key), plain(value))
            except ValueError as exc:
                raise self.error(str(exc), hosts, entry) from exc


def _normalised_sections(body: Mapping) -> Mapping:
    """``hosts: mx01`` means ``hosts: {mx01: }``, as Ansible reads it."""
    if not any(isinstance(body.get(s), str) for s in _SECTIONS):
        return body
    fixed = LineDict(body)
    fixed.lines = getattr(body, "lines", {})
    for section in _SECTIONS:
        if isinstance(body.get(section), str):
            fixed[section] = {body[section]: None}
    return fixed


def read_yaml(text: str, path: Path, builder: InventoryBuilder) -> None:
    """Add the hosts, groups and variables of one YAML inventory file to ``builder``."""
    _YamlReader(builder, path).read(text)
