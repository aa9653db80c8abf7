"""Why an audit failed: findings an operator can act on, read from a RunResult alone.

A single host cannot tell "my TCP/IP stack is broken" from "the other server is
down" (the two causes of KB Q128961); the fleet view can, because every host
probes its peers (k of them in a large group: ``fleet.peers``, each host probed by
k sources) and the runner probes every host.  ``diagnose`` compares those
observations and returns ``Finding``s, each with the evidence that supports it
and the commands that fix it, plus one ``PairVerdict`` per (source -> target)
pair for the connectivity matrix.

Everything here is pure: a RunResult in, a Diagnosis out.  It reads results'
statuses, causes (``fleet.causes``) and typed facts, never the wording of a
summary.  ``observe`` gathers what the run saw; ``stack``, ``paths`` and
``access`` find the problems; this module orders them and judges each pair.
"""

from __future__ import annotations

from collections.abc import Mapping

from fleet.checks.facts import SmtpOutcome
from fleet.diagnose.access import check_error_findings, not_audited_findings
from fleet.diagnose.model import (
    CAUSES,
    CHECK_ERROR,
    DUPLICATE_ADDRESS,
    HOST_DOWN,
    LOCAL_STACK,
    MAIL_SERVICE,
    NETWORK_PATH,
    NOT_AUDITED,
    ONE_SIDED,
    PAIR_OK,
    PAIR_PING_BLOCKED,
    PAIR_UNEXPLAINED,
    Diagnosis,
    Finding,
    PairVerdict,
)
from fleet.diagnose.observe import Fleet, Pair, observe
from fleet.diagnose.paths import (
    mail_findings,
    mail_problem,
    one_sided_findings,
    silent_target_findings,
)
from fleet.diagnose.stack import duplicate_findings, local_stack_findings
from fleet.model import RunResult

__all__ = [
    "CAUSES",
    "CHECK_ERROR",
    "DUPLICATE_ADDRESS",
    "HOST_DOWN",
    "LOCAL_STACK",
    "MAIL_SERVICE",
    "NETWORK_PATH",
    "NOT_AUDITED",
    "ONE_SIDED",
    "PAIR_OK",
    "PAIR_PING_BLOCKED",
    "PAIR_UNEXPLAINED",
    "Diagnosis",
    "Finding",
    "PairVerdict",
    "diagnose",
]


def _pair_cause(p: Pair, explained: Mapping[str, str], one_sided: set[tuple[str, str]]) -> str:
    if p.smtp in (SmtpOutcome.OK, None) and p.ping in (True, None):
        return PAIR_OK if (p.smtp, p.ping) != (None, None) else PAIR_UNEXPLAINED
    if mail_problem(p):
        return MAIL_SERVICE
    if p.source in explained and explained[p.source] == LOCAL_STACK:
        return LOCAL_STACK
    if p.target in explained:
        return explained[p.target]
    if (p.source, p.target) in one_sided:
        return ONE_SIDED
    if p.smtp == SmtpOutcome.OK and p.ping is False:
        return PAIR_PING_BLOCKED
    return PAIR_UNEXPLAINED


def _verdicts(
    fleet: Fleet, explained: Mapping[str, str], one_sided: set[tuple[str, str]]
) -> tuple[PairVerdict, ...]:
    rank = {name: i for i, name in enumerate(fleet.hosts)}
    ordered = sorted(
        fleet.pairs.values(),
        key=lambda p: (rank.get(p.source, len(rank)), rank.get(p.target, len(rank)), p.target),
    )
    return tuple(
        PairVerdict(
            source=p.source,
            target=p.target,
            ping="" if p.ping is None else ("ok" if p.ping else "no reply"),
            ping_detail=p.ping_detail,
            port25=p.smtp or "",
            greeting=p.greeting,
            cause=_pair_cause(p, explained, one_sided),
            status=p.status,
        )
        for p in ordered
    )


def diagnose(run: RunResult) -> Diagnosis:
    """Every finding the run supports, in report order, and a verdict per (source, target)."""
    fleet = observe(run)
    stack = local_stack_findings(fleet)
    broken_sources = {f.hosts[0] for f in stack}
    silent = silent_target_findings(fleet, broken_sources)
    explained: dict[str, str] = {f.hosts[0]: f.cause for f in silent + stack}
    one_sided = one_sided_findings(fleet, set(explained))
    findings = (
        silent
        + stack
        + duplicate_findings(fleet)
        + one_sided
        + mail_findings(fleet)
        + not_audited_findings(fleet, {f.hosts[0] for f in silent if f.cause == HOST_DOWN})
        + check_error_findings(fleet)
    )
    order = list(CAUSES)
    findings.sort(key=lambda f: (order.index(f.cause), f.key))
    one_sided_pairs = {(f.hosts[0], f.hosts[1]) for f in one_sided}
    return Diagnosis(findings=tuple(findings), pairs=_verdicts(fleet, explained, one_sided_pairs))
