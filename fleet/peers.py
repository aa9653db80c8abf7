"""The probe plan: which members of a mail group each host pings and greets.

Every member probing every other costs N·(N-1) probes a night; the plan here
costs about N·k (k of the ``fleet_peer_probes`` variable) and keeps what the
diagnosis needs: every member probes at least k peers and is probed by at
least k sources, so one down host or one broken stack still shows.

- The members sit on a ring ordered by a digest of their names: the plan
  depends on the set of members, never on the order an inventory lists them,
  and is the same every night.  Adding or removing one member changes only
  the pairs around it (12 for k=4 without zones).
- Each member probes its k nearest members on the ring, half after it and half
  before (exactly k each way): with an even k, whatever a member probes also
  probes it, so "a reaches b but b does not reach a" still shows (an odd k
  leaves the one extra probe one-sided).
- Zones (``fleet_zone``, else the /24 of the host's IPv4 address): a member
  whose k sources cover fewer than SPREAD zones is also probed by the nearest
  member (either side) of each zone it lacks, a few probes more in all.
- A group of k+1 members or fewer keeps the full mesh.

``peer_plan_filter`` makes the Jinja2 filter the default playbook calls, once
per host: ``groups['mail'] | peer_plan(inventory_hostname, 4, hostvars)``.  It
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
#: How far (times k) either side of a member the ring looks for a zone it lacks.
WINDOW = 3
#: Zones a member's sources should cover (fewer when k or the group's zones are fewer).
SPREAD = 3
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
    _by_digest: tuple[str, ...] = field(repr=False, compare=False)
    _keys: tuple[bytes, ...] = field(repr=False, compare=False)

    def targets_of(self, host: str) -> tuple[str, ...]:
        """What ``host`` probes; a host outside the group probes the k members after
        its own place on the ring (the whole group when it is that small)."""
        found = self.targets.get(host)
        if found is not None:
            return found
        if len(self._by_digest) <= self.k + 1:
            return self.members
        start = bisect.bisect_left(self._keys, _digest(host))
        chosen = {self._by_digest[(start + i) % len(self._by_digest)] for i in range(self.k)}
        return tuple(m for m in self.members if m in chosen)

    def pairs(self) -> set[tuple[str, str]]:
        """Every (source, target) of the plan."""
        return {(s, t) for s, targets in self.targets.items() for t in targets}


def plan_peers(
    members: Iterable[str], k: int = DEFAULT_PEER_PROBES, zones: Mapping[str, str] | None = None
) -> PeerPlan:
    """The group's plan: each member probes its ``k`` nearest on the ring and is probed
    by them, plus sources of the ``zones`` it lacks (member -> zone; members missing
    there share the zone "").  ``k + 1`` members or fewer: the full mesh."""
    names = tuple(dict.fromkeys(str(m) for m in members))
    keyed = sorted((_digest(name), name) for name in names)
    by_digest = tuple(name for _, name in keyed)
    keys = tuple(key for key, _ in keyed)
    n = len(names)
    if n <= k + 1:
        targets = {s: tuple(t for t in names if t != s) for s in names}
        return PeerPlan(names, k, targets, by_digest, keys)
    # half after, half before: every pair is probed both ways, so one-way reachability shows
    steps = [*range(1, (k + 1) // 2 + 1), *range(-1, -(k // 2) - 1, -1)]
    chosen: dict[str, set[str]] = {
        source: {by_digest[(i + step) % n] for step in steps} for i, source in enumerate(by_digest)
    }
    if zones:
        for source, target in _spreading(by_digest, zones, k, steps):
            chosen[source].add(target)
    order = {name: i for i, name in enumerate(names)}
    targets = {s: tuple(sorted(chosen[s], key=order.__getitem__)) for s in names}
    return PeerPlan(names, k, targets, by_digest, keys)


def _spreading(
    ring: Sequence[str], zone: Mapping[str, str], k: int, steps: Sequence[int]
) -> list[tuple[str, str]]:
    """Extra (source, target) pairs so that each member's sources cover SPREAD zones
    (or k, or all the group has): the nearest member of each zone its sources (the
    members ``steps`` away) lack, within WINDOW·k places either side."""
    n = len(ring)
    wanted = min(SPREAD, k, len({zone.get(name, "") for name in ring}))
    if wanted < 2:
        return []
    reach = min((n - 1) // 2, WINDOW * k)
    farther = [off for d in range(1, reach + 1) for off in (d, -d) if off not in steps]
    extra = []
    for i, target in enumerate(ring):
        seen = {zone.get(ring[(i - step) % n], "") for step in steps}
        for off in farther:
            if len(seen) >= wanted:
                break
            source = ring[(i - off) % n]
            if zone.get(source, "") not in seen:
                seen.add(zone.get(source, ""))
                extra.append((source, target))
    return extra


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
            # one name stays one member, as Ansible's list filters read a string
            group = [members] if isinstance(members, str) else list(map(str, members or ()))
            content = (tuple(group), id(hostvars), count)
            entry = by_content.get(content)
            if entry is None or entry.hostvars is not hostvars:
                plan = plan_peers(group, count, _zones(group, hostvars))
                entry = _Cached(None, hostvars, -1, plan)
                remember(by_content, content, entry)
            remember(by_identity, identity, _Cached(members, hostvars, size, entry.plan))
        return list(entry.plan.targets_of(str(host)))

    return peer_plan
