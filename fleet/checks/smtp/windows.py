"""smtp on Windows: a polite SMTP conversation in .NET (smtp.ps1 beside this file).

The script waits ``greeting_timeout`` for the greeting and reports its delay.
It notes STARTTLS as offered without doing the handshake (``tls_checked``
stays false), and a server that drips bytes is bounded by the step's deadline
only: the composed script must fit one ``-EncodedCommand`` line, which leaves
no room for either.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fleet.checks import winjson
from fleet.checks.base import Step, StepOutput
from fleet.checks.facts import SmtpProbe
from fleet.checks.smtp.probe import checked_probe
from fleet.checks.windows import target_step
from fleet.errors import ParseError


def step(key: str, target: str, params: Mapping[str, Any]) -> Step:
    port, helo = int(params["port"]), str(params["helo"])
    greet_ms = max(1, round(float(params["greeting_timeout"]) * 1000))
    return target_step(
        key, "smtp/smtp.ps1", target, params["timeout"], port=port, helo=helo, greet_ms=greet_ms
    )


def parse(output: StepOutput, target: str) -> SmtpProbe:
    """The SMTP conversation the host had with ``target``."""
    data = winjson.load(output)
    if winjson.integer(data.get("port")) is None:
        raise ParseError(f"{output.key}: no port in the smtp report")
    found = {
        **data,
        "port": winjson.integer(data.get("port")),
        "greeting_code": winjson.integer(data.get("code")),
        "greeting": _lines(data.get("greeting")),
        "ehlo": _lines(data.get("ehlo")),
    }
    for name in ("connect_ms", "greeted_ms"):
        value = data.get(name)
        found[name] = round(float(value), 3) if isinstance(value, (int, float)) else None
    if found["greeted_ms"] is not None and found["connect_ms"] is not None:
        # The script reports the time from the start to the greeting (fewer bytes to send).
        found["greeting_ms"] = round(found["greeted_ms"] - found["connect_ms"], 3)
    return checked_probe(found, target, output.key)


def _lines(value: Any) -> list[str]:
    """Reply lines: a list, or one string when there was a single line."""
    if value is None:
        return []
    if isinstance(value, list):
        return [str(v) for v in value]
    return [str(value)]
