"""A host's own TCP/IP configuration at fault: the KB's first cause, and duplicate addresses."""

from __future__ import annotations

import ipaddress

from fleet import causes
from fleet.checks.facts import NetConfig
from fleet.diagnose.commands import Address, Fix, Target, Value, Word
from fleet.diagnose.model import DUPLICATE_ADDRESS, LOCAL_STACK, Finding, finding
from fleet.diagnose.observe import Fleet, Pair, netconfig, pair_line
from fleet.model import HostResult, Status

# Binding failures that mean TCP/IP itself is off an adapter (an older report: any binding failure).
_UNBOUND = frozenset({causes.TCPIP_UNBOUND, ""})


def _networks(config: NetConfig | None) -> list[ipaddress.IPv4Network]:
    if config is None:
        return []
    nets = []
    for iface in config.interfaces:
        if iface.loopback:
            continue
        for a in iface.ipv4:
            try:
                nets.append(ipaddress.IPv4Network(f"{a.address}/{a.prefix}", strict=False))
            except ValueError:
                continue
    return nets


def _gateways(config: NetConfig | None) -> list[str]:
    if config is None:
        return []
    gws = list(config.default_gateways)
    for iface in config.interfaces:
        gws.extend(iface.gateways)
    # 0.0.0.0 (Windows' "no gateway") and other 0.x values route nowhere
    return [g for g in gws if g and not g.startswith("0.")]


def _unbound_adapters(config: NetConfig | None) -> list[str]:
    """Windows adapters that are up but have TCP/IP (ms_tcpip) unbound."""
    if config is None:
        return []
    return [
        iface.name
        for iface in config.interfaces
        if iface.up and dict(iface.bindings).get("ms_tcpip") is False
    ]


def _off_subnet_without_gateway(fleet: Fleet, host: HostResult) -> list[str]:
    config = netconfig(host)
    nets = _networks(config)
    if not nets or _gateways(config):
        return []
    outside = []
    for p in fleet.pairs_from(host.host):
        address = p.address or (fleet.hosts[p.target].address if p.target in fleet.hosts else "")
        try:
            ip = ipaddress.IPv4Address(address or p.label)
        except ValueError:
            continue
        if not p.answered and not any(ip in n for n in nets):
            outside.append(f"{p.label} ({ip})")
    if not outside:
        return []
    shown = ", ".join(str(n) for n in nets)
    return [f"{host.host} has no default gateway, and peers outside {shown}: {', '.join(outside)}"]


def _isolated(fleet: Fleet, host: str) -> list[str]:
    """Evidence that ``host`` reaches none of its peers while others reach them."""
    mine = fleet.pairs_from(host)
    if not mine or not all(p.silent for p in mine):
        return []
    # the other sources of its own targets, not the whole fleet's pairs: linear in the fleet
    targets = dict.fromkeys(p.target for p in mine)
    others = (p for target in targets for p in fleet.pairs_to(target) if p.source != host)
    witnesses = [p for p in others if p.answered]
    if not witnesses:
        return []
    names = ", ".join(p.label for p in mine)
    reached = ", ".join(sorted({p.target for p in witnesses}))
    return [
        f"{host} reaches none of its {len(mine)} peers ({names}); others reach {reached}",
        f"e.g. {pair_line(witnesses[0])}",
    ]


def _destination(p: Pair) -> Value | None:
    """What a source's command names a peer by: a gateway by its address, else the
    target as the playbook wrote it; None for a gateway the host does not have."""
    if p.label.startswith("gateway "):
        return Address(p.address or p.label.removeprefix("gateway ")) if p.address else None
    if p.label.startswith("gateway of "):
        return None
    return Target(p.label)


# Per platform, the steps that read the stack: its addresses, its route, a peer, a name.
_STACK_STEPS = {
    "windows": (
        "Get-NetIPConfiguration   # address, mask, gateway, DNS",
        "ipconfig /renew   # when DHCP left a 169.254.x.x address",
        "Test-NetConnection {peer} -Port 25",
        "Resolve-DnsName {name}",
    ),
    "unix": (
        "ip -br addr   # an interface UP with a global IPv4 address?",
        "ip route   # a default route via the gateway?",
        "ping -c 3 {peer}",
        "getent hosts {name}",
    ),
}


def _stack_fix(fleet: Fleet, host: HostResult) -> Fix:
    pairs = fleet.pairs_from(host.host)
    peer = next((d for p in pairs if (d := _destination(p)) is not None), None)
    unresolved = next((p for p in pairs if p.unresolved), None)
    fix = Fix()
    windows = host.platform == "windows"
    if windows:
        adapters = _unbound_adapters(netconfig(host))
        unbound = any(
            r.check == "binding" and r.status is Status.FAIL and r.cause in _UNBOUND
            for r in host.results
        )
        fix.ps("Get-NetAdapterBinding -ComponentID ms_tcpip   # TCP/IP bound on each adapter?")
        for name in adapters:
            fix.ps("Enable-NetAdapterBinding -Name {a} -ComponentID ms_tcpip", a=Word(name))
        if not adapters and unbound:
            fix.note("then: Enable-NetAdapterBinding -Name <adapter> -ComponentID ms_tcpip")
    add = fix.ps if windows else fix.sh
    config, route, reach, resolve = _STACK_STEPS["windows" if windows else "unix"]
    add(config)
    add(route)
    if peer is not None:
        add(reach, peer=peer)
    if unresolved is not None:
        add(resolve, name=Target(unresolved.label))
    return fix


def _stack_reasons(fleet: Fleet, host: HostResult) -> list[str]:
    """Evidence that the host's own TCP/IP configuration is at fault."""
    reasons = [
        f"{r.check}: {r.summary}"
        for r in host.results
        if r.check in ("binding", "ipconfig") and r.status is Status.FAIL
    ]
    reasons += _off_subnet_without_gateway(fleet, host)
    reasons += [
        f"{p.label} does not resolve on {host.host} ({p.smtp_detail or p.ping_detail})"
        for p in fleet.pairs_from(host.host)
        if p.unresolved
    ]
    return reasons + _isolated(fleet, host.host)


def local_stack_findings(fleet: Fleet) -> list[Finding]:
    findings = []
    for name in sorted(fleet.audited):
        host = fleet.hosts[name]
        reasons = _stack_reasons(fleet, host)
        if not reasons:
            continue
        title = f"{name}: its own TCP/IP configuration is at fault"
        findings.append(finding(LOCAL_STACK, name, title, [name], reasons, _stack_fix(fleet, host)))
    return findings


def _host_addresses(host: HostResult) -> set[str]:
    config = netconfig(host)
    if config is None:
        return set()
    return {
        a.address
        for iface in config.interfaces
        if not iface.loopback
        for a in iface.ipv4
        if a.address and not a.address.startswith(("127.", "169.254.", "0."))
    }


def duplicate_findings(fleet: Fleet) -> list[Finding]:
    owners: dict[str, list[str]] = {}
    for name in sorted(fleet.audited):
        for address in _host_addresses(fleet.hosts[name]):
            owners.setdefault(address, []).append(name)
    findings = []
    for address, hosts in sorted(owners.items()):
        if len(hosts) < 2:
            continue
        fix, ip = Fix(), Address(address)
        fix.sh("ip neigh show {ip}   # Linux: which MAC answers for it?", ip=ip)
        fix.sh("arping -D -c 2 {ip}   # Linux: more than one reply = duplicate", ip=ip)
        fix.ps("Get-NetIPAddress -IPAddress {ip}   # Windows: AddressState Duplicate?", ip=ip)
        fix.note("then change the static address, or the DHCP reservation, of one of them")
        title = f"{address} is configured on {len(hosts)} hosts: {', '.join(hosts)}"
        evidence = (f"{h} has {address}" for h in hosts)
        findings.append(finding(DUPLICATE_ADDRESS, address, title, hosts, evidence, fix))
    return findings
