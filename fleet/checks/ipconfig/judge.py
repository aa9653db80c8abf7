"""ipconfig's verdict: is the IP configuration sane (KB Q128961, step 2)?"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

from fleet import causes
from fleet.checks.facts import DefaultRoute, Interface, NetConfig, as_facts
from fleet.checks.harness import Finding, with_findings
from fleet.checks.net import APIPA, CONFLICT_STATES, gateway_text, global_v4, render_net, v4
from fleet.model import CheckResult, Status

# Why Windows holds an address back (Get-NetIPAddress AddressState), for the operator.
_CONFLICT_WHY = {
    "duplicate": "another machine on the network answers for it",
    "tentative": "duplicate address detection has not confirmed it",
    "invalid": "Windows no longer uses it",
}


def _address_findings(interfaces: Sequence[Interface]) -> list[Finding]:
    findings: list[Finding] = []
    for i in interfaces:
        usable = global_v4(i)
        for a in i.ipv4:
            ip = v4(a.address)
            state = a.state.lower()
            if state in CONFLICT_STATES:
                message = f"address {a.address} on {i.name} is {a.state}: {_CONFLICT_WHY[state]}"
                findings.append((Status.FAIL, causes.ADDRESS_CONFLICT, message))
            elif ip is None:
                findings.append(
                    (Status.FAIL, causes.UNPARSED, f"unreadable address {a.address!r} on {i.name}")
                )
            elif ip.is_unspecified:
                findings.append((Status.FAIL, causes.ZERO_ADDRESS, f"address 0.0.0.0 on {i.name}"))
            elif ip in APIPA:
                # An APIPA address next to a real one is a leftover, not an outage.
                status = Status.WARN if usable else Status.FAIL
                message = f"APIPA address {a.address} on {i.name}: DHCP failed"
                findings.append((status, causes.APIPA, message))
            elif a.prefix <= 0 or a.prefix > 32:
                message = f"netmask /{a.prefix} on {i.name} ({a.address})"
                findings.append((Status.FAIL, causes.NO_IPV4, message))
    return findings


def _networks(interfaces: Iterable[Interface]) -> list[ipaddress.IPv4Network]:
    out = []
    for i in interfaces:
        for a in i.ipv4:
            if v4(a.address) is not None and 0 < a.prefix <= 32:
                out.append(ipaddress.IPv4Network(f"{a.address}/{a.prefix}", strict=False))
    return out


def _gateways(net: NetConfig, dead: frozenset[str] = frozenset()) -> list[str]:
    found = list(net.default_gateways)
    found += [g for i in net.interfaces for g in i.gateways]
    usable = []
    for g in dict.fromkeys(found):
        ip = v4(g)
        if ip is not None and not ip.is_unspecified and g not in dead:
            usable.append(g)
    return usable


def _on_link(net: NetConfig) -> list[DefaultRoute]:
    """Default routes without a next hop (``default dev ppp0``): a default route all the same."""
    return [r for r in net.default_routes if not r.gateway and r.interface]


def _carrier_findings(net: NetConfig) -> tuple[list[Finding], frozenset[str]]:
    """Default routes whose interface has no carrier, and their gateways.

    The one the kernel uses (the first) failing is the host's outage; a backup
    route on a dead link is a warning.  Either is said as such, not as a gateway
    "outside every subnet" (the down interface's subnet is not counted).
    """
    up = {i.name: i.up for i in net.interfaces}
    findings: list[Finding] = []
    dead = []
    for n, r in enumerate(net.default_routes):
        if r.linkdown or up.get(r.interface) is False:
            status = Status.FAIL if n == 0 else Status.WARN
            which = "default route" if n == 0 else "backup default route"
            message = f"{which} {r.describe()}: {r.interface} has no carrier (NO-CARRIER)"
            findings.append((status, causes.NO_CARRIER, message))
            dead.append(r.gateway)
    return findings, frozenset(dead)


def _gateway_findings(net: NetConfig, interfaces: Sequence[Interface]) -> list[Finding]:
    findings, dead = _carrier_findings(net)
    gateways = _gateways(net, dead)
    if not gateways and not findings and not _on_link(net):
        return [(Status.FAIL, causes.NO_GATEWAY, "no default gateway")]
    networks = _networks(interfaces)
    # A /32 address with an on-link gateway is normal in clouds (GCE, Hetzner):
    # the route to the gateway is set explicitly, so it is not a misconfiguration.
    host_routes = any(n.prefixlen == 32 for n in networks)
    return findings + [
        (
            Status.FAIL,
            causes.GATEWAY_OFF_SUBNET,
            f"default gateway {g} is outside every interface's subnet",
        )
        for g in gateways
        if not host_routes and not any(ipaddress.IPv4Address(g) in n for n in networks)
    ]


def _ok(interfaces: Sequence[Interface], net: NetConfig) -> str:
    parts = []
    for i in interfaces:
        if i.ipv4:
            how = {True: " (DHCP)", False: " (static)", None: ""}[i.dhcp]
            addresses = ", ".join(f"{a.address}/{a.prefix}" for a in i.ipv4)
            parts.append(f"{i.name} {addresses}{how}")
    # Several routes, an on-link one or one from a policy table: each as the route says.
    plain = len(net.default_routes) < 2 and all(
        r.gateway and not r.table for r in net.default_routes
    )
    gateways = ", ".join(_gateways(net)) if plain else gateway_text(net)
    return f"{'; '.join(parts)}, gateway {gateways}, DNS {', '.join(net.dns_servers) or '-'}"


def judge_ipconfig(host: str, net: NetConfig, evidence: str = "") -> CheckResult:
    """Fail on no IPv4, APIPA, 0.0.0.0, no default route, a gateway off every subnet, a
    default route whose interface has no carrier, an address Windows marks Duplicate,
    Tentative or Invalid (a conflict: the local stack).  An on-link default route
    (``default dev ppp0``) is a default route: it has no gateway to judge.

    Adapters that are not the server's own connections (``internal``: the failover
    cluster's NetFT adapter, whose 169.254.x.x is by design) are shown, not judged.
    """
    interfaces = [i for i in net.interfaces if i.up and not i.loopback and not i.internal]
    findings: list[Finding] = []
    if not any(i.ipv4 for i in interfaces):
        findings.append((Status.FAIL, causes.NO_IPV4, "no IPv4 address on any up interface"))
    findings += _address_findings(interfaces)
    findings += _gateway_findings(net, interfaces)
    if not net.dns_servers and not any(i.dns for i in interfaces):
        findings.append((Status.WARN, causes.NO_DNS, "no DNS servers configured"))
    ok = _ok(interfaces, net)
    return with_findings(host, "ipconfig", findings, ok, as_facts(net), evidence or render_net(net))
