"""smtp's verdict: ok on 220 and 250, warn on what a healthy-but-odd server does, else fail.

A slow greeting (postscreen waits 6 s on purpose) is a warning with its
delay, never a dead server.  STARTTLS is judged by the handshake the probe
did, not by the word in the EHLO reply: a failed handshake fails a host that
requires STARTTLS (and warns otherwise), an expired certificate fails, one
expiring soon warns.  A self-signed certificate is reported, not failed.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, replace

from fleet import causes
from fleet.checks.facts import SmtpOutcome, SmtpProbe, as_facts
from fleet.checks.harness import Finding, excerpt, with_findings
from fleet.model import CheckResult, Status

_CAUSES = {
    SmtpOutcome.REFUSED: causes.REFUSED,
    SmtpOutcome.UNREACHABLE: causes.UNREACHABLE,
    SmtpOutcome.UNRESOLVED: causes.NAME_UNRESOLVED,
    SmtpOutcome.BAD_GREETING: causes.BAD_GREETING,
}
DAY = 86400.0


@dataclass(frozen=True)
class Expectations:
    """What the operator asked of a target (the smtp check's parameters)."""

    require_starttls: bool = False
    greeting_warn: float = 5.0  # seconds: a slower greeting is a warning
    cert_warn_days: int = 14  # a certificate expiring within this many days is a warning


def smtp_cause(probe: SmtpProbe) -> str:
    """The cause of a failed probe.  A timeout is the connect's when the probe never
    connected (no ``connect_ms``), the greeting's when it connected and the greeting
    never ended (its ``220-`` lines may have come), and the dialogue's after it."""
    if probe.outcome == SmtpOutcome.TIMEOUT:
        # A probe without a clock (nc) knows it connected by what it read, not by a time.
        if probe.connect_ms is None and probe.stage in ("", "connect"):
            return causes.TIMEOUT
        if probe.stage == "greeting" or (not probe.stage and not probe.greeting):
            return causes.GREETING_TIMEOUT
        return causes.SMTP_ERROR
    if probe.outcome == SmtpOutcome.OK:  # connected and talked, but the greeting was not 220
        return causes.BAD_GREETING
    return _CAUSES.get(probe.outcome, causes.SMTP_ERROR)


def _failure(probe: SmtpProbe) -> str:
    """The operator's sentence for a failed probe."""
    port = probe.port
    if probe.outcome == SmtpOutcome.REFUSED:
        return f"connection refused on port {port}"
    if probe.outcome == SmtpOutcome.TIMEOUT:
        cut = probe.stage == "greeting" and probe.greeting  # 220- lines, never the last
        said = f" after {len(probe.greeting)} greeting line(s)" if cut else ""
        return f"timed out on port {port}{said}: {probe.error or 'no answer'}"
    if probe.outcome == SmtpOutcome.UNREACHABLE:
        return f"unreachable ({probe.error or 'no route to host'}), port {port}"
    if probe.outcome == SmtpOutcome.UNRESOLVED:
        return "name does not resolve on the host"
    if probe.outcome == SmtpOutcome.BAD_GREETING:
        last = probe.greeting[-1] if probe.greeting else probe.error
        return f"greeting {last}" if last else "greeting is not 220"
    return f"error: {probe.error or probe.outcome}"


def _days_left(not_after: str, now: float) -> float | None:
    try:
        end = datetime.datetime.strptime(not_after, "%Y-%m-%dT%H:%M:%SZ")
    except ValueError:
        return None
    return (end.replace(tzinfo=datetime.timezone.utc).timestamp() - now) / DAY


def _tls_findings(probe: SmtpProbe, wants: Expectations, now: float) -> list[Finding]:
    """What the STARTTLS handshake and the certificate say."""
    port = probe.port
    if not probe.starttls:
        if wants.require_starttls:
            return [(Status.WARN, causes.NO_STARTTLS, f"no STARTTLS offered on port {port}")]
        return []
    if probe.tls_checked and not probe.tls_protocol:
        status = Status.FAIL if wants.require_starttls else Status.WARN
        why = probe.tls_error or "the handshake did not complete"
        return [(status, causes.STARTTLS_FAILED, f"STARTTLS offered, but failed: {why}")]
    days = _days_left(probe.cert_not_after, now) if probe.cert_not_after else None
    if days is not None and days < 0:
        expired = f"certificate expired {probe.cert_not_after} ({probe.cert_subject})"
        return [(Status.FAIL, causes.CERTIFICATE_EXPIRED, expired)]
    if days is not None and days < wants.cert_warn_days:
        soon = f"certificate expires in {days:.0f} days, {probe.cert_not_after}"
        return [(Status.WARN, causes.CERTIFICATE_EXPIRING, f"{soon} ({probe.cert_subject})")]
    return []


def _ok_summary(probe: SmtpProbe) -> str:
    if probe.tls_protocol:
        trust = {True: "verified", False: "not verified", None: "not checked"}[probe.cert_verified]
        tls = f", STARTTLS {probe.tls_protocol} ({probe.cert_subject or 'no subject'}, {trust})"
    elif probe.starttls:
        tls = ", STARTTLS offered (handshake not tried)"
    else:
        tls = ", no STARTTLS"
    return f"220 greeting, EHLO 250{tls}"


def judge_smtp(
    host: str,
    probe: SmtpProbe,
    wants: Expectations = Expectations(),
    evidence: str = "",
    now: float | None = None,
) -> CheckResult:
    """ok on 220 and 250 unless a finding says otherwise; fail when the dialogue failed.

    ``now`` (epoch seconds, for the certificate's expiry) is the runner's clock
    unless given.
    """
    now = datetime.datetime.now(datetime.timezone.utc).timestamp() if now is None else now
    shown = evidence or excerpt("\n".join([*probe.greeting, *probe.ehlo]))
    facts = as_facts(probe)
    if not (probe.outcome == SmtpOutcome.OK and probe.greeting_code == 220):
        return CheckResult(
            host=host,
            check="smtp",
            status=Status.FAIL,
            summary=f"{probe.target}: {_failure(probe)}",
            target=probe.target,
            facts=facts,
            evidence=shown,
            cause=smtp_cause(probe),
        )
    findings = _tls_findings(probe, wants, now)
    if probe.greeting_ms is not None and probe.greeting_ms > wants.greeting_warn * 1000:
        slow = f"slow greeting: {probe.greeting_ms / 1000:.1f} s after connecting"
        findings.insert(0, (Status.WARN, causes.SLOW_GREETING, slow))
    found = with_findings(host, "smtp", findings, _ok_summary(probe), facts, shown)
    return replace(found, target=probe.target, summary=f"{probe.target}: {found.summary}")
