"""Collects hosts, groups and variables while the sources are read.

The INI and YAML readers call the same few operations, in the order the
file states them, so both formats (and several sources in one directory)
end up with Ansible's rules: a group is declared once and may be named
again; a host keeps the first port and source it was seen with; a group
cannot become its own ancestor.  ``build`` then applies Ansible's
reconciliation (top-level groups under ``all``; hosts without a group in
``ungrouped``) and freezes the result.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from fleet.errors import ConfigError, InventoryError
from fleet.inventory.limits import MAX_GROUP_DEPTH, MAX_HOSTS
from fleet.inventory.model import Group, Host, Inventory

_BUILT_IN = ("all", "ungrouped")
_UNSAFE_GROUP_CHARS = re.compile(r"^[\d\W]|[^\w]")

#: Ansible's force_valid_group_names / ANSIBLE_TRANSFORM_INVALID_GROUP_CHARS values:
#: (replace the characters, warn about them).  Ansible's default is "never".
GROUP_NAME_POLICIES = {
    "never": (False, True),
    "always": (True, True),
    "silently": (True, False),
    "ignore": (False, False),
}
DEFAULT_GROUP_NAMES = "never"


def safe_group_name(name: str) -> str:
    """Ansible's group-name cleaning (``force_valid_group_names``): ``mail-eu`` -> ``mail_eu``."""
    return _UNSAFE_GROUP_CHARS.sub("_", name)


def check_group_name_policy(policy: str) -> str:
    """The policy in lower case; ConfigError naming the accepted values."""
    lowered = str(policy).strip().lower()
    # Ansible also reads a boolean here: true is "always", false "never".
    lowered = {"true": "always", "yes": "always", "false": "never", "no": "never"}.get(
        lowered, lowered
    )
    if lowered not in GROUP_NAME_POLICIES:
        raise ConfigError(
            f"force_valid_group_names={policy!r}: use one of {', '.join(GROUP_NAME_POLICIES)}"
        )
    return lowered


class CycleError(ValueError):
    """Adding a child group would make a group its own ancestor."""


@dataclass
class _GroupDraft:
    hosts: dict[str, None] = field(default_factory=dict)  # ordered set
    children: dict[str, None] = field(default_factory=dict)
    parents: dict[str, None] = field(default_factory=dict)
    vars: dict[str, Any] = field(default_factory=dict)
    priority: int = 1


@dataclass
class _HostDraft:
    source: Path | None
    groups: dict[str, None] = field(default_factory=dict)
    vars: dict[str, Any] = field(default_factory=dict)


class InventoryBuilder:
    """Mutable inventory under construction; see the module docstring."""

    def __init__(self, group_names: str = DEFAULT_GROUP_NAMES) -> None:
        self.groups: dict[str, _GroupDraft] = {}
        self.hosts: dict[str, _HostDraft] = {}
        self.warnings: list[str] = []
        self.replace_group_chars, self.warn_group_chars = GROUP_NAME_POLICIES[
            check_group_name_policy(group_names)
        ]
        self.renamed: dict[str, str] = {}
        for name in _BUILT_IN:
            self.add_group(name)
        self.add_child("all", "ungrouped")

    def group_name(self, name: str, where: str) -> str:
        """A group name as written, or made safe, as force_valid_group_names says;
        a warning for characters Ansible calls invalid (``where``: file and line)."""
        safe = safe_group_name(name)
        if safe == name:
            return name
        if self.warn_group_chars:
            done = f"renamed {safe!r}" if self.replace_group_chars else "kept as written"
            self.warnings.append(
                f"{where}: group {name!r} has characters other than letters, digits and _, "
                f"{done} (Ansible's force_valid_group_names)"
            )
        if not self.replace_group_chars:
            return name
        self.renamed[name] = safe
        return safe

    def add_group(self, name: str) -> None:
        self.groups.setdefault(name, _GroupDraft())

    def add_host(
        self, name: str, group: str, *, port: int | None = None, source: Path | None = None
    ) -> None:
        host = self.hosts.get(name)
        if host is None:
            if len(self.hosts) >= MAX_HOSTS:
                raise ValueError(
                    f"more than {MAX_HOSTS:,} hosts (fleet.inventory.limits.MAX_HOSTS): "
                    "audit the fleet in parts, one inventory each"
                )
            host = self.hosts[name] = _HostDraft(source=source)
            # As Ansible: the port written where the host first appears.
            if port is not None:
                host.vars["ansible_port"] = port
        if name not in self.groups[group].hosts:
            self.groups[group].hosts[name] = None
            host.groups[group] = None

    def add_child(self, parent: str, child: str) -> None:
        """Make group ``child`` a child of group ``parent`` (both already declared)."""
        if child in self.groups[parent].children:
            return
        above = self.ancestors(parent)
        if child == parent or child in above:
            raise CycleError(
                f"group {child!r} cannot be a child of {parent!r}: {parent!r} is already "
                f"inside {child!r}, which would make a loop; remove one of the two entries"
            )
        # Only a group with many ancestors can be deep: the longer walk is for those.
        if len(above) >= MAX_GROUP_DEPTH and self._height(parent) >= MAX_GROUP_DEPTH:
            raise _too_deep(child)
        self.groups[parent].children[child] = None
        self.groups[child].parents[parent] = None

    def ancestors(self, name: str) -> set[str]:
        found: set[str] = set()
        pending = list(self.groups[name].parents)
        while pending:
            current = pending.pop()
            if current not in found:
                found.add(current)
                pending.extend(self.groups[current].parents)
        return found

    def set_group_var(self, group: str, key: str, value: Any) -> None:
        draft = self.groups[group]
        if key == "ansible_group_priority":
            # Ansible keeps it as the group's priority, not as a variable.
            try:
                draft.priority = int(value)
            except (TypeError, ValueError) as exc:
                raise ValueError(
                    f"ansible_group_priority of group {group!r} must be a whole number"
                ) from exc
            return
        draft.vars[key] = value

    def set_host_var(self, host: str, key: str, value: Any) -> None:
        self.hosts[host].vars[key] = value

    def build(
        self,
        source: Path,
        group_file_vars: Mapping[str, Mapping[str, Any]] | None = None,
        host_file_vars: Mapping[str, Mapping[str, Any]] | None = None,
        vars_dir: Path | None = None,
    ) -> Inventory:
        """Reconcile as Ansible does and freeze, adding group_vars/host_vars file contents."""
        self._reconcile()
        try:
            depths = self._depths()
        except ValueError as exc:
            raise InventoryError(str(exc), path=source) from exc
        group_file_vars = group_file_vars or {}
        host_file_vars = host_file_vars or {}
        groups = {
            name: _freeze_group(name, draft, depths[name], group_file_vars.get(name, {}))
            for name, draft in self.groups.items()
        }
        hosts = {
            name: Host(
                name=name,
                vars=MappingProxyType({**draft.vars, **host_file_vars.get(name, {})}),
                groups=tuple(draft.groups),
                source=draft.source,
                file_vars=MappingProxyType(dict(host_file_vars.get(name, {}))),
            )
            for name, draft in self.hosts.items()
        }
        return Inventory(
            source=source,
            hosts=MappingProxyType(hosts),
            groups=MappingProxyType(groups),
            warnings=tuple(self.warnings),
            vars_dir=vars_dir,
        )

    def _reconcile(self) -> None:
        for name, draft in self.groups.items():
            if name != "all" and not draft.parents:
                self.add_child("all", name)
        ungrouped = self.groups["ungrouped"]
        for name, host in self.hosts.items():
            # A host written directly under 'all' is, for every purpose, ungrouped.
            if "all" in host.groups:
                del host.groups["all"]
                del self.groups["all"].hosts[name]
            if set(host.groups) - {"ungrouped"}:
                if "ungrouped" in host.groups:
                    del host.groups["ungrouped"]
                    del ungrouped.hosts[name]
            elif "ungrouped" not in host.groups:
                host.groups["ungrouped"] = None
                ungrouped.hosts[name] = None
        self._check_group_host_names()

    def _check_group_host_names(self) -> None:
        for name in self.groups.keys() & self.hosts.keys():
            self.warnings.append(f"found both a group and a host named {name!r}")

    def _height(self, name: str) -> int:
        """The longest chain of parents above group ``name`` (without recursion)."""
        heights: dict[str, int] = {}
        stack = [name]
        while stack:
            current = stack[-1]
            parents = self.groups[current].parents
            missing = [p for p in parents if p not in heights]
            if missing:
                stack.extend(missing)
                continue
            stack.pop()
            heights[current] = 1 + max((heights[p] for p in parents), default=-1)
        return heights[name]

    def _depths(self) -> dict[str, int]:
        """Each group's longest distance from 'all' (Ansible's group depth), parents
        before children; ValueError past MAX_GROUP_DEPTH."""
        depths: dict[str, int] = {"all": 0}
        waiting = {name: len(draft.parents) for name, draft in self.groups.items()}
        ready = ["all"]
        while ready:
            name = ready.pop()
            for child in self.groups[name].children:
                depths[child] = max(depths.get(child, 0), depths[name] + 1)
                if depths[child] > MAX_GROUP_DEPTH:
                    raise _too_deep(child)
                waiting[child] -= 1
                if not waiting[child]:
                    ready.append(child)
        return depths


def _too_deep(group: str) -> ValueError:
    return ValueError(
        f"group {group!r} is nested more than {MAX_GROUP_DEPTH} groups deep "
        "(fleet.inventory.limits.MAX_GROUP_DEPTH): check the :children sections"
    )


def _freeze_group(name: str, draft: _GroupDraft, depth: int, file_vars: Mapping[str, Any]) -> Group:
    return Group(
        name=name,
        hosts=tuple(draft.hosts),
        children=tuple(draft.children),
        vars=MappingProxyType({**draft.vars, **file_vars}),
        parents=tuple(draft.parents),
        depth=depth,
        priority=draft.priority,
        declared_vars=MappingProxyType(dict(draft.vars)),
        file_vars=MappingProxyType(dict(file_vars)),
    )
