"""The probe plan: which members of a mail group each host pings and greets.

Every member probing every other costs N·(N-1) probes a night; the plan here
costs about N·k and keeps what the diagnosis needs, every member probed by
exactly k sources (k of the ``fleet_peer_probes`` variable):

- The members sit on a ring ordered by a digest of their names, so the plan
  depends on the set of members, never on the order an inventory lists them,
  and is the same every night.  Adding or removing a member changes only the
  pairs next to it on the ring.
- Each member's k sources are among the nearest members before it on the
  ring, taken one per zone first (``fleet_zone``, else the /24 of an IPv4
  ``ansible_host``): sources spread over the zones the inventory declares.
  Without zones a member's sources are its k predecessors and every member
  probes exactly k peers; with zones a member probes k on average, never more
  than the window the sources are picked from.
- A group of k+1 members or fewer keeps the full mesh.

``peer_plan_filter`` is the Jinja2 filter the default playbook calls, once per
host: ``groups['mail'] | peer_plan(inventory_hostname, 4, hostvars)``.  It
plans each group once per rendering environment and answers each host from
that plan.
"""

from __future__ import annotations

import bisect
import hashlib
import ipaddress
from collections.abc import Callable, Iterable, Mapping, Sequence, Sized
from dataclasses import dataclass, field
from typing import Any

#: Peers each member probes (and sources that probe each member) by default.
DEFAULT_PEER_PROBES = 4
#: A member's sources are picked among its WINDOW·k nearest predecessors on the ring.
WINDOW = 3
#: Plans one environment keeps (one per group and k is what a playbook needs).
_CACHED_PLANS = 16


def _digest(name: str) -> bytes:
    return hashlib.blake2b(name.encode("utf-8", "surrogatepass"), digest_size=8).digest()


def zone_of(name: str, variables: Mapping[str, Any]) -> str:
    """The zone a host probes from: its ``fleet_zone``, else the /24 (IPv6: /64) of its
    address (``ansible_host``, else its name when that is an address); "" when unknown."""
    zone = variables.get("fleet_zone")
    if zone is not None and str(zone) != "":
        return f"zone {zone}"
    address = variables.get("ansible_host") or name
    try:
        ip = ipaddress.ip_address(str(address))
    except ValueError:
        return ""
    host_bits = ip.max_prefixlen - (24 if ip.version == 4 else 64)
    network = ipaddress.ip_address(int(ip) >> host_bits << host_bits)
    return f"{network}/{ip.max_prefixlen - host_bits}"


def probe_count(value: Any) -> int:
    """``fleet_peer_probes`` as a number of peers: a positive integer (``"4"`` from an
    INI file too); ValueError otherwise."""
    if isinstance(value, bool):
        raise ValueError(f"fleet_peer_probes must be a positive integer, not {value!r}")
    try:
        k = int(str(value).strip())
    except ValueError:
        raise ValueError(f"fleet_peer_probes must be a positive integer, not {value!r}") from None
    if k < 1:
        raise ValueError(f"fleet_peer_probes must be a positive integer, not {value!r}")
    return k


@dataclass(frozen=True)
class PeerPlan:
    """Who probes whom within one group: ``targets[source]`` in the members' order."""

    members: tuple[str, ...]
    k: int
    targets: Mapping[str, tuple[str, ...]]
    _ring: tuple[str, ...] = field(repr=False, compare=False)
    _keys: tuple[bytes, ...] = field(repr=False, compare=False)

    def targets_of(self, host: str) -> tuple[str, ...]:
        """What ``host`` probes; a host outside the group probes the k members after
        its own place on the ring (the whole group when it is that small)."""
        found = self.targets.get(host)
        if found is not None:
            return found
        if len(self._ring) <= self.k + 1:
            return self.members
        start = bisect.bisect_left(self._keys, _digest(host))
        chosen = {self._ring[(start + i) % len(self._ring)] for i in range(self.k)}
        return tuple(m for m in self.members if m in chosen)

    def pairs(self) -> set[tuple[str, str]]:
        """Every (source, target) of the plan."""
        return {(s, t) for s, targets in self.targets.items() for t in targets}


def plan_peers(
    members: Iterable[str], k: int = DEFAULT_PEER_PROBES, zones: Mapping[str, str] | None = None
) -> PeerPlan:
    """The group's plan: each member probed by ``min(k, N-1)`` others, spread over
    ``zones`` (member -> zone; missing members share the zone "")."""
    names = tuple(dict.fromkeys(str(m) for m in members))
    keyed = sorted((_digest(name), name) for name in names)
    ring = tuple(name for _, name in keyed)
    keys = tuple(key for key, _ in keyed)
    n = len(names)
    if n <= k + 1:
        targets = {s: tuple(t for t in names if t != s) for s in names}
        return PeerPlan(names, k, targets, ring, keys)
    zone = zones or {}
    chosen: dict[str, set[str]] = {name: set() for name in names}
    window = min(n - 1, WINDOW * k)
    for i, target in enumerate(ring):
        before = [ring[(i - step) % n] for step in range(1, window + 1)]
        for source in _sources(before, k, zone):
            chosen[source].add(target)
    order = {name: i for i, name in enumerate(names)}
    targets = {s: tuple(sorted(chosen[s], key=order.__getitem__)) for s in names}
    return PeerPlan(names, k, targets, ring, keys)


def _sources(before: Sequence[str], k: int, zone: Mapping[str, str]) -> list[str]:
    """``k`` of the predecessors ``before`` (nearest first): the nearest of each zone,
    then the nearest of the rest."""
    picked: list[str] = []
    zones_seen: set[str] = set()
    for candidate in before:
        z = zone.get(candidate, "")
        if z not in zones_seen:
            zones_seen.add(z)
            picked.append(candidate)
            if len(picked) == k:
                return picked
    taken = set(picked)
    picked += [c for c in before if c not in taken][: k - len(picked)]
    return picked


def _zones(members: Sequence[str], hostvars: Any) -> dict[str, str]:
    if not hostvars:
        return {}
    zones = {}
    for member in members:
        variables = hostvars.get(member) if isinstance(hostvars, Mapping) else None
        zones[member] = zone_of(member, variables if isinstance(variables, Mapping) else {})
    return zones


@dataclass
class _Cached:
    members: Any  # the group's list itself: held so its id() stays its own
    hostvars: Any
    size: int  # len(members) when planned; -1 for an object without a length
    plan: PeerPlan

    def holds(self, members: Any, hostvars: Any, size: int) -> bool:
        """The plan of this very group list, unchanged since (a list is not hashable)."""
        return self.members is members and self.hostvars is hostvars and size == self.size >= 0


def peer_plan_filter() -> Callable[..., list[str]]:
    """A ``peer_plan`` filter with a cache of its own (one per rendering environment).

    ``members | peer_plan(host, k=4, hostvars=None)`` -> what ``host`` probes.  The
    group's plan is made once: looked up by the identity of the group's list (the
    same ``groups[...]`` for every host of a run), else by its content."""
    by_identity: dict[tuple[int, int, int], _Cached] = {}
    by_content: dict[tuple[tuple[str, ...], int, int], _Cached] = {}

    def remember(table: dict[Any, _Cached], key: Any, entry: _Cached) -> None:
        table[key] = entry
        while len(table) > _CACHED_PLANS:
            del table[next(iter(table))]

    def peer_plan(
        members: Any, host: Any, k: Any = DEFAULT_PEER_PROBES, hostvars: Any = None
    ) -> list[str]:
        count = probe_count(k)
        size = len(members) if isinstance(members, Sized) else -1
        identity = (id(members), id(hostvars), count)
        entry = by_identity.get(identity)
        if entry is None or not entry.holds(members, hostvars, size):
            group = list(map(str, members or ()))
            content = (tuple(group), id(hostvars), count)
            entry = by_content.get(content)
            if entry is None or entry.hostvars is not hostvars:
                plan = plan_peers(group, count, _zones(group, hostvars))
                entry = _Cached(None, hostvars, -1, plan)
                remember(by_content, content, entry)
            remember(by_identity, identity, _Cached(members, hostvars, size, entry.plan))
        return list(entry.plan.targets_of(str(host)))

    return peer_plan
