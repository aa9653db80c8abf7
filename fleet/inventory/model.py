"""The loaded inventory: hosts, groups and their variables, read-only.

Variables are merged the way Ansible merges them for a host (lowest first):

1. the ``all`` group's variables from the inventory source;
2. every other group of the host (its direct groups and all their
   ancestors), from the inventory source, ordered by depth (parents before
   children), then ``ansible_group_priority``, then name;
3. ``group_vars/all``;
4. ``group_vars/<group>`` for the same groups in the same order;
5. the host's own variables from the inventory source, then ``host_vars/<host>``;
6. the magic variables ``inventory_hostname``, ``inventory_hostname_short``,
   ``group_names``, ``inventory_dir``, ``inventory_file``.

Merging is shallow (a later mapping replaces an earlier one), as Ansible's
default ``hash_behaviour=replace``.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from fleet.inventory import patterns
from fleet.inventory.varsfiles import vars_path
from fleet.inventory.yamlload import VaultedValue

#: Variables Ansible computes for each host; ``ansible-inventory --list`` leaves them out.
MAGIC_VARS = frozenset(
    {
        "inventory_hostname",
        "inventory_hostname_short",
        "group_names",
        "inventory_dir",
        "inventory_file",
    }
)


@dataclass(frozen=True)
class Host:
    """One inventory host.

    ``vars`` are the host's own variables (inventory line or YAML entry, then
    ``host_vars/``), without group variables: see ``Inventory.host_vars``.
    ``groups`` are the groups that list the host directly, in the order met.
    """

    name: str
    vars: Mapping[str, Any] = field(repr=False)
    groups: tuple[str, ...]
    source: Path | None = None  # the first inventory file that named the host
    file_vars: Mapping[str, Any] = field(default_factory=dict, repr=False)  # host_vars/'s


@dataclass(frozen=True)
class Group:
    """One inventory group.

    ``vars`` are the group's variables as a host sees them from this group
    alone: the inventory source's, then ``group_vars/``.  ``declared_vars``
    and ``file_vars`` keep the two apart because, across groups, Ansible
    applies every group's inventory-source variables before any group_vars file.
    """

    name: str
    hosts: tuple[str, ...]
    children: tuple[str, ...]
    vars: Mapping[str, Any] = field(repr=False)
    parents: tuple[str, ...] = ()
    depth: int = 0  # longest path from 'all'
    priority: int = 1  # ansible_group_priority
    declared_vars: Mapping[str, Any] = field(default_factory=dict, repr=False)
    file_vars: Mapping[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class Inventory:
    """Hosts and groups in inventory order; groups include ``all`` and ``ungrouped``."""

    source: Path
    hosts: Mapping[str, Host]
    groups: Mapping[str, Group]
    warnings: tuple[str, ...] = ()
    vars_dir: Path | None = None  # where group_vars/ and host_vars/ are looked up

    def host_vars(self, name: str) -> dict[str, Any]:
        """The merged variables of host ``name`` plus Ansible's magic variables."""
        host = self.hosts[name]
        ordered = self._sorted_groups(self._host_groups(name) - {"all"})
        merged: dict[str, Any] = dict(self.groups["all"].declared_vars)
        for group in ordered:
            merged.update(group.declared_vars)
        merged.update(self.groups["all"].file_vars)
        for group in ordered:
            merged.update(group.file_vars)
        merged.update(host.vars)
        # Fresh lists and dicts: a caller changing its copy must not change the inventory.
        merged = {key: _fresh(value) for key, value in merged.items()}
        merged.update(self._magic_vars(host, ordered))
        return merged

    def var_origin(self, host: str, name: str) -> str | None:
        """Where host ``host``'s variable ``name`` is set (the layer that wins), for
        error messages: ``.../host_vars/mx1.yml``, ``.../group_vars/mail.yml``, or the
        inventory file (with the group whose vars set it).  None when it is not set."""
        entry = self.hosts[host]
        if name in entry.file_vars:
            return self._vars_file("host_vars", host)
        if name in entry.vars:
            return str(entry.source or self.source)
        ordered = self._sorted_groups(self._host_groups(host) - {"all"})
        for group in [*reversed(ordered), self.groups["all"]]:
            if name in group.file_vars:
                return self._vars_file("group_vars", group.name)
        for group in [*reversed(ordered), self.groups["all"]]:
            if name in group.declared_vars:
                return f"{self.source} (vars of group {group.name})"
        return None

    def _vars_file(self, kind: str, name: str) -> str:
        directory = (self.vars_dir or self.source) / kind
        return str(vars_path(directory, name) or directory / name)

    def group_hosts(self, group: str) -> list[str]:
        """Every host of ``group`` and of its child groups, in inventory order."""
        return list(self._group_hosts[group])

    def walk_hosts(self, group: str) -> list[str]:
        """The hosts of ``group`` in Ansible's walk order: its own, then each child
        group's, level by level.  ``group[0]`` patterns count in this order."""
        ordered = [group]
        seen = {group}
        for name in ordered:  # grows while walked: breadth first
            for child in self.groups[name].children:
                if child not in seen:
                    seen.add(child)
                    ordered.append(child)
        return list(dict.fromkeys(h for name in ordered for h in self.groups[name].hosts))

    def groups_map(self) -> dict[str, list[str]]:
        """Ansible's ``groups`` magic variable: each group name -> its hosts."""
        return {name: self.group_hosts(name) for name in self.groups}

    def select(self, pattern: str | None) -> list[str]:
        """The hosts a ``--limit`` pattern names, in inventory order (see ``patterns``)."""
        if pattern is None or not pattern.strip():
            return list(self.hosts)
        chosen = patterns.evaluate(self, pattern)
        order = self._host_order
        return sorted(chosen, key=order.__getitem__)

    def to_ansible_list(self, limit: str | None = None) -> dict[str, Any]:
        """What ``ansible-inventory --list [--limit LIMIT]`` prints, as a dict."""
        available = frozenset(self.select(limit))
        result: dict[str, Any] = {}
        self._list_group("all", available, result, set())
        hostvars: dict[str, Any] = {}
        for name in self.hosts:
            if name in available:
                merged = _for_json(
                    {k: v for k, v in self.host_vars(name).items() if k not in MAGIC_VARS}
                )
                if merged:
                    hostvars[name] = merged
        result["_meta"] = {"hostvars": hostvars}
        return result

    # -- helpers ---------------------------------------------------------------

    def _list_group(self, name: str, available: frozenset[str], out: dict, seen: set) -> None:
        group = self.groups[name]
        entry: dict[str, list[str]] = {}
        hosts = [h for h in group.hosts if h in available]
        if hosts and name != "all":
            entry["hosts"] = hosts
        if group.children:
            entry["children"] = list(group.children)
        # Ansible drops a group with neither hosts nor children, yet keeps
        # naming it among its parent's children.
        if entry:
            out[name] = entry
        for child in group.children:
            if child not in seen:
                seen.add(child)
                self._list_group(child, available, out, seen)

    def _magic_vars(self, host: Host, ordered: list[Group]) -> dict[str, Any]:
        source = host.source.absolute() if host.source else None
        return {
            "inventory_hostname": host.name,
            "inventory_hostname_short": _short_name(host.name),
            # As Ansible: every group but 'all' (so an ungrouped host has ['ungrouped']).
            "group_names": sorted(g.name for g in ordered),
            "inventory_dir": str(source.parent) if source else None,
            "inventory_file": str(source) if source else None,
        }

    def _sorted_groups(self, names: set[str] | frozenset[str]) -> list[Group]:
        groups = [self.groups[n] for n in names]
        return sorted(groups, key=lambda g: (g.depth, g.priority, g.name))

    def _host_groups(self, name: str) -> frozenset[str]:
        """The host's direct groups and all their ancestors (with 'all')."""
        ancestry = self._ancestry
        found: set[str] = {"all"}
        for group in self.hosts[name].groups:
            found |= ancestry[group]
        return frozenset(found)

    @cached_property
    def _ancestry(self) -> dict[str, frozenset[str]]:
        """Each group -> itself and all its ancestors."""
        memo: dict[str, frozenset[str]] = {}

        def walk(name: str) -> frozenset[str]:
            if name not in memo:
                found = {name}
                for parent in self.groups[name].parents:
                    found |= walk(parent)
                memo[name] = frozenset(found)
            return memo[name]

        for name in self.groups:
            walk(name)
        return memo

    @cached_property
    def _host_order(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.hosts)}

    @cached_property
    def _group_hosts(self) -> dict[str, tuple[str, ...]]:
        """Each group -> its hosts and its descendants' hosts, in inventory order."""
        members: dict[str, set[str]] = {name: set() for name in self.groups}
        ancestry = self._ancestry
        for host in self.hosts.values():
            for group in host.groups:
                for ancestor in ancestry[group]:
                    members[ancestor].add(host.name)
        members["all"] = set(self.hosts)
        order = self._host_order
        return {
            name: tuple(sorted(found, key=order.__getitem__)) for name, found in members.items()
        }


def _short_name(name: str) -> str:
    """``mx01.example.com`` -> ``mx01``; an IP address stays whole."""
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return name.split(".")[0]
    return name


def _fresh(value: Any) -> Any:
    if isinstance(value, (str, int, float, bool, type(None))):
        return value
    if isinstance(value, Mapping):
        return {k: _fresh(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_fresh(v) for v in value]
    return value


def _for_json(value: Any) -> Any:
    """Vault-encrypted values and dates as ansible-inventory prints them."""
    if isinstance(value, VaultedValue):
        return {"__ansible_vault": value.ciphertext}
    if isinstance(value, (datetime.date, datetime.datetime)):
        return value.isoformat()  # a YAML timestamp, printed as ansible-inventory does
    if isinstance(value, Mapping):
        return {k: _for_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_for_json(v) for v in value]
    return value
