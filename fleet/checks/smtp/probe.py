"""The probes' report checked (both platforms), and the Unix probe's overall deadline.

A probe reports one object (JSON from ``unix_probe.py`` or ``smtp.ps1``);
``checked_probe`` refuses one whose fields have the wrong types, so a broken
or hostile report is an ``unparsed`` error, never a confident wrong fact.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fleet.checks.facts import SmtpOutcome, SmtpProbe, smtp_probe_from
from fleet.errors import ParseError

# Stages after the greeting that each get ``timeout``: connect, EHLO, STARTTLS
# (its reply and the handshake), QUIT.
TIMED_STAGES = 4

_TEXTS: tuple[str, ...] = ("address", "error", "stage", "tls_protocol", "tls_error")
_TEXTS += ("cert_subject", "cert_issuer", "cert_not_after", "cert_verify_error")
_NUMBERS = ("port", "greeting_code", "connect_ms", "greeting_ms")
_FLAGS = ("starttls", "tls_checked", "cert_verified")


def deadline(params: Mapping[str, Any]) -> float:
    """Seconds the whole probe may take, whatever the server does: the greeting's
    patience plus a timeout per other stage.  A server dripping a byte a second
    resets every read timeout, never this one."""
    return float(params["greeting_timeout"]) + TIMED_STAGES * float(params["timeout"])


def checked_probe(data: Mapping[str, Any], target: str, label: str) -> SmtpProbe:
    """The SmtpProbe in a probe's report; ``ParseError`` naming the first bad field."""
    outcome = data.get("outcome")
    if outcome not in SmtpOutcome.ALL:
        raise ParseError(f"{label}: unknown outcome {outcome!r}")
    for name in ("greeting", "ehlo"):
        value = data.get(name, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ParseError(f"{label}: {name} is not a list of strings")
    for name in _NUMBERS:
        value = data.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise ParseError(f"{label}: {name} is not a number")
    clean = dict(data)
    for name in _TEXTS:
        if clean.get(name) is None:  # PowerShell writes null for a field never set
            clean[name] = ""
        elif not isinstance(clean[name], str):
            raise ParseError(f"{label}: {name} is not text")
    for name in _FLAGS:
        if data.get(name) not in (None, True, False):
            raise ParseError(f"{label}: {name} is not true or false")
    code = data.get("greeting_code")
    return smtp_probe_from({**clean, "target": target, "greeting_code": code and int(code)})
