"""The net step on Unix, which binding and ipconfig share: one run, parsed once per host.

The step prints labelled outputs (iproute2 JSON where the host has it, else
its text, else ifconfig/netstat; then resolv.conf); ``parse_net`` reads the
best of them into a ``NetConfig``.  Command output is parsed with jc wherever
jc knows the command; iproute2's own JSON is read directly.
"""

from __future__ import annotations

import ipaddress
import itertools
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import jc

from fleet.checks.base import Step, StepOutput
from fleet.checks.facts import Address, DefaultRoute, Interface, NetConfig
from fleet.checks.harness import excerpt
from fleet.errors import ParseError

KEY = "net"  # the step's key in binding's and in ipconfig's outputs

# One step may print several outputs; each starts with this label line.
NET_LABEL = "@@fleet-net "

# The outside address whose route the kernel is asked for (NET_SCRIPT spells it
# out): TEST-NET-1, which no host should route specially.
PROBE_DESTINATION = "192.0.2.1"

# Prefer iproute2 JSON; fall back to its text (busybox, said so, iproute2 < 4.14, or
# 4.14-4.16 where `ip -j route` prints text), then to ifconfig/netstat (BSD,
# macOS, old Linux).  `ip route get` asks the kernel which route an outside
# address takes (policy rules and every table: one process, no packet sent).
# DNS from systemd-resolved's real list when present.
NET_SCRIPT = r"""l() { printf '\n@@fleet-net %s\n' "$1"; }
if command -v ip >/dev/null 2>&1; then
  a=$(ip -j addr show 2>/dev/null)
  case $a in
    \[*) l 'ip -j addr'; printf '%s\n' "$a" ;;
    *) case $(ip 2>&1) in *BusyBox*) l BusyBox ;; esac
      l 'ip addr'; ip addr show 2>&1 ;;
  esac
  r=$(ip -j -4 route show 2>/dev/null)
  case $r in
    \[*) l 'ip -j route'; printf '%s\n' "$r"
      l 'ip -j route get'; ip -j -4 route get 192.0.2.1 2>&1 ;;
    *) l 'ip route'; ip -4 route show 2>&1
      l 'ip route get'; ip -4 route get 192.0.2.1 2>&1 ;;
  esac
else
  l 'ifconfig -a'; ifconfig -a 2>&1
  l 'netstat -rn'; netstat -rn 2>&1
fi
f=/etc/resolv.conf
[ -r /run/systemd/resolve/resolv.conf ] && f=/run/systemd/resolve/resolv.conf
l "$f"; cat "$f" 2>&1
"""


ANY_ADDRESS = str(ipaddress.IPv4Address(0))  # netstat's name for the default route


def steps(params: Mapping[str, Any]) -> list[Step]:
    return [Step(key=KEY, script=NET_SCRIPT)]


def parse(outputs: Mapping[str, StepOutput]) -> NetConfig:
    """The host's network configuration; read once per host however many checks ask."""
    if KEY not in outputs:
        raise ParseError(f"no output for step {KEY}")
    output = outputs[KEY]
    return output.read.once(lambda: parse_net(output.stdout.decode("utf-8", "replace")), parse_net)


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


def _metric(value: object) -> int:
    # iproute2 omits the metric when it is 0 (the kernel sends no RTA_PRIORITY then).
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _json_default_routes(item: Mapping[str, Any]) -> list[DefaultRoute]:
    proto = str(item.get("protocol", ""))
    table = str(item.get("table", ""))
    metric = _metric(item.get("metric"))
    hops = item.get("nexthops") or [item]  # ECMP defaults list their gateways as nexthops
    return [
        DefaultRoute(
            gateway=_ipv4(h.get("gateway")) or "",
            interface=str(h.get("dev", "")),
            metric=metric,
            table="" if table == "main" else table,
            linkdown="linkdown" in (h.get("flags") or item.get("flags") or ()),
            proto=proto,
        )
        for h in hops
    ]


def routes_from_ip_json(text: str) -> list[DefaultRoute]:
    """Default routes from ``ip -j -4 route`` (iproute2 >= 4.17)."""
    data = json.loads(text)
    if not isinstance(data, list):
        raise ValueError("ip -j route did not print a JSON list")
    return [r for item in data if item.get("dst") == "default" for r in _json_default_routes(item)]


def _text_route(words: Sequence[str]) -> DefaultRoute:
    """One route from ``ip route`` words: ``default via 198.18.0.1 dev eth0 metric 100 linkdown``.

    Read here rather than through jc, whose ip_route parser drops ``table``.
    """
    pairs = dict(itertools.pairwise(words))
    table = pairs.get("table", "")
    return DefaultRoute(
        gateway=_ipv4(pairs.get("via")) or "",
        interface=pairs.get("dev", ""),
        metric=int(pairs["metric"]) if pairs.get("metric", "").isdigit() else 0,
        table="" if table == "main" else table,
        linkdown="linkdown" in words,
        proto=pairs.get("proto", ""),
    )


def routes_from_ip_text(text: str) -> list[DefaultRoute]:
    """Default routes from ``ip -4 route`` text (iproute2 without -j, busybox).

    An ECMP default continues on indented ``nexthop via ... dev ...`` lines.
    """
    routes: list[DefaultRoute] = []
    head: list[str] | None = None
    for line in text.splitlines():
        words = line.split()
        if not words:
            continue
        if not line[0].isspace():
            head = words if words[0] == "default" else None
            if head and ("via" in words or "dev" in words):
                routes.append(_text_route(head))
        elif head is not None and words[0] == "nexthop":
            routes.append(replace(_text_route(words), metric=_text_route(head).metric))
    return routes


def kernel_route_from_ip_json(text: str) -> DefaultRoute | None:
    """The route ``ip -j -4 route get`` names; None when the kernel has none (unreachable)."""
    if not text.lstrip().startswith("["):
        return None  # "RTNETLINK answers: Network is unreachable"
    data = json.loads(text)
    if not isinstance(data, list):
        raise ValueError("ip -j route get did not print a JSON list")
    return replace(_json_default_routes(data[0])[0], metric=None, proto="") if data else None


def kernel_route_from_ip_text(text: str) -> DefaultRoute | None:
    """The route ``ip -4 route get`` names: ``192.0.2.1 via 198.18.0.1 dev eth0 table 100 ...``."""
    first = text.splitlines()[0].split() if text.strip() else []
    if not first or first[0] != PROBE_DESTINATION:
        return None  # "RTNETLINK answers: Network is unreachable", or no route get at all
    return replace(_text_route(first), metric=None, proto="")


def routes_from_netstat(text: str) -> list[DefaultRoute]:
    """Default routes from ``netstat -rn`` (Linux, BSD, macOS) through jc."""
    data: Any = jc.parse("netstat", text, quiet=True) if text.strip() else []
    return [
        DefaultRoute(_ipv4(r.get("gateway")) or "", str(r.get("iface", "")))
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
KERNEL_ROUTE_SOURCES: tuple[tuple[str, Callable[[str], DefaultRoute | None]], ...] = (
    ("ip -j route get", kernel_route_from_ip_json),
    ("ip route get", kernel_route_from_ip_text),
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
    mine = [r for r in routes if r.interface == interface.name]
    dynamic = any(a.dynamic for a in interface.ipv4) or any(r.proto == "dhcp" for r in mine)
    return replace(
        interface,
        gateways=tuple(dict.fromkeys(r.gateway for r in mine if r.gateway)),
        # No single Unix signal says "static": without a DHCP sign we do not know.
        dhcp=True if dynamic else None,
    )


def _same_route(a: DefaultRoute, b: DefaultRoute) -> bool:
    return (a.gateway, a.interface) == (b.gateway, b.interface)


def ordered_routes(
    listed: Sequence[DefaultRoute], kernel: DefaultRoute | None
) -> tuple[DefaultRoute, ...]:
    """The default routes, the one the kernel uses first, then the others by metric.

    ``kernel`` is the kernel's answer for an outside address: a listed route (now
    known to be the one in use), or one from a policy-routing table the listing
    (main) lacks, which counts as the default route all the same.
    """
    rest = sorted(listed, key=lambda r: (r.metric is None, r.metric or 0))
    if kernel is None:
        return tuple(rest)
    used = next((r for r in rest if _same_route(r, kernel)), None)
    if used is None:
        return (kernel, *rest)
    return (used, *(r for r in rest if r is not used))


def parse_net(text: str) -> NetConfig:
    """A host's interfaces, default routes, gateways and DNS from the net step's output."""
    parts = split_labelled(text)
    if_label, interfaces = _first_source(parts, INTERFACE_SOURCES)
    if interfaces is None:
        raise ParseError(f"no interface listing in the output: {_excerpt(text)}")
    rt_label, listed = _first_source(parts, ROUTE_SOURCES)
    get_label, kernel = _first_source(parts, KERNEL_ROUTE_SOURCES)
    routes = ordered_routes(listed or [], kernel)
    resolv = next((label for label in parts if label.startswith("/")), None)
    labels = ("BusyBox" if "BusyBox" in parts else None, if_label, rt_label, get_label, resolv)
    return NetConfig(
        interfaces=tuple(_with_routes(i, routes) for i in interfaces),
        default_gateways=tuple(dict.fromkeys(r.gateway for r in routes if r.gateway)),
        dns_servers=dns_servers(parts[resolv]) if resolv else (),
        source=" + ".join(label for label in labels if label),
        default_routes=routes,
    )
