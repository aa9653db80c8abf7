"""The Unix platform module: what to run on a Unix host, and how to read what it printed.

Implements ``fleet.checks.base.PlatformProbes`` for hosts reached over SSH
(or locally).  Each ``*_steps`` returns POSIX sh fragments in which every
inventory-derived value is quoted with ``shlex.quote``; each ``parse_*`` is a
pure function from a step's output to the normalised facts of
``fleet.checks.facts``, raising ``ParseError`` on output that is not what the
step promised.  Command output is parsed with jc wherever jc knows the
command; iproute2's own JSON is read directly.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import re
import shlex
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import jc

from fleet.checks.base import Step, StepOutput
from fleet.checks.batch import compose_sh
from fleet.checks.facts import SMTP_OUTCOMES, Address, Interface, NetConfig, PingResult, SmtpProbe
from fleet.checks.judge import excerpt
from fleet.errors import ParseError

BINDING_KEY = "binding:net"
IPCONFIG_KEY = "ipconfig:net"
GATEWAY = "gateway"  # the ping target that means "this host's default gateway"

# One step may print several outputs; each starts with this label line.
NET_LABEL = "@@fleet-net "

# Prefer iproute2 JSON; fall back to its text (busybox, iproute2 < 4.14, or
# 4.14-4.16 where `ip -j route` prints text), then to ifconfig/netstat (BSD,
# macOS, old Linux).  DNS from systemd-resolved's real list when present.
NET_SCRIPT = r"""l() { printf '\n@@fleet-net %s\n' "$1"; }
if command -v ip >/dev/null 2>&1; then
  a=$(ip -j addr show 2>/dev/null)
  case $a in
    \[*) l 'ip -j addr'; printf '%s\n' "$a" ;;
    *) l 'ip addr'; ip addr show 2>&1 ;;
  esac
  r=$(ip -j -4 route show 2>/dev/null)
  case $r in
    \[*) l 'ip -j route'; printf '%s\n' "$r" ;;
    *) l 'ip route'; ip -4 route show 2>&1 ;;
  esac
else
  l 'ifconfig -a'; ifconfig -a 2>&1
  l 'netstat -rn'; netstat -rn 2>&1
fi
f=/etc/resolv.conf
[ -r /run/systemd/resolve/resolv.conf ] && f=/run/systemd/resolve/resolv.conf
l "$f"; cat "$f" 2>&1
"""

# Sets $t to the IPv4 default gateway, found on the host itself.  The awk keeps
# to the default route and its ECMP "nexthop" lines.
GATEWAY_LOOKUP = r"""t=$(ip -4 route show 2>/dev/null | awk '
  { d = ($1 == "default") || (d && $1 == "nexthop") }
  d { for (i = 2; i < NF; i++) if ($i == "via") { print $(i + 1); exit } }')
[ -n "$t" ] || t=$(netstat -rn 2>/dev/null | awk '
  ($1 == "default" || $1 == "0.0.0.0") && $2 ~ /^[0-9.]+$/ { print $2; exit }')
if [ -z "$t" ]; then echo 'fleet: no default gateway'; exit 3; fi
echo "fleet: gateway $t"
"""

# ping's wait option differs by system (facts-unix-ssh.md): Linux and busybox
# -W seconds per reply; FreeBSD/macOS -t total seconds; OpenBSD/NetBSD -w.
# Linux (the usual case) is known by its /proc without forking uname.
PING_RUN = """[ -d /proc/sys/net ] && exec ping -n -c {count} -W {wait} -- "$t"
case $(uname -s 2>/dev/null) in
  Darwin|FreeBSD|DragonFly) exec ping -n -c {count} -t {deadline} -- "$t" ;;
  OpenBSD|NetBSD) exec ping -n -c {count} -w {wait} -- "$t" ;;
  *) exec ping -n -c {count} -W {wait} -- "$t" ;;
esac
"""

NO_PYTHON = "fleet: no python3"
ANY_ADDRESS = str(ipaddress.IPv4Address(0))  # netstat's name for the default route
# -S: no site module (the probe needs only the standard library): less to start.
SMTP_RUN = """for p in python3 /usr/libexec/platform-python; do
  command -v "$p" >/dev/null 2>&1 && exec "$p" -S -c {program} {args}
done
echo '{no_python}'; exit 127
"""


@functools.cache
def smtp_probe_program() -> str:
    """The text of the SMTP probe that runs on the host (``unix_smtp_probe.py``)."""
    return Path(__file__).with_name("unix_smtp_probe.py").read_text(encoding="utf-8")


# ---------------------------------------------------------------- composing


def compose(steps: Sequence[Step], nonce: str, step_timeout: float) -> str:
    """The one sh script that runs every step and prints framed sections."""
    return compose_sh(steps, nonce, step_timeout)


def binding_steps(params: Mapping[str, Any]) -> list[Step]:
    return [Step(key=BINDING_KEY, script=NET_SCRIPT)]


def ipconfig_steps(params: Mapping[str, Any]) -> list[Step]:
    return [Step(key=IPCONFIG_KEY, script=NET_SCRIPT)]


@functools.lru_cache(maxsize=1024)
def ping_script(target: str, count: int, timeout: float) -> str:
    """sh that pings ``target`` (or, for ``GATEWAY``, the host's default gateway)."""
    wait = max(1, round(timeout))  # older iputils take whole seconds only
    head = GATEWAY_LOOKUP if target == GATEWAY else f"t={shlex.quote(target)}\n"
    return head + PING_RUN.format(count=int(count), wait=wait, deadline=wait * int(count) + 1)


def ping_steps(params: Mapping[str, Any]) -> list[Step]:
    """One step per target; the gateway first when ``params["gateway"]``."""
    targets = list(params.get("targets", ()))
    if params.get("gateway", True) and GATEWAY not in targets:
        targets.insert(0, GATEWAY)
    count, timeout = int(params.get("count", 2)), float(params.get("timeout", 2))
    return [Step(key=f"ping:{t}", script=ping_script(t, count, timeout), target=t) for t in targets]


@functools.lru_cache(maxsize=1024)
def smtp_script(target: str, port: int, timeout: float, helo: str) -> str:
    """sh that runs the probe program with its parameters as quoted argv."""
    args = " ".join(shlex.quote(str(v)) for v in (target, int(port), float(timeout), helo))
    return SMTP_RUN.format(
        no_python=NO_PYTHON, program=shlex.quote(smtp_probe_program()), args=args
    )


def smtp_steps(params: Mapping[str, Any]) -> list[Step]:
    port, timeout = int(params.get("port", 25)), float(params.get("timeout", 5))
    helo = str(params.get("helo", "fleet.invalid"))
    return [
        Step(key=f"smtp:{t}", script=smtp_script(t, port, timeout, helo), target=t)
        for t in params.get("targets", ())
    ]


# ---------------------------------------------------------------- net parsing


def _text(output: StepOutput) -> str:
    return output.stdout.decode("utf-8", errors="replace")


def _excerpt(text: str) -> str:
    """Enough of the output to recognise it in an error message."""
    return excerpt(text, 200)


def split_labelled(text: str) -> dict[str, str]:
    """The labelled outputs of the net step, by label ("ip -j addr", "/etc/resolv.conf")."""
    parts: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        if line.startswith(NET_LABEL):
            current = parts.setdefault(line[len(NET_LABEL) :].strip(), [])
        elif current is not None:
            current.append(line)
    return {label: "\n".join(lines).strip("\n") + "\n" for label, lines in parts.items()}


def _prefix(mask: str) -> int:
    return ipaddress.IPv4Network(f"0.0.0.0/{mask}").prefixlen


def _ipv4(value: object) -> str | None:
    """``value`` as a dotted IPv4 address, or None when it is not one."""
    try:
        return str(ipaddress.IPv4Address(str(value)))
    except ValueError:
        return None


def _ip_json_interface(item: Mapping[str, Any]) -> Interface:
    flags = set(item.get("flags") or ())
    loopback = "LOOPBACK" in flags or item.get("link_type") == "loopback"
    addresses = tuple(
        Address(str(a["local"]), int(a.get("prefixlen", 32)), True if a.get("dynamic") else None)
        for a in item.get("addr_info") or ()
        if a.get("family") == "inet"
    )
    return Interface(
        name=str(item["ifname"]),
        up={"UP", "LOWER_UP"} <= flags,
        loopback=loopback,
        ipv4=addresses,
        mac="" if loopback else str(item.get("address", "")),
    )


def interfaces_from_ip_json(text: str) -> list[Interface]:
    """Interfaces from ``ip -j addr`` (iproute2 >= 4.14)."""
    data = json.loads(text)
    if not isinstance(data, list):
        raise ValueError("ip -j addr did not print a JSON list")
    return [_ip_json_interface(item) for item in data if item.get("ifname")]


_IP_HEADER = re.compile(r"^\d+:\s+(?P<name>[^:\s@]+)(?:@\S*)?:\s+<(?P<flags>[^>]*)>")
_IP_LINK = re.compile(r"^\s+link/(?P<kind>\S+)(?:\s+(?P<mac>\S+))?")
_IP_INET = re.compile(r"^\s+inet\s+(?P<addr>[\d.]+)(?:/(?P<prefix>\d+))?(?P<rest>.*)$")


@dataclass
class _TextInterface:
    """An interface while ``ip addr`` text is read (mutable only here)."""

    name: str
    flags: set[str]
    mac: str = ""
    ipv4: list[Address] | None = None

    def freeze(self) -> Interface:
        loopback = "LOOPBACK" in self.flags
        return Interface(
            name=self.name,
            up={"UP", "LOWER_UP"} <= self.flags,
            loopback=loopback,
            ipv4=tuple(self.ipv4 or ()),
            mac="" if loopback else self.mac,
        )


def _read_ip_line(line: str, current: _TextInterface) -> None:
    if link := _IP_LINK.match(line):
        current.mac = link.group("mac") or ""
    elif inet := _IP_INET.match(line):
        dynamic = True if "dynamic" in inet.group("rest").split() else None
        # A point-to-point address ("inet 10.0.0.1 peer 10.0.0.2/32") has no prefix of its own.
        prefix = int(inet.group("prefix") or 32)
        current.ipv4 = [*(current.ipv4 or ()), Address(inet.group("addr"), prefix, dynamic)]


def interfaces_from_ip_text(text: str) -> list[Interface]:
    """Interfaces from ``ip addr`` text (iproute2 without -j, busybox)."""
    found: list[_TextInterface] = []
    for line in text.splitlines():
        if header := _IP_HEADER.match(line):
            found.append(
                _TextInterface(header.group("name"), set(header.group("flags").split(",")))
            )
        elif found:
            _read_ip_line(line, found[-1])
    if not found:
        raise ValueError("no interface in ip addr output")
    return [i.freeze() for i in found]


def _ifconfig_addresses(item: Mapping[str, Any]) -> tuple[Address, ...]:
    entries = item.get("ipv4") or (
        [{"address": item["ipv4_addr"], "mask": item.get("ipv4_mask")}]
        if item.get("ipv4_addr")
        else []
    )
    return tuple(
        Address(str(e["address"]), _prefix(e["mask"]) if e.get("mask") else 32) for e in entries
    )


def interfaces_from_ifconfig(text: str) -> list[Interface]:
    """Interfaces from ``ifconfig -a`` (net-tools, BSD, macOS) through jc."""
    data: Any = jc.parse("ifconfig", text, quiet=True)
    if not data:
        raise ValueError("no interface in ifconfig output")
    interfaces = []
    for item in data:
        state = set(item.get("state") or ())
        loopback = "LOOPBACK" in state
        interfaces.append(
            Interface(
                name=str(item["name"]),
                up={"UP", "RUNNING"} <= state,
                loopback=loopback,
                ipv4=_ifconfig_addresses(item),
                mac="" if loopback else str(item.get("mac_addr") or ""),
            )
        )
    return interfaces


@dataclass(frozen=True)
class DefaultRoute:
    """One IPv4 default route: through ``gateway`` (when it has one) on ``dev``."""

    gateway: str | None
    dev: str
    proto: str = ""


def _json_default_routes(item: Mapping[str, Any]) -> list[DefaultRoute]:
    proto = str(item.get("protocol", ""))
    hops = item.get("nexthops") or [item]  # ECMP defaults list their gateways as nexthops
    return [DefaultRoute(_ipv4(h.get("gateway")), str(h.get("dev", "")), proto) for h in hops]


def routes_from_ip_json(text: str) -> list[DefaultRoute]:
    """Default routes from ``ip -j -4 route`` (iproute2 >= 4.17)."""
    data = json.loads(text)
    if not isinstance(data, list):
        raise ValueError("ip -j route did not print a JSON list")
    return [r for item in data if item.get("dst") == "default" for r in _json_default_routes(item)]


def routes_from_ip_text(text: str) -> list[DefaultRoute]:
    """Default routes from ``ip route`` text through jc."""
    data: Any = jc.parse("ip_route", text, quiet=True) if text.strip() else []
    return [
        DefaultRoute(_ipv4(r.get("via")), str(r.get("dev", "")), str(r.get("proto", "")))
        for r in data
        if r.get("ip") == "default"
    ]


def routes_from_netstat(text: str) -> list[DefaultRoute]:
    """Default routes from ``netstat -rn`` (Linux, BSD, macOS) through jc."""
    data: Any = jc.parse("netstat", text, quiet=True) if text.strip() else []
    return [
        DefaultRoute(_ipv4(r.get("gateway")), str(r.get("iface", "")))
        for r in data
        if r.get("kind") == "route"
        and r.get("destination") in ("default", ANY_ADDRESS)
        and r.get("genmask", ANY_ADDRESS) == ANY_ADDRESS
        and _ipv4(r.get("gateway"))
    ]


def dns_servers(text: str) -> tuple[str, ...]:
    """Name servers from a resolv.conf, through jc."""
    data: Any = jc.parse("resolve_conf", text, quiet=True) if text.strip() else {}
    return tuple(str(s) for s in (data.get("nameservers") or ()))


# label -> parser, in order of preference: the parser picks the best it got.
INTERFACE_SOURCES: tuple[tuple[str, Callable[[str], list[Interface]]], ...] = (
    ("ip -j addr", interfaces_from_ip_json),
    ("ip addr", interfaces_from_ip_text),
    ("ifconfig -a", interfaces_from_ifconfig),
)
ROUTE_SOURCES: tuple[tuple[str, Callable[[str], list[DefaultRoute]]], ...] = (
    ("ip -j route", routes_from_ip_json),
    ("ip route", routes_from_ip_text),
    ("netstat -rn", routes_from_netstat),
)


def _first_source(
    parts: Mapping[str, str], sources: Iterable[tuple[str, Callable[[str], Any]]]
) -> tuple[str | None, Any]:
    """The first labelled output present, parsed; ParseError if that one is unreadable."""
    for label, parser in sources:
        if label in parts:
            try:
                return label, parser(parts[label])
            except (ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
                raise ParseError(
                    f"{label}: unreadable output ({exc}): {_excerpt(parts[label])}"
                ) from exc
    return None, None


def _with_routes(interface: Interface, routes: Sequence[DefaultRoute]) -> Interface:
    mine = [r for r in routes if r.dev == interface.name]
    dynamic = any(a.dynamic for a in interface.ipv4) or any(r.proto == "dhcp" for r in mine)
    return replace(
        interface,
        gateways=tuple(dict.fromkeys(r.gateway for r in mine if r.gateway)),
        # No single Unix signal says "static": without a DHCP sign we do not know.
        dhcp=True if dynamic else None,
    )


@functools.lru_cache(maxsize=64)
def parse_net(text: str) -> NetConfig:
    """A host's interfaces, default gateways and DNS from the net step's output.

    Cached (NetConfig is frozen): binding and ipconfig read the same output."""
    parts = split_labelled(text)
    if_label, interfaces = _first_source(parts, INTERFACE_SOURCES)
    if interfaces is None:
        raise ParseError(f"no interface listing in the output: {_excerpt(text)}")
    rt_label, routes = _first_source(parts, ROUTE_SOURCES)
    routes = routes or []
    resolv = next((label for label in parts if label.startswith("/")), None)
    return NetConfig(
        interfaces=tuple(_with_routes(i, routes) for i in interfaces),
        default_gateways=tuple(dict.fromkeys(r.gateway for r in routes if r.gateway)),
        dns_servers=dns_servers(parts[resolv]) if resolv else (),
        source=" + ".join(label for label in (if_label, rt_label, resolv) if label),
    )


def _net_output(outputs: Mapping[str, StepOutput], key: str) -> NetConfig:
    if key not in outputs:
        raise ParseError(f"no output for step {key}")
    return parse_net(_text(outputs[key]))


def parse_binding(outputs: Mapping[str, StepOutput]) -> NetConfig:
    return _net_output(outputs, BINDING_KEY)


def parse_ipconfig(outputs: Mapping[str, StepOutput]) -> NetConfig:
    return _net_output(outputs, IPCONFIG_KEY)


# ---------------------------------------------------------------- ping

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
_CANNOT_RUN = re.compile(r"ping: (?:not found|command not found)|socket: Operation not permitted")


def _ping_meta(text: str) -> tuple[str, str]:
    """The gateway address and any error our own step script printed."""
    address, error = "", ""
    for line in text.splitlines():
        if line.startswith("fleet: gateway "):
            address = line.split()[-1]
        elif line.strip() == "fleet: no default gateway":
            error = "no default gateway"
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


def parse_ping(output: StepOutput, target: str) -> PingResult:
    """ping's outcome, from iputils, busybox, BSD or macOS output."""
    text = _text(output)
    address, error = _ping_meta(text)
    if error:
        return PingResult(target=target, transmitted=0, received=0, error=error)
    if output.exit_status == 127 or _CANNOT_RUN.search(text):
        raise ParseError(f"ping cannot run on the host: {_excerpt(text)}")
    body = "\n".join(line for line in text.splitlines() if not line.startswith("fleet: "))
    if "packets transmitted" not in body:
        for pattern, reason in PING_ERRORS:
            if pattern.search(body):
                return PingResult(target, 0, 0, address=address, error=reason)
        raise ParseError(f"ping printed no statistics: {_excerpt(text)}")
    return _ping_stats(body, target, address)


# ---------------------------------------------------------------- smtp


def _strings(value: object, field: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ParseError(f"smtp probe: {field} is not a list of strings")
    return tuple(value)


def _optional_number(value: object, field: str) -> Any:
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise ParseError(f"smtp probe: {field} is not a number")
    return value


def _probe_json(text: str) -> Mapping[str, Any]:
    for line in reversed(text.splitlines()):
        if line.startswith("{"):
            try:
                data = json.loads(line)
            except ValueError as exc:
                raise ParseError(f"smtp probe printed broken JSON: {_excerpt(line)}") from exc
            if isinstance(data, dict):
                return data
    raise ParseError(f"smtp probe printed no result: {_excerpt(text)}")


def parse_smtp(output: StepOutput, target: str) -> SmtpProbe:
    """The probe's one JSON object as an SmtpProbe."""
    text = _text(output)
    if NO_PYTHON in text:
        raise ParseError("smtp probe needs python3 on the host")
    data = _probe_json(text)
    outcome = data.get("outcome")
    if outcome not in SMTP_OUTCOMES:
        raise ParseError(f"smtp probe: unknown outcome {outcome!r}")
    code = _optional_number(data.get("greeting_code"), "greeting_code")
    return SmtpProbe(
        target=target,
        port=int(_optional_number(data.get("port"), "port") or 0),
        outcome=str(outcome),
        address=str(data.get("address") or ""),
        greeting_code=int(code) if code is not None else None,
        greeting=_strings(data.get("greeting", []), "greeting"),
        ehlo=_strings(data.get("ehlo", []), "ehlo"),
        starttls=data.get("starttls") is True,
        error=str(data.get("error") or ""),
        connect_ms=_optional_number(data.get("connect_ms"), "connect_ms"),
    )
