"""The diagnosis keeps its power on the sparse default probe plan (fleet.peers).

Groups of several sizes are planned as the default playbook plans them (k=4,
sources spread over /24s), random fault sets are drawn (seeded: the same sets
every run), each probe's outcome is simulated from the faults, and the
diagnosis must name exactly the down hosts, the broken stacks and the dead mail
services, and nothing else.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Iterable, Mapping

import pytest

from fleet import causes
from fleet.diagnose import (
    HOST_DOWN,
    LOCAL_STACK,
    MAIL_SERVICE,
    NETWORK_PATH,
    NOT_AUDITED,
    ONE_SIDED,
    Diagnosis,
    diagnose,
)
from fleet.model import CheckResult, Status
from tests.planned import (
    DEAF_MUTE,
    DOWN,
    HEALTHY,
    MUTE,
    NO_SMTP,
    STACK,
    Group,
    draw_faults,
    faulty_group,
    make_group,
    simulate,
)

# --------------------------------------------------------------------------- what must be found


def detectable(group: Group) -> dict[str, set[str]]:
    """The faults the probes of the plan can show, by kind of finding: a broken stack
    needs a target that a working peer reaches; a down host a source that was
    audited and is not itself broken; a dead port 25 a working source."""
    truth = group.truth
    works = {n for n, kind in truth.items() if kind in (HEALTHY, NO_SMTP)}
    answers = {n for n, kind in truth.items() if kind in (HEALTHY, NO_SMTP, MUTE)}
    stack = {
        b
        for b, kind in truth.items()
        if kind in STACK
        and any(
            t in answers and any(s != b and s in works for s in group.sources_of(t))
            for t in group.plan.targets_of(b)
        )
    }
    down = {
        d
        for d, kind in truth.items()
        if kind == DOWN and any(truth[s] != DOWN and s not in stack for s in group.sources_of(d))
    }
    mail = {m for m, kind in truth.items() if kind == NO_SMTP and works & set(group.sources_of(m))}
    return {HOST_DOWN: down, LOCAL_STACK: stack, MAIL_SERVICE: mail}


def found(diagnosis: Diagnosis, cause: str) -> set[str]:
    return {f.hosts[0] for f in diagnosis.findings if f.cause == cause}


def faulty(truth: Mapping[str, str], kinds: Iterable[str]) -> set[str]:
    return {n for n, kind in truth.items() if kind in kinds}


# (group size, faults of each kind, seeds): a few of each, as a bad night has
FAULT_SETS = [
    (5, {DOWN: 1, MUTE: 1, NO_SMTP: 1}, range(12)),
    (5, {DEAF_MUTE: 1, DOWN: 1}, range(12)),
    (20, {DOWN: 2, MUTE: 1, DEAF_MUTE: 1, NO_SMTP: 1}, range(12)),
    (200, {DOWN: 3, MUTE: 2, DEAF_MUTE: 2, NO_SMTP: 2}, range(6)),
    (1000, {DOWN: 4, MUTE: 3, DEAF_MUTE: 3, NO_SMTP: 3}, range(3)),
]


@pytest.mark.parametrize(
    ("size", "counts", "seed"),
    [(size, counts, seed) for size, counts, seeds in FAULT_SETS for seed in seeds],
)
def test_the_diagnosis_localises_every_fault_on_the_default_plan(size, counts, seed) -> None:
    names, address, plan = make_group(size)
    truth = draw_faults(names, random.Random(f"{size}-{seed}"), counts)
    group = Group(names, address, plan, truth)
    d = diagnose(simulate(group))
    # the plan lets every fault show: a host down, a stack that reaches none of its peers
    assert detectable(group) == {
        HOST_DOWN: faulty(truth, [DOWN]),
        LOCAL_STACK: faulty(truth, STACK),
        MAIL_SERVICE: faulty(truth, [NO_SMTP]),
    }
    assert found(d, HOST_DOWN) == faulty(truth, [DOWN])
    assert found(d, LOCAL_STACK) == faulty(truth, STACK)
    assert found(d, MAIL_SERVICE) == faulty(truth, [NO_SMTP])
    assert {f.cause for f in d.findings} <= {HOST_DOWN, LOCAL_STACK, MAIL_SERVICE}
    assert len(d.findings) == sum(counts.values())  # one finding per fault, no echo


@pytest.mark.parametrize("seed", range(8))
def test_on_a_very_bad_night_the_diagnosis_blames_no_healthy_host(seed) -> None:
    # A tenth of the group broken: some faults hide behind others (all of a down host's
    # sources broken), but what is found is found exactly where the probes can show it.
    names, address, plan = make_group(200)
    counts = {DOWN: 8, MUTE: 6, DEAF_MUTE: 6, NO_SMTP: 4}
    truth = draw_faults(names, random.Random(f"bad-{seed}"), counts)
    group = Group(names, address, plan, truth)
    d = diagnose(simulate(group))
    for cause, expected in detectable(group).items():
        assert found(d, cause) == expected, cause
    healthy = faulty(truth, [HEALTHY])
    blamed = {f.hosts[0] for f in d.findings}
    assert not blamed & healthy
    # a down host the probes cannot show is still not audited, never silently ok
    hidden = faulty(truth, [DOWN]) - found(d, HOST_DOWN)
    assert hidden <= found(d, NOT_AUDITED)
    # a deaf-mute stack the probes cannot show: peers reach it not, the runner does
    assert faulty(truth, [DEAF_MUTE]) - found(d, LOCAL_STACK) <= found(d, NETWORK_PATH)


def test_a_night_when_no_probe_gets_through_is_diagnosed_in_linear_time(monkeypatch) -> None:
    # Every host reaches none of its peers: each one's "others reach them?" must look at
    # its own targets' sources, not walk every pair of the fleet again (N*P on 10,000 hosts).
    import importlib

    observe_module = importlib.import_module("fleet.diagnose.observe")
    walks = []

    class Pairs(dict):
        def values(self):
            walks.append(1)
            return super().values()

    collect = observe_module._collect_pairs
    monkeypatch.setattr(observe_module, "_collect_pairs", lambda hosts: Pairs(collect(hosts)))
    names, address, plan = make_group(300)
    group = Group(names, address, plan, dict.fromkeys(names, MUTE))
    d = diagnose(simulate(group))
    assert found(d, LOCAL_STACK) == set()  # nobody reaches anybody: no witness, no blame
    assert len(walks) < 10  # a few passes over the pairs, not one per host


def test_one_way_reachability_still_shows_on_the_default_plan() -> None:
    # a firewall on one member drops what one of its peers sends: the plan probes that
    # pair both ways, so the diagnosis can say which way fails
    group = faulty_group(200, {}, "one-way")
    dropper = group.names[17]
    peer = group.plan.targets_of(dropper)[0]
    assert dropper in group.plan.targets_of(peer)
    run = simulate(group)

    def dropped(r: CheckResult) -> CheckResult:
        if r.target != dropper:
            return r
        facts = {**r.facts, "received": 0, "outcome": "timeout", "greeting_code": None}
        return dataclasses.replace(r, status=Status.FAIL, facts=facts, cause=causes.TIMEOUT)

    sender = dataclasses.replace(
        run.host(peer), results=tuple(map(dropped, run.host(peer).results))
    )
    hosts = tuple(sender if h.host == peer else h for h in run.hosts)
    [finding] = diagnose(dataclasses.replace(run, hosts=hosts)).findings
    assert finding.cause == ONE_SIDED and finding.hosts == (peer, dropper)
