"""The text of ``ping.exe``: the fallback when WMI is broken (ping.ps1)."""

from __future__ import annotations

import re

from fleet.checks.facts import PingResult
from fleet.errors import ParseError

_PING_REPLY = re.compile(r"=\s*\d+\s.*?[=<]\s*(?P<ms>\d+)\s*ms.*TTL=", re.IGNORECASE)
_PING_TOTALS = re.compile(r"=\s*(?P<sent>\d+),[^=]*=\s*(?P<rcvd>\d+),[^=]*=\s*\d+\s*\(")


def parse_ping_text(text: str, target: str) -> PingResult:
    """``ping.exe`` output.  Only echo replies (a line with ``bytes=``/``TTL=``) count:
    ping.exe's own "Received" (and exit code) counts "Destination host unreachable"."""
    times = [float(m.group("ms")) for m in map(_PING_REPLY.search, text.splitlines()) if m]
    totals = _PING_TOTALS.search(text)
    if not totals:
        raise ParseError("no ping statistics in the output")
    sent = int(totals.group("sent"))
    received = min(len(times), sent)
    error = ""
    if not received:
        lowered = text.lower()
        error = next(
            (
                e
                for key, e in (
                    ("unreachable", "host unreachable"),
                    ("general failure", "general failure (no route from this host?)"),
                )
                if key in lowered
            ),
            "timed out",
        )
    return PingResult(
        target=target,
        transmitted=sent,
        received=received,
        rtt_min_ms=min(times) if times else None,
        rtt_avg_ms=round(sum(times) / len(times), 3) if times else None,
        rtt_max_ms=max(times) if times else None,
        error=error,
    )
