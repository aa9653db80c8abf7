"""Simulated audits of a mail group on the default probe plan, with faults chosen by a test.

``make_group`` plans a group as the default playbook does (k=4, sources spread
over four /24s); ``simulate`` builds the RunResult an audit would give when
the hosts are as ``truth`` says: what each probe gets back follows from the
source's and the target's faults.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import asdict, dataclass

from fleet import causes
from fleet.checks.facts import Address, Interface, NetConfig, PingResult, SmtpProbe
from fleet.model import CheckResult, HostResult, RunResult, Status
from fleet.peers import PeerPlan, plan_peers, zone_of

K = 4

# What is wrong with a host (nothing, for most).
HEALTHY = "healthy"
DOWN = "down"  # off: the runner cannot log in, no peer gets an answer
MUTE = "mute"  # its stack reaches none of its peers; they reach it (a bad route, say)
DEAF_MUTE = "deaf-mute"  # no peer traffic either way; the runner still logs in (management)
NO_SMTP = "no-smtp"  # up, answers ping, nothing listens on port 25
STACK = (MUTE, DEAF_MUTE)


@dataclass(frozen=True)
class Group:
    names: tuple[str, ...]
    address: Mapping[str, str]
    plan: PeerPlan
    truth: Mapping[str, str]

    def sources_of(self, target: str) -> list[str]:
        return [s for s in self.names if target in self.plan.targets_of(s)]


def make_group(size: int) -> tuple[tuple[str, ...], dict[str, str], PeerPlan]:
    names = tuple(f"mx{i:04d}" for i in range(size))
    address = {n: f"198.18.{i % 4}.{i // 4 + 10}" for i, n in enumerate(names)}
    zones = {n: zone_of(n, {"ansible_host": address[n]}) for n in names}
    return names, address, plan_peers(names, K, zones)


def draw_faults(names: tuple[str, ...], rng: random.Random, counts: Mapping[str, int]):
    chosen = rng.sample(names, sum(counts.values()))
    truth = dict.fromkeys(names, HEALTHY)
    for kind, count in counts.items():
        for name in chosen[:count]:
            truth[name] = kind
        chosen = chosen[count:]
    return truth


# --------------------------------------------------------------------------- the simulated run


def _netconfig(address: str) -> dict:
    gateway = address.rsplit(".", 1)[0] + ".1"
    return asdict(
        NetConfig(
            interfaces=(
                Interface("lo", up=True, loopback=True, ipv4=(Address("127.0.0.1", 8),)),
                Interface("eth0", up=True, ipv4=(Address(address, 24),), gateways=(gateway,)),
            ),
            default_gateways=(gateway,),
        )
    )


def _probes(source: str, target: str, address: str, ping_ok: bool, port25: str) -> list:
    ping = PingResult(target, 2, 2 if ping_ok else 0, address=address)
    code = 220 if port25 == "ok" else None
    probe = SmtpProbe(target, 25, port25, address, code, (f"220 {target} ESMTP",) if code else ())
    smtp_cause = {"ok": "", "refused": causes.REFUSED, "timeout": causes.TIMEOUT}[port25]
    return [
        CheckResult(
            source, "ping", Status.OK if ping_ok else Status.FAIL, "ping", target=target,
            facts=asdict(ping), cause="" if ping_ok else causes.NO_REPLY,
        ),
        CheckResult(
            source, "smtp", Status.OK if port25 == "ok" else Status.FAIL, port25, target=target,
            facts=asdict(probe), cause=smtp_cause,
        ),
    ]  # fmt: skip


def _seen(source_kind: str, target_kind: str) -> tuple[bool, str]:
    """What a probe from a ``source_kind`` host to a ``target_kind`` host gets back."""
    if source_kind in STACK or target_kind in (DOWN, DEAF_MUTE):
        return False, "timeout"
    return True, "refused" if target_kind == NO_SMTP else "ok"


def _reach(host: str, port: int, seen: str) -> CheckResult:
    cause = {"open": "", "refused": causes.REFUSED, "silent": causes.TIMEOUT}[seen]
    status = Status.OK if seen == "open" else Status.FAIL
    return CheckResult(host, "reach", status, f"port {port} {seen}", target=str(port), cause=cause)


def simulate(group: Group) -> RunResult:
    hosts = []
    for name in group.names:
        kind, address = group.truth[name], group.address[name]
        if kind == DOWN:
            results = [
                _reach(name, 22, "silent"),
                _reach(name, 25, "silent"),
                CheckResult(
                    name, "binding", Status.UNREACHABLE, "timed out", cause=causes.CONNECT_TIMEOUT
                ),
            ]
        else:
            facts = _netconfig(address)
            results = [
                _reach(name, 22, "open"),
                _reach(name, 25, "refused" if kind == NO_SMTP else "open"),
                CheckResult(name, "binding", Status.OK, "bound", facts=facts),
                CheckResult(name, "ipconfig", Status.OK, "address ok", facts=facts),
            ]
            for target in group.plan.targets_of(name):
                ping_ok, port25 = _seen(kind, group.truth[target])
                results += _probes(name, target, group.address[target], ping_ok, port25)
        hosts.append(HostResult(name, address, "ssh", "unix", tuple(results)))
    return RunResult("inventories/big", "mail-connectivity.yml", "s", "f", tuple(hosts))


def faulty_group(size: int, counts: Mapping[str, int], seed: str) -> Group:
    """A planned group of ``size`` hosts with ``counts`` faults of each kind, drawn by ``seed``."""
    names, address, plan = make_group(size)
    return Group(names, address, plan, draw_faults(names, random.Random(seed), counts))
