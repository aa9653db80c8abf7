"""smtp on Windows: a polite SMTP conversation in .NET (smtp.ps1 beside this file)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fleet.checks import winjson
from fleet.checks.base import Step, StepOutput
from fleet.checks.facts import SMTP_OUTCOMES, SmtpProbe
from fleet.checks.windows import target_step
from fleet.errors import ParseError


def step(key: str, target: str, params: Mapping[str, Any]) -> Step:
    port, helo = int(params["port"]), str(params["helo"])
    return target_step(key, "smtp/smtp.ps1", target, params["timeout"], port=port, helo=helo)


def parse(output: StepOutput, target: str) -> SmtpProbe:
    """The SMTP conversation the host had with ``target``."""
    data = winjson.load(output)
    outcome = data.get("outcome")
    if outcome not in SMTP_OUTCOMES:
        raise ParseError(f"{output.key}: unknown smtp outcome {outcome!r}")
    port = winjson.integer(data.get("port"))
    if port is None:
        raise ParseError(f"{output.key}: no port in the smtp report")
    connect_ms = data.get("connect_ms")
    return SmtpProbe(
        target=target,
        port=port,
        outcome=str(outcome),
        address=winjson.text(data, "address"),
        greeting_code=winjson.integer(data.get("code")),
        greeting=tuple(_lines(data.get("greeting"))),
        ehlo=tuple(_lines(data.get("ehlo"))),
        starttls=data.get("starttls") is True,
        error=winjson.text(data, "error"),
        connect_ms=round(float(connect_ms), 3) if isinstance(connect_ms, (int, float)) else None,
    )


def _lines(value: Any) -> list[str]:
    """Reply lines: a list, or one string when there was a single line."""
    if value is None:
        return []
    if isinstance(value, list):
        return [str(v) for v in value]
    return [str(value)]
