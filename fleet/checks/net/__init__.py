"""What binding and ipconfig share: the host's network configuration and how it reads.

``unix`` is the one net step both checks run on Unix (parsed once per host);
``windows`` the adapter fields both Windows scripts report.  Each check's
judge stays in its own folder; the address rules and the evidence they both
show are here.
"""

from __future__ import annotations

import ipaddress

from fleet.checks.facts import Address, Interface, NetConfig
from fleet.checks.harness import excerpt

APIPA = ipaddress.IPv4Network("169.254.0.0/16")
LOOPBACK = ipaddress.IPv4Network("127.0.0.0/8")
# Address states (duplicate address detection) in which Windows does not use an address.
CONFLICT_STATES = frozenset({"duplicate", "tentative", "invalid"})


def v4(address: str) -> ipaddress.IPv4Address | None:
    try:
        return ipaddress.IPv4Address(address)
    except ValueError:
        return None


def global_v4(interface: Interface) -> list[str]:
    """The interface's addresses a peer could reach it on (not loopback, APIPA or 0.0.0.0,
    nor one Windows holds back as Duplicate, Tentative or Invalid)."""
    out = []
    for a in interface.ipv4:
        ip = v4(a.address)
        if a.state.lower() in CONFLICT_STATES:
            continue
        if ip is not None and not (ip in LOOPBACK or ip in APIPA or ip.is_unspecified):
            out.append(a.address)
    return out


def _address_text(address: Address) -> str:
    state = address.state.lower()
    flag = f"({address.state})" if state and state != "preferred" else ""
    return f"{address.address}/{address.prefix}{flag}"


def gateway_text(net: NetConfig) -> str:
    """The default gateways, the one in use first; with their metrics when there are several.

    An on-link default route (no gateway) shows as "on-link via dev ppp0", one from a
    policy-routing table with its table.
    """
    routes = net.default_routes
    if len([r for r in routes if r.metric is not None]) >= 2:
        return ", ".join(
            r.describe() if r.metric is None else f"{r.describe()} (metric {r.metric})"
            for r in routes
        )
    if any(not r.gateway or r.table for r in routes):
        return ", ".join(r.describe() for r in routes)
    return ", ".join(net.default_gateways)


def render_net(net: NetConfig) -> str:
    """A few lines an operator reads as evidence for binding/ipconfig (like ``ip -br addr``)."""
    lines = [f"source: {net.source}"] if net.source else []
    for i in net.interfaces:
        state = "up" if i.up else "down"
        addresses = " ".join(_address_text(a) for a in i.ipv4) or "-"
        dhcp = {True: " dhcp", False: " static", None: ""}[i.dhcp]
        bound = [c for c, enabled in i.bindings if enabled]
        extra = f" bound: {','.join(bound)}" if i.bindings else ""
        internal = f" ({i.internal}: not judged)" if i.internal else ""
        lines.append(f"{i.name} {state} {addresses}{dhcp}{extra}{internal}")
    lines.append(f"default gateway: {gateway_text(net) or '-'}")
    lines.append(f"dns: {', '.join(net.dns_servers) or '-'}")
    return excerpt("\n".join(lines))
