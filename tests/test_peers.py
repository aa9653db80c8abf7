"""The probe plan: each member of a mail group probed by k peers, stable, spread over zones."""

from __future__ import annotations

import random
from collections import Counter, defaultdict

import pytest

from fleet import peers
from fleet.peers import PeerPlan, peer_plan_filter, plan_peers, probe_count, zone_of
from fleet.templating import Renderer


def names(n: int, prefix: str = "mx") -> list[str]:
    return [f"{prefix}{i:04d}.example.net" for i in range(n)]


def in_degrees(plan: PeerPlan) -> Counter[str]:
    return Counter(target for _, target in plan.pairs())


def source_zones(plan: PeerPlan, zones: dict[str, str]) -> dict[str, set[str]]:
    seen: dict[str, set[str]] = defaultdict(set)
    for source, target in plan.pairs():
        seen[target].add(zones[source])
    return seen


@pytest.mark.parametrize("n", [6, 7, 20, 200, 1000])
def test_without_zones_every_member_probes_k_peers_and_is_probed_by_k(n: int) -> None:
    members = names(n)
    plan = plan_peers(members, 4)
    assert set(in_degrees(plan).values()) == {4} and len(in_degrees(plan)) == n
    assert {len(targets) for targets in plan.targets.values()} == {4}
    assert len(plan.pairs()) == 4 * n  # N*k probes per check, not N*(N-1)
    assert all(s != t for s, t in plan.pairs())


@pytest.mark.parametrize("n", [6, 7, 20, 200, 1000])
@pytest.mark.parametrize("zone_count", [2, 5, 8])
def test_with_zones_a_few_probes_more_reach_the_zones_a_member_lacks(
    n: int, zone_count: int
) -> None:
    members = names(n)
    zones = {m: f"z{i % zone_count}" for i, m in enumerate(members)}
    plan = plan_peers(members, 4, zones)
    degrees = in_degrees(plan)
    assert len(degrees) == n and min(degrees.values()) >= 4
    outgoing = [len(targets) for targets in plan.targets.values()]
    assert min(outgoing) >= 4 and max(outgoing) <= (peers.WINDOW + 1) * 4
    assert len(plan.pairs()) <= 1.25 * 4 * n  # still O(N*k)
    assert all(s != t for s, t in plan.pairs())


@pytest.mark.parametrize("k", [1, 2, 3, 4, 5])
def test_whatever_a_member_probes_also_probes_it(k: int) -> None:
    # so that "a reaches b, but b does not reach a" can still be seen
    plan = plan_peers(names(100), k)
    pairs = plan.pairs()
    mutual = sum((t, s) in pairs for s, t in pairs)
    assert mutual == 100 * (k - k % 2)  # an odd k leaves one probe a member's own
    assert set(in_degrees(plan).values()) == {k}
    assert {len(targets) for targets in plan.targets.values()} == {k}


@pytest.mark.parametrize("n", [1, 2, 4, 5])
def test_a_group_of_k_plus_one_or_fewer_keeps_the_full_mesh(n: int) -> None:
    members = names(n)
    plan = plan_peers(members, 4)
    for source in members:
        assert plan.targets_of(source) == tuple(m for m in members if m != source)


def test_the_plan_does_not_depend_on_the_order_the_inventory_lists_the_hosts() -> None:
    members = names(300)
    zones = {m: f"z{i % 3}" for i, m in enumerate(members)}
    shuffled = random.Random(7).sample(members, len(members))
    assert plan_peers(members, 4, zones).pairs() == plan_peers(shuffled, 4, zones).pairs()
    # each host's targets follow the inventory's order, as the full mesh's did
    plan = plan_peers(members, 4, zones)
    for targets in plan.targets.values():
        assert list(targets) == sorted(targets, key=members.index)


@pytest.mark.parametrize("zone_count", [0, 3])
def test_adding_one_host_changes_a_few_pairs_only(zone_count: int) -> None:
    members = names(1000)
    zones = {m: f"z{i % zone_count}" for i, m in enumerate(members)} if zone_count else {}
    before = plan_peers(members, 4, zones).pairs()
    changed = []
    for j in range(30):
        extra = f"new{j}.example.net"
        zone = {extra: f"z{j % zone_count}"} if zone_count else {}
        after = plan_peers([*members, extra], 4, {**zones, **zone}).pairs()
        changed.append(len(before ^ after))
    if not zone_count:
        assert set(changed) == {12}  # k new sources, k new targets, k pairs displaced
    assert max(changed) <= 8 * 4 and sum(changed) / len(changed) <= 5 * 4


def test_removing_one_host_changes_a_few_pairs_only() -> None:
    members = names(1000)
    before = plan_peers(members, 4).pairs()
    for gone in members[::97]:
        after = plan_peers([m for m in members if m != gone], 4).pairs()
        assert len(before ^ after) == 12


def test_sources_are_spread_over_the_zones_the_inventory_declares() -> None:
    members = names(400)
    two = {m: ("dc1" if i % 2 else "dc2") for i, m in enumerate(members)}
    plan = plan_peers(members, 4, two)
    assert all(zones == {"dc1", "dc2"} for zones in source_zones(plan, two).values())
    eight = {m: f"site{i % 8}" for i, m in enumerate(members)}
    spread = [len(z) for z in source_zones(plan_peers(members, 4, eight), eight).values()]
    blind = [len(z) for z in source_zones(plan_peers(members, 4), eight).values()]
    assert min(spread) >= 3 and sum(spread) > sum(blind)  # better than the zone-blind ring


def test_a_zone_is_fleet_zone_else_the_hosts_subnet() -> None:
    assert zone_of("mx1", {"fleet_zone": "dmz", "ansible_host": "198.18.0.11"}) == "zone dmz"
    assert zone_of("mx1", {"ansible_host": "198.18.7.11"}) == "198.18.7.0/24"
    assert zone_of("198.18.9.3", {}) == "198.18.9.0/24"
    assert zone_of("mx1", {"ansible_host": "2001:db8:0:1::25"}) == "2001:db8:0:1::/64"
    assert zone_of("mx1.example.net", {}) == ""  # a name says nothing of where it is


def test_a_host_outside_the_group_probes_k_of_its_members() -> None:
    members = names(50)
    plan = plan_peers(members, 4)
    outside = plan.targets_of("relay1.example.net")
    assert len(outside) == 4 and set(outside) <= set(members)
    assert plan.targets_of("relay1.example.net") == outside  # the same every night
    assert plan_peers(members[:5], 4).targets_of("relay1") == tuple(members[:5])


@pytest.mark.parametrize("value, expected", [(4, 4), ("4", 4), (" 2 ", 2), (1, 1)])
def test_the_probe_count_reads_numbers_from_any_inventory(value, expected) -> None:
    assert probe_count(value) == expected


@pytest.mark.parametrize("value", [0, -1, "four", True, None, 2.5])
def test_a_probe_count_that_is_not_a_positive_integer_is_refused(value) -> None:
    with pytest.raises(ValueError, match="fleet_peer_probes"):
        probe_count(value)


def test_the_filter_plans_each_group_once_whatever_the_number_of_hosts(monkeypatch) -> None:
    planned = []
    real = peers.plan_peers
    monkeypatch.setattr(peers, "plan_peers", lambda *a: planned.append(a) or real(*a))
    members = names(1000)
    hostvars = {
        m: {"ansible_host": f"198.18.{i // 250}.{i % 250 + 1}"} for i, m in enumerate(members)
    }
    peer_plan = peer_plan_filter()
    answers = {m: peer_plan(members, m, 4, hostvars) for m in members}
    assert len(planned) == 1
    probed = Counter(t for targets in answers.values() for t in targets)
    assert set(probed) == set(members) and min(probed.values()) >= 4
    peer_plan(list(members), members[0], 4, hostvars)  # another list, same hosts: no new plan
    assert len(planned) == 1
    peer_plan(members, members[0], 3, hostvars)
    assert len(planned) == 2  # another k is another plan


def test_peer_plan_is_a_filter_of_the_sandboxed_templates() -> None:
    members = names(30)
    context = {
        "groups": {"mail": members},
        "hostvars": {m: {} for m in members},
        "inventory_hostname": members[3],
        "fleet_peer_probes": "2",
    }
    template = "{{ groups['mail'] | peer_plan(inventory_hostname, fleet_peer_probes, hostvars) }}"
    targets = Renderer().render(template, context)
    assert isinstance(targets, list) and len(targets) >= 1
    assert members[3] not in targets
    assert targets == list(plan_peers(members, 2).targets_of(members[3]))


def test_a_single_name_is_a_group_of_one_not_of_its_letters() -> None:
    peer_plan = peer_plan_filter()
    assert peer_plan("mx1", "relay1", 4) == ["mx1"]
    assert peer_plan("mx1", "mx1", 4) == []
