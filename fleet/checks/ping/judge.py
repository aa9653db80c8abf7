"""ping's verdict: ok with no loss, warn with some, fail when every probe is lost."""

from __future__ import annotations

from fleet import causes
from fleet.checks.facts import PingResult, as_facts
from fleet.model import CheckResult, Status

# The parsers' reasons for sending nothing or getting nothing back, as causes.
# Any other reason for an all-lost ping ("timed out", "no reply") is NO_REPLY.
_ERROR_CAUSES = (
    ("no default gateway", causes.NO_GATEWAY),
    ("unknown host", causes.NAME_UNRESOLVED),
    ("unreachable", causes.UNREACHABLE),  # network/host unreachable, from the host or a router
    ("no route", causes.UNREACHABLE),
    ("general failure", causes.UNREACHABLE),  # Windows: no route from this host
    ("prohibited", causes.UNREACHABLE),
    ("filtered", causes.UNREACHABLE),
    ("ttl expired", causes.TTL_EXPIRED),  # a routing loop on the way (Windows words it so)
    ("time to live exceeded", causes.TTL_EXPIRED),  # the same, as Unix ping words it
)


def ping_cause(ping: PingResult) -> str:
    """Why ``ping`` got no reply at all (its error as the parsers word it)."""
    error = ping.error.lower()
    return next((cause for words, cause in _ERROR_CAUSES if words in error), causes.NO_REPLY)


def _label(ping: PingResult) -> str:
    # The gateway's address is news to the reader; a named peer's is in the facts.
    if ping.target == "gateway" and ping.address:
        return f"gateway {ping.address}"
    return ping.target


def _rtt(ping: PingResult) -> str:
    if ping.rtt_avg_ms is None:
        return ""
    return f", rtt min/avg/max {ping.rtt_min_ms}/{ping.rtt_avg_ms}/{ping.rtt_max_ms} ms"


def judge_ping(host: str, ping: PingResult, evidence: str = "") -> CheckResult:
    """ok with no loss, warn with some, fail when every probe is lost or ping could not try."""
    label = _label(ping)
    counts = f"{ping.received}/{ping.transmitted} replies"
    cause = ""
    if ping.transmitted == 0:
        reason = ping.error or "no probe sent"
        if reason == "no default gateway":
            reason = "no default gateway to ping"
        status, summary, cause = Status.FAIL, f"{label}: {reason}", ping_cause(ping)
    elif ping.received >= ping.transmitted:
        status, summary = Status.OK, f"{label}: {counts}{_rtt(ping)}"
    elif ping.received == 0:
        why = f" ({ping.error})" if ping.error else ""
        status, summary, cause = Status.FAIL, f"{label}: {counts}{why}", ping_cause(ping)
    else:
        status, cause = Status.WARN, causes.PACKET_LOSS
        summary = f"{label}: {counts} ({ping.loss_percent:g}% loss){_rtt(ping)}"
    facts = {**as_facts(ping), "loss_percent": ping.loss_percent}
    return CheckResult(
        host=host,
        check="ping",
        status=status,
        summary=summary,
        target=ping.target,
        facts=facts,
        evidence=evidence,
        cause=cause,
    )
