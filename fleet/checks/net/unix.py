"""The net step on Unix, which binding and ipconfig share: one run, parsed once per host.

The step prints labelled outputs (iproute2 JSON where the host has it, else
its text, else ifconfig/netstat; then resolv.conf); ``parse_net`` reads the
best of them into a ``NetConfig``.  Command output is parsed with jc wherever
jc knows the command; iproute2's own JSON is read directly.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import jc

from fleet.checks.base import Step, StepOutput
from fleet.checks.facts import Address, Interface, NetConfig
from fleet.checks.harness import excerpt
from fleet.errors import ParseError

KEY = "net"  # the step's key in binding's and in ipconfig's outputs

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


def parse_net(text: str) -> NetConfig:
    """A host's interfaces, default gateways and DNS from the net step's output."""
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
