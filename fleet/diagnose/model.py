"""What a diagnosis says: findings, pair verdicts, and the kinds of finding a report groups by."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from fleet.diagnose.commands import Fix
from fleet.model import Status

LOCAL_STACK = "local-stack"
HOST_DOWN = "host-down"
NETWORK_PATH = "network-path"
MAIL_SERVICE = "mail-service"
NOT_AUDITED = "not-audited"
DUPLICATE_ADDRESS = "duplicate-address"
ONE_SIDED = "one-sided"
CHECK_ERROR = "check-error"

# Kinds of finding in the order a report shows them, with the heading it uses.
CAUSES: dict[str, str] = {
    HOST_DOWN: "Host down",
    LOCAL_STACK: "Local TCP/IP stack",
    DUPLICATE_ADDRESS: "Duplicate address",
    NETWORK_PATH: "Network path between hosts",
    ONE_SIDED: "One-sided connectivity",
    MAIL_SERVICE: "Mail service",
    NOT_AUDITED: "Not audited",
    CHECK_ERROR: "Check could not run",
}

# Pair verdicts that are not a kind of finding
PAIR_OK = "ok"
PAIR_PING_BLOCKED = "ping-blocked"  # SMTP works, ICMP does not: a filter, not an outage
PAIR_UNEXPLAINED = "unexplained"


@dataclass(frozen=True)
class Finding:
    """One problem, the hosts it concerns, why we think so, and how to fix it."""

    cause: str  # one of CAUSES
    title: str
    hosts: tuple[str, ...]
    evidence: tuple[str, ...]
    fix: str  # commands, one per line, in today's tools
    severity: Status
    key: str  # stable across runs, e.g. "mail-service:mx2"


def finding(
    cause: str,
    subject: str,
    title: str,
    hosts: Sequence[str],
    evidence: Iterable[str],
    fix: Fix,
    severity: Status = Status.FAIL,
) -> Finding:
    """A finding keyed ``cause:subject``, with ``fix``'s commands; the values the fix
    refused to quote are shown after the evidence."""
    return Finding(
        cause=cause,
        title=title,
        hosts=tuple(hosts),
        evidence=(*evidence, *fix.refused),
        fix=fix.text,
        severity=severity,
        key=f"{cause}:{subject}",
    )


@dataclass(frozen=True)
class PairVerdict:
    """What one source saw of one target, and which kind of finding explains it."""

    source: str
    target: str  # inventory name when the target is an inventory host
    ping: str  # "ok", "no reply", "" (not run)
    ping_detail: str  # "3/3 received, avg 0.4 ms"
    port25: str  # an SMTP outcome, "" when not probed
    greeting: str  # first line of the greeting, "" when none
    cause: str  # PAIR_OK, PAIR_PING_BLOCKED, PAIR_UNEXPLAINED or one of CAUSES
    status: Status


@dataclass(frozen=True)
class Diagnosis:
    findings: tuple[Finding, ...]
    pairs: tuple[PairVerdict, ...]

    def by_cause(self) -> dict[str, tuple[Finding, ...]]:
        """Findings grouped by kind, in report order, empty groups left out."""
        return {
            cause: group
            for cause in CAUSES
            if (group := tuple(f for f in self.findings if f.cause == cause))
        }

    def for_host(self, host: str) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if host in f.hosts)

    @property
    def sources(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(p.source for p in self.pairs))

    @property
    def targets(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(p.target for p in self.pairs))

    def pair(self, source: str, target: str) -> PairVerdict | None:
        return next((p for p in self.pairs if p.source == source and p.target == target), None)
