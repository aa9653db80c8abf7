"""ping on Windows: Win32_PingStatus, one echo per query (ping.ps1 beside this file).

ping.exe exits 0 even on "Destination host unreachable", so its text is read
only as the fallback when WMI is broken, and only its echo replies count.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from fleet.checks import winjson
from fleet.checks.base import Step, StepOutput
from fleet.checks.facts import PingResult
from fleet.checks.ping.text import parse_ping_text
from fleet.checks.windows import target_step
from fleet.errors import ParseError


def step(key: str, target: str, params: Mapping[str, Any]) -> Step:
    """``gateway`` is resolved on the host itself."""
    echoes = int(params["count"])
    return target_step(key, "ping/ping.ps1", target, params["timeout"], echoes=echoes)


# Win32_PingStatus.StatusCode values worth naming (IP_STATUS of the ICMP API).
PING_STATUS = {
    11002: "network unreachable",
    11003: "host unreachable",
    11010: "timed out",
    11013: "TTL expired in transit",
    11050: "general failure (no route from this host?)",
}


def _ping_error(replies: Sequence[Mapping[str, Any]]) -> str:
    """Why no reply came back, from the first failed reply."""
    for reply in replies:
        if winjson.integer(reply.get("resolution")) not in (None, 0) or reply.get("status") is None:
            return "unknown host"
        code = winjson.integer(reply.get("status"))
        if code:
            return PING_STATUS.get(code, f"ping status {code}")
    return "no reply"


def parse(output: StepOutput, target: str) -> PingResult:
    """One target's Win32_PingStatus replies: StatusCode 0 is a reply, anything else a loss."""
    data = winjson.load(output)
    if data.get("source") == "ping.exe":  # the fallback when WMI is broken
        return parse_ping_text(str(data.get("text") or ""), target)
    if data.get("error") and not data.get("replies"):
        return PingResult(target=target, transmitted=0, received=0, error=str(data["error"]))
    replies = winjson.rows(data, "replies")
    if not replies:
        raise ParseError(f"{output.key}: no ping replies reported")
    times = [
        float(winjson.integer(r.get("time")) or 0)
        for r in replies
        if winjson.integer(r.get("status")) == 0 and r.get("status") is not None
    ]
    received = len(times)
    return PingResult(
        target=target,
        transmitted=len(replies),
        received=received,
        rtt_min_ms=min(times) if times else None,
        rtt_avg_ms=round(sum(times) / len(times), 3) if times else None,
        rtt_max_ms=max(times) if times else None,
        address=next((str(r["address"]) for r in replies if r.get("address")), "")
        or winjson.text(data, "address"),
        error="" if received else _ping_error(replies),
    )
