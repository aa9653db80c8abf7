"""ping on Unix: sh that pings one target (or the host's own default gateway), and its parser.

Reads iputils, busybox, BSD and macOS output through jc.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from typing import Any

import jc

from fleet import causes
from fleet.checks.base import Step, StepOutput
from fleet.checks.facts import PingResult
from fleet.checks.harness import excerpt
from fleet.checks.ping import GATEWAY, on_link_note
from fleet.errors import ParseError

# Sets $t to the gateway the kernel would use for an outside address
# (`ip route get`: policy rules, every table, the lowest metric), else to
# netstat's default gateway (BSD, macOS).  An on-link default route (`default
# dev ppp0`) has no gateway: say so and ping nothing.
GATEWAY_LOOKUP = r"""t=$(ip -4 route get 192.0.2.1 2>/dev/null | awk 'NR == 1 {
  for (i = 1; i < NF; i++) { if ($i == "via") g = $(i + 1); if ($i == "dev") d = $(i + 1) }
  if (g != "") print g; else if (d != "") print "dev " d }')
case $t in
  "dev "*) echo "fleet: on-link $t"; exit 0 ;;
esac
[ -n "$t" ] || t=$(netstat -rn 2>/dev/null | awk '
  ($1 == "default" || $1 == "0.0.0.0") && $2 ~ /^[0-9.]+$/ { print $2; exit }')
if [ -z "$t" ]; then echo 'fleet: no default gateway'; exit 3; fi
echo "fleet: gateway $t"
"""

# ping's wait option differs by system: Linux and busybox
# -W seconds per reply; FreeBSD/macOS -t total seconds; OpenBSD/NetBSD -w.
# Linux (the usual case) is known by its /proc without forking uname.
PING_RUN = """[ -d /proc/sys/net ] && exec ping -n -c {count} -W {wait} -- "$t"
case $(uname -s 2>/dev/null) in
  Darwin|FreeBSD|DragonFly) exec ping -n -c {count} -t {deadline} -- "$t" ;;
  OpenBSD|NetBSD) exec ping -n -c {count} -w {wait} -- "$t" ;;
  *) exec ping -n -c {count} -W {wait} -- "$t" ;;
esac
"""


def step(key: str, target: str, params: Mapping[str, Any]) -> Step:
    return Step(key, ping_script(target, int(params["count"]), float(params["timeout"])), target)


def ping_script(target: str, count: int, timeout: float) -> str:
    """sh that pings ``target`` (or, for ``GATEWAY``, the host's default gateway)."""
    wait = max(1, round(timeout))  # older iputils take whole seconds only
    head = GATEWAY_LOOKUP if target == GATEWAY else f"t={shlex.quote(target)}\n"
    return head + PING_RUN.format(count=int(count), wait=wait, deadline=wait * int(count) + 1)


def _excerpt(text: str) -> str:
    """Enough of the output to recognise it in an error message."""
    return excerpt(text, 200)


# What ping says when it cannot even start, and the short reason we report.
PING_ERRORS = (
    (
        re.compile(
            r"Name or service not known|Temporary failure in name resolution|unknown host"
            r"|cannot resolve|No address associated with hostname|nodename nor servname",
            re.IGNORECASE,
        ),
        "unknown host",
    ),
    (re.compile(r"Network is unreachable", re.IGNORECASE), "network unreachable"),
    (re.compile(r"No route to host", re.IGNORECASE), "no route to host"),
)
PING_REPLY_ERRORS = (
    "Destination Host Unreachable",
    "Destination Net Unreachable",
    "Destination Host Prohibited",
    "Packet filtered",
    "Time to live exceeded",
)
_NOT_FOUND = re.compile(r"ping: (?:not found|command not found)")
# ping without the right to open its socket: BusyBox's ping as a user ("permission
# denied (are you root?)"), iputils without cap_net_raw ("socket: Operation not
# permitted", "=> missing cap_net_raw+p capability or setuid?"), "socket: Permission denied".
_NOT_ALLOWED = re.compile(
    r"are you root\?|socket: (?:Operation not permitted|Permission denied)"
    r"|missing cap_net_raw|Lacking privilege",
    re.IGNORECASE,
)
NEEDS_ROOT = "ping needs root here (or CAP_NET_RAW, or a group in net.ipv4.ping_group_range)"


def _ping_meta(text: str) -> tuple[str, str]:
    """The gateway address and any error our own step script printed."""
    address, error = "", ""
    for line in text.splitlines():
        if line.startswith("fleet: gateway "):
            address = line.split()[-1]
        elif line.strip() == "fleet: no default gateway":
            error = "no default gateway"
        elif line.startswith("fleet: on-link dev "):
            error = on_link_note(line.split()[-1])
    return address, error


def _ping_stats(text: str, target: str, address: str) -> PingResult:
    try:
        data: Any = jc.parse("ping", text, quiet=True)
        transmitted = int(data["packets_transmitted"])
        received = int(data["packets_received"])
    except (ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
        raise ParseError(f"unreadable ping output ({exc}): {_excerpt(text)}") from exc
    reply_error = next((e.lower() for e in PING_REPLY_ERRORS if e in text), "")
    return PingResult(
        target=target,
        transmitted=transmitted,
        received=received,
        rtt_min_ms=data.get("round_trip_ms_min"),
        rtt_avg_ms=data.get("round_trip_ms_avg"),
        rtt_max_ms=data.get("round_trip_ms_max"),
        address=str(data.get("destination_ip") or address),
        error=reply_error if received < transmitted else "",
    )


def parse(output: StepOutput, target: str) -> PingResult:
    """ping's outcome, from iputils, busybox, BSD or macOS output."""
    text = output.stdout.decode("utf-8", errors="replace")
    address, error = _ping_meta(text)
    if error:
        return PingResult(target=target, transmitted=0, received=0, error=error)
    if _NOT_ALLOWED.search(text):
        raise ParseError(f"{NEEDS_ROOT}: {_excerpt(text)}", cause=causes.TOOL_MISSING)
    if output.exit_status == 127 or _NOT_FOUND.search(text):
        raise ParseError(f"ping is not installed: {_excerpt(text)}", cause=causes.TOOL_MISSING)
    body = "\n".join(line for line in text.splitlines() if not line.startswith("fleet: "))
    if "packets transmitted" not in body:
        for pattern, reason in PING_ERRORS:
            if pattern.search(body):
                return PingResult(target, 0, 0, address=address, error=reason)
        raise ParseError(f"ping printed no statistics: {_excerpt(text)}")
    return _ping_stats(body, target, address)
