"""smtp's verdict: ok on 220 and 250; warn when STARTTLS is required and missing; else fail."""

from __future__ import annotations

from fleet import causes
from fleet.checks.facts import (
    SMTP_BAD_GREETING,
    SMTP_OK,
    SMTP_REFUSED,
    SMTP_TIMEOUT,
    SMTP_UNREACHABLE,
    SMTP_UNRESOLVED,
    SmtpProbe,
    as_facts,
)
from fleet.checks.harness import excerpt
from fleet.model import CheckResult, Status

_CAUSES = {
    SMTP_REFUSED: causes.REFUSED,
    SMTP_UNREACHABLE: causes.UNREACHABLE,
    SMTP_UNRESOLVED: causes.NAME_UNRESOLVED,
    SMTP_BAD_GREETING: causes.BAD_GREETING,
}


def smtp_cause(probe: SmtpProbe) -> str:
    """The cause of a failed probe.  A timeout is the connect's when the probe never
    connected (no ``connect_ms``), the greeting's when it connected and heard nothing,
    and the dialogue's when it timed out after the greeting (EHLO)."""
    if probe.outcome == SMTP_TIMEOUT:
        if probe.connect_ms is None:
            return causes.TIMEOUT
        return causes.SMTP_ERROR if probe.greeting else causes.GREETING_TIMEOUT
    if probe.outcome == SMTP_OK:  # connected and talked, but the greeting was not 220
        return causes.BAD_GREETING
    return _CAUSES.get(probe.outcome, causes.SMTP_ERROR)


def _failure(probe: SmtpProbe) -> str:
    """The operator's sentence for a failed probe."""
    port = probe.port
    if probe.outcome == SMTP_REFUSED:
        return f"connection refused on port {port}"
    if probe.outcome == SMTP_TIMEOUT:
        return f"timed out on port {port}: {probe.error or 'no answer'}"
    if probe.outcome == SMTP_UNREACHABLE:
        return f"unreachable ({probe.error or 'no route to host'}), port {port}"
    if probe.outcome == SMTP_UNRESOLVED:
        return "name does not resolve on the host"
    if probe.outcome == SMTP_BAD_GREETING:
        last = probe.greeting[-1] if probe.greeting else probe.error
        return f"greeting {last}" if last else "greeting is not 220"
    return f"error: {probe.error or probe.outcome}"


def judge_smtp(
    host: str, probe: SmtpProbe, require_starttls: bool = False, evidence: str = ""
) -> CheckResult:
    """ok on 220 and 250; warn when STARTTLS is required and missing; fail otherwise."""
    ok = probe.outcome == SMTP_OK and probe.greeting_code == 220
    cause = ""
    if not ok:
        status, summary = Status.FAIL, f"{probe.target}: {_failure(probe)}"
        cause = smtp_cause(probe)
    elif require_starttls and not probe.starttls:
        status, summary = Status.WARN, f"{probe.target}: no STARTTLS offered on port {probe.port}"
        cause = causes.NO_STARTTLS
    else:
        tls = ", STARTTLS" if probe.starttls else ", no STARTTLS"
        status, summary = Status.OK, f"{probe.target}: 220 greeting, EHLO 250{tls}"
    shown = evidence or excerpt("\n".join([*probe.greeting, *probe.ehlo]))
    return CheckResult(
        host=host,
        check="smtp",
        status=status,
        summary=summary,
        target=probe.target,
        facts=as_facts(probe),
        evidence=shown,
        cause=cause,
    )
