"""Why an audit failed: findings an operator can act on, read from a RunResult alone.

A single host cannot tell "my TCP/IP stack is broken" from "the other server is
down" (the two causes of KB Q128961); the fleet view can, because every host
probes its peers and the runner probes every host.  ``diagnose`` compares those
observations and returns ``Finding``s, each with the evidence that supports it
and the commands that fix it, plus one ``PairVerdict`` per (source -> target)
pair for the connectivity matrix.

Everything here is pure: a RunResult in, a Diagnosis out.  Facts are read
defensively (``.get`` with defaults) because they come from JSON that older or
newer checks may have written.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from fleet.checks.facts import (
    SMTP_BAD_GREETING,
    SMTP_ERROR,
    SMTP_OK,
    SMTP_REFUSED,
    SMTP_TIMEOUT,
    SMTP_UNREACHABLE,
    SMTP_UNRESOLVED,
)
from fleet.model import CheckResult, HostResult, RunResult, Status

LOCAL_STACK = "local-stack"
HOST_DOWN = "host-down"
NETWORK_PATH = "network-path"
MAIL_SERVICE = "mail-service"
NOT_AUDITED = "not-audited"
DUPLICATE_ADDRESS = "duplicate-address"
ONE_SIDED = "one-sided"
CHECK_ERROR = "check-error"

# Causes in the order a report shows them, with the heading it uses.
CAUSES: dict[str, str] = {
    HOST_DOWN: "Host down",
    LOCAL_STACK: "Local TCP/IP stack",
    DUPLICATE_ADDRESS: "Duplicate address",
    NETWORK_PATH: "Network path between hosts",
    ONE_SIDED: "One-sided connectivity",
    MAIL_SERVICE: "Mail service",
    NOT_AUDITED: "Not audited",
    CHECK_ERROR: "Check could not run",
}

# Pair verdicts that are not a cause
PAIR_OK = "ok"
PAIR_PING_BLOCKED = "ping-blocked"  # SMTP works, ICMP does not: a filter, not an outage
PAIR_UNEXPLAINED = "unexplained"


@dataclass(frozen=True)
class Finding:
    """One problem, the hosts it concerns, why we think so, and how to fix it."""

    cause: str  # one of CAUSES
    title: str
    hosts: tuple[str, ...]
    evidence: tuple[str, ...]
    fix: str  # commands, one per line, in today's tools
    severity: Status
    key: str  # stable across runs, e.g. "mail-service:mx2"


@dataclass(frozen=True)
class PairVerdict:
    """What one source saw of one target, and which cause explains it."""

    source: str
    target: str  # inventory name when the target is an inventory host
    ping: str  # "ok", "no reply", "" (not run)
    ping_detail: str  # "3/3 received, avg 0.4 ms"
    port25: str  # an SMTP outcome, "" when not probed
    greeting: str  # first line of the greeting, "" when none
    cause: str  # PAIR_OK, PAIR_PING_BLOCKED, PAIR_UNEXPLAINED or a cause
    status: Status


@dataclass(frozen=True)
class Diagnosis:
    findings: tuple[Finding, ...]
    pairs: tuple[PairVerdict, ...]

    def by_cause(self) -> dict[str, tuple[Finding, ...]]:
        """Findings grouped by cause, causes in report order, empty groups left out."""
        return {
            cause: group
            for cause in CAUSES
            if (group := tuple(f for f in self.findings if f.cause == cause))
        }

    def for_host(self, host: str) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if host in f.hosts)

    @property
    def sources(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(p.source for p in self.pairs))

    @property
    def targets(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(p.target for p in self.pairs))

    def pair(self, source: str, target: str) -> PairVerdict | None:
        return next((p for p in self.pairs if p.source == source and p.target == target), None)


# --------------------------------------------------------------------------- observations


@dataclass(frozen=True)
class _Pair:
    """Everything one source observed of one target (ping and SMTP merged)."""

    source: str
    target: str  # canonical: inventory name if the target is an inventory host
    label: str  # the target as the playbook wrote it
    ping: bool | None  # None: not run, or the check could not run
    ping_detail: str
    smtp: str | None  # SmtpProbe outcome; None: not probed
    smtp_detail: str
    greeting: str
    address: str  # what the target resolved to on the source
    status: Status

    @property
    def answered(self) -> bool:
        """The target showed it is alive: an echo reply, a TCP answer (even RST)."""
        return self.ping is True or self.smtp in (SMTP_OK, SMTP_REFUSED, SMTP_BAD_GREETING)

    @property
    def silent(self) -> bool:
        """Something was tried and nothing at all came back."""
        tried = self.ping is False or self.smtp in (SMTP_TIMEOUT, SMTP_UNREACHABLE)
        return tried and not self.answered

    @property
    def unresolved(self) -> bool:
        return self.smtp == SMTP_UNRESOLVED or "resolv" in self.ping_detail.lower()


@dataclass(frozen=True)
class _Fleet:
    hosts: dict[str, HostResult]
    audited: frozenset[str]
    pairs: dict[tuple[str, str], _Pair]
    reach: dict[str, dict[int, bool]]  # host -> runner-side port -> open
    _by_source: dict[str, list[_Pair]] = field(init=False, repr=False, compare=False)
    _by_target: dict[str, list[_Pair]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Indexes, so the diagnosis stays linear in the fleet's size.
        by_source: dict[str, list[_Pair]] = {}
        by_target: dict[str, list[_Pair]] = {}
        for pair in self.pairs.values():
            by_source.setdefault(pair.source, []).append(pair)
            by_target.setdefault(pair.target, []).append(pair)
        object.__setattr__(self, "_by_source", by_source)
        object.__setattr__(self, "_by_target", by_target)

    def pairs_from(self, source: str) -> list[_Pair]:
        return list(self._by_source.get(source, ()))

    def pairs_to(self, target: str) -> list[_Pair]:
        return list(self._by_target.get(target, ()))

    def platform(self, host: str) -> str:
        h = self.hosts.get(host)
        return h.platform if h else "unix"

    def runner_reaches(self, host: str) -> bool | None:
        """Can the runner reach ``host``?  None when nothing says either way."""
        ports = self.reach.get(host, {})
        if host in self.audited or any(ports.values()):
            return True  # logging in proves the path
        if ports:
            return False
        return None


def _results(host: HostResult, check: str) -> list[CheckResult]:
    return [r for r in host.results if r.check == check]


def _ping_observation(r: CheckResult) -> tuple[bool | None, str, str]:
    if r.status in (Status.ERROR, Status.SKIPPED, Status.UNREACHABLE):
        return None, r.summary, ""
    f = r.facts
    received, sent = f.get("received"), f.get("transmitted")
    if not isinstance(received, int) or not isinstance(sent, int):
        return r.status is Status.OK, r.summary, str(f.get("address", ""))
    detail = f"{received}/{sent} received"
    if f.get("rtt_avg_ms") is not None:
        detail += f", avg {f['rtt_avg_ms']} ms"
    if f.get("error"):
        detail += f" ({f['error']})"
    return received > 0, detail, str(f.get("address", ""))


def _smtp_observation(r: CheckResult) -> tuple[str | None, str, str, str]:
    if r.status in (Status.ERROR, Status.SKIPPED, Status.UNREACHABLE):
        return None, r.summary, "", ""
    f = r.facts
    outcome = f.get("outcome") or (SMTP_OK if r.status is Status.OK else SMTP_ERROR)
    greeting_lines = f.get("greeting") or ()
    greeting = str(greeting_lines[0]) if greeting_lines else ""
    if not greeting and f.get("greeting_code"):
        greeting = str(f["greeting_code"])
    detail = str(f.get("error") or r.summary)
    return str(outcome), detail, greeting, str(f.get("address", ""))


def _canonical(target: str, hosts: Mapping[str, HostResult], by_address: Mapping[str, str]) -> str:
    """The inventory name of a target given by name or by address."""
    if target in hosts:
        return target
    return by_address.get(target, target)


def _collect_pairs(hosts: Mapping[str, HostResult]) -> dict[tuple[str, str], _Pair]:
    pairs: dict[tuple[str, str], _Pair] = {}
    by_address: dict[str, str] = {}
    for h in hosts.values():
        by_address.setdefault(h.address, h.host)
    for host in hosts.values():
        by_target: dict[str, dict[str, CheckResult]] = {}
        for r in host.results:
            if r.check in ("ping", "smtp") and r.target:
                by_target.setdefault(r.target, {})[r.check] = r
        for label, found in by_target.items():
            if label == "gateway":  # each host's own gateway, not one shared "gateway" host
                address = (found.get("ping") or found.get("smtp")).facts.get("address")  # type: ignore[union-attr]
                label = f"gateway {address}" if address else f"gateway of {host.host}"
            pair = _make_pair(host.host, label, found, hosts, by_address)
            pairs[(pair.source, pair.target)] = pair
    return pairs


def _make_pair(
    source: str,
    label: str,
    found: Mapping[str, CheckResult],
    hosts: Mapping[str, HostResult],
    by_address: Mapping[str, str],
) -> _Pair:
    ping, ping_detail, ping_addr = None, "", ""
    smtp, smtp_detail, greeting, smtp_addr = None, "", "", ""
    if "ping" in found:
        ping, ping_detail, ping_addr = _ping_observation(found["ping"])
    if "smtp" in found:
        smtp, smtp_detail, greeting, smtp_addr = _smtp_observation(found["smtp"])
    return _Pair(
        source=source,
        target=_canonical(label, hosts, by_address),
        label=label,
        ping=ping,
        ping_detail=ping_detail,
        smtp=smtp,
        smtp_detail=smtp_detail,
        greeting=greeting,
        address=ping_addr or smtp_addr,
        status=max((r.status for r in found.values()), key=lambda s: s.severity),
    )


def _reach_port(r: CheckResult) -> int | None:
    """The port a reach result is about: its target ("25") or ``facts["port"]``."""
    for candidate in (r.target, r.facts.get("port")):
        try:
            return int(str(candidate))
        except (TypeError, ValueError):
            continue
    return None


def _collect_reach(hosts: Iterable[HostResult]) -> dict[str, dict[int, bool]]:
    reach: dict[str, dict[int, bool]] = {}
    for host in hosts:
        for r in _results(host, "reach"):
            port = _reach_port(r)
            if port is None or r.status in (Status.ERROR, Status.SKIPPED):
                continue
            is_open = r.facts.get("open")
            reach.setdefault(host.host, {})[port] = (
                bool(is_open) if isinstance(is_open, bool) else r.status is Status.OK
            )
    return reach


def _fleet(run: RunResult) -> _Fleet:
    hosts = {h.host: h for h in run.hosts}
    return _Fleet(
        hosts=hosts,
        audited=frozenset(h.host for h in run.hosts if not h.unreachable),
        pairs=_collect_pairs(hosts),
        reach=_collect_reach(run.hosts),
    )


def _pair_line(p: _Pair) -> str:
    parts = []
    if p.ping is not None:
        parts.append(f"ping {'ok' if p.ping else 'no reply'} ({p.ping_detail})")
    if p.smtp is not None:
        smtp = f"port 25 {p.smtp}"
        if p.greeting:
            smtp += f": {p.greeting!r}"
        elif p.smtp_detail and p.smtp not in p.smtp_detail:
            smtp += f" ({p.smtp_detail})"
        parts.append(smtp)
    return f"{p.source} -> {p.label}: " + "; ".join(parts or ["not probed"])


def _reach_line(fleet: _Fleet, host: str) -> str:
    ports = fleet.reach.get(host)
    if not ports:
        if host not in fleet.hosts:
            return f"runner -> {host}: not probed (not in the inventory)"
        return f"runner -> {host}: no reach check"
    shown = ", ".join(
        f"port {p} {'open' if ok else 'no answer'}" for p, ok in sorted(ports.items())
    )
    return f"runner -> {host}: {shown}"


# --------------------------------------------------------------------------- local stack


def _netconfig(host: HostResult) -> Mapping[str, Any]:
    """The richest NetConfig facts the host reported (ipconfig first, then binding)."""
    for check in ("ipconfig", "binding"):
        for r in _results(host, check):
            if r.facts.get("interfaces"):
                return r.facts
    return {}


def _networks(config: Mapping[str, Any]) -> list[ipaddress.IPv4Network]:
    nets = []
    for iface in config.get("interfaces") or ():
        if iface.get("loopback"):
            continue
        for a in iface.get("ipv4") or ():
            try:
                nets.append(ipaddress.IPv4Network(f"{a['address']}/{a['prefix']}", strict=False))
            except (KeyError, TypeError, ValueError):
                continue
    return nets


def _gateways(config: Mapping[str, Any]) -> list[str]:
    gws = list(config.get("default_gateways") or ())
    for iface in config.get("interfaces") or ():
        gws.extend(iface.get("gateways") or ())
    # 0.0.0.0 (Windows' "no gateway") and other 0.x values route nowhere
    return [g for g in gws if g and not g.startswith("0.")]


def _unbound_adapters(config: Mapping[str, Any]) -> list[str]:
    """Windows adapters that are up but have TCP/IP (ms_tcpip) unbound."""
    names = []
    for iface in config.get("interfaces") or ():
        bindings = dict(tuple(b) for b in iface.get("bindings") or ())
        if iface.get("up") and bindings.get("ms_tcpip") is False:
            names.append(str(iface.get("name", "")))
    return names


def _off_subnet_without_gateway(fleet: _Fleet, host: HostResult) -> list[str]:
    config = _netconfig(host)
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


def _stack_reasons(fleet: _Fleet, host: HostResult) -> list[str]:
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
    return reasons


def _isolated(fleet: _Fleet, host: str) -> list[str]:
    """Evidence that ``host`` reaches none of its peers while others reach them."""
    mine = fleet.pairs_from(host)
    if not mine or not all(p.silent for p in mine):
        return []
    targets = {p.target for p in mine}
    others = [p for p in fleet.pairs.values() if p.source != host and p.target in targets]
    witnesses = [p for p in others if p.answered]
    if not witnesses:
        return []
    names = ", ".join(p.label for p in mine)
    reached = ", ".join(sorted({p.target for p in witnesses}))
    example = _pair_line(witnesses[0])
    return [
        f"{host} reaches none of its {len(mine)} peers ({names}); others reach {reached}",
        f"e.g. {example}",
    ]


def _stack_fix(fleet: _Fleet, host: HostResult, reasons: list[str]) -> str:
    peer = next((p.label for p in fleet.pairs_from(host.host)), "mx2")
    if host.platform == "windows":
        adapters = _unbound_adapters(_netconfig(host))
        if not adapters and any(r.startswith("binding:") for r in reasons):
            adapters = ["<adapter>"]
        lines = ["Get-NetAdapterBinding -ComponentID ms_tcpip   # TCP/IP bound on each adapter?"]
        lines += [f'Enable-NetAdapterBinding -Name "{a}" -ComponentID ms_tcpip' for a in adapters]
        lines += [
            "Get-NetIPConfiguration   # address, mask, gateway, DNS",
            "ipconfig /renew   # when DHCP left a 169.254.x.x address",
            f"Test-NetConnection {peer} -Port 25",
        ]
    else:
        lines = [
            "ip -br addr   # an interface UP with a global IPv4 address?",
            "ip route   # a default route via the gateway?",
            f"ping -c 3 {peer}",
        ]
    if any("resolve" in r for r in reasons):
        lines.append(
            f"Resolve-DnsName {peer}" if host.platform == "windows" else f"getent hosts {peer}"
        )
    return "\n".join(lines)


def _local_stack_findings(fleet: _Fleet) -> list[Finding]:
    findings = []
    for name in sorted(fleet.audited):
        host = fleet.hosts[name]
        reasons = _stack_reasons(fleet, host) + _isolated(fleet, name)
        if not reasons:
            continue
        findings.append(
            Finding(
                cause=LOCAL_STACK,
                title=f"{name}: its own TCP/IP configuration is at fault",
                hosts=(name,),
                evidence=tuple(reasons),
                fix=_stack_fix(fleet, host, reasons),
                severity=Status.FAIL,
                key=f"{LOCAL_STACK}:{name}",
            )
        )
    return findings


# --------------------------------------------------------------------------- targets


def _silent_target_findings(fleet: _Fleet, broken_sources: set[str]) -> list[Finding]:
    """Targets that no healthy source reaches: down, or cut off from its peers."""
    findings = []
    targets = sorted({p.target for p in fleet.pairs.values()})
    for target in targets:
        if target in broken_sources:
            continue  # its own stack explains why nobody reaches it
        tried = [p for p in fleet.pairs_to(target) if p.source not in broken_sources]
        if not tried or not all(p.silent for p in tried):
            continue
        evidence = tuple([_pair_line(p) for p in tried] + [_reach_line(fleet, target)])
        if target.startswith("gateway of "):
            continue  # no gateway at all: the host's ipconfig result says so
        if target.startswith("gateway "):
            findings.append(_gateway_finding(target, tried, evidence))
        elif fleet.runner_reaches(target):
            findings.append(_path_finding(fleet, target, tried, evidence))
        else:
            findings.append(_down_finding(fleet, target, evidence))
    return findings


def _gateway_finding(target: str, tried: list[_Pair], evidence: tuple[str, ...]) -> Finding:
    """A default gateway that answers no ping: down, or (often) filtering ICMP."""
    address = target.removeprefix("gateway ")
    sources = ", ".join(sorted({p.source for p in tried}))
    fix = "\n".join(
        [
            f"ip neigh show {address}   # on {tried[0].source}: does the gateway answer ARP?",
            f"ping -c 3 {address}   # many routers and clouds filter ICMP: if the peers",
            "# and the mail relay are reachable, this is a filter, not an outage",
            f"Test-NetConnection {address} -TraceRoute   # from a Windows host",
        ]
    )
    return Finding(
        cause=NETWORK_PATH,
        title=f"{target} does not answer ping from {sources} (down, or ICMP filtered)",
        hosts=tuple(sorted({p.source for p in tried})),
        evidence=evidence,
        fix=fix,
        severity=Status.WARN,
        key=f"{NETWORK_PATH}:{target}",
    )


def _down_finding(fleet: _Fleet, target: str, evidence: tuple[str, ...]) -> Finding:
    link = "Get-NetAdapter" if fleet.platform(target) == "windows" else "ip -br link"
    fix = "\n".join(
        [
            f"ping -c 3 {target}   # from the runner: no answer means down or cut off",
            "# power and network link: the hypervisor or the server's console",
            f"{link}   # on {target}'s console: is the adapter up?",
        ]
    )
    return Finding(
        cause=HOST_DOWN,
        title=f"{target} answers nobody: down or disconnected",
        hosts=(target,),
        evidence=evidence,
        fix=fix,
        severity=Status.FAIL,
        key=f"{HOST_DOWN}:{target}",
    )


def _path_finding(
    fleet: _Fleet, target: str, tried: list[_Pair], evidence: tuple[str, ...]
) -> Finding:
    peer_addr = tried[0].address or tried[0].source
    if fleet.platform(target) == "windows":
        fix = [
            "Get-NetFirewallProfile   # on the target: which profile is active, inbound default?",
            "Get-NetFirewallRule -Enabled True -Direction Inbound | Select DisplayName, Action",
            f"Find-NetRoute -RemoteIPAddress {peer_addr}   # a route back to the peer?",
        ]
    else:
        fix = [
            "nft list ruleset   # on the target: a rule dropping the peers?",
            f"ip route get {peer_addr}   # on the target: a route back to the peer?",
        ]
    fix.append(f"tracepath {target}   # from {tried[0].source}: where does the path stop?")
    return Finding(
        cause=NETWORK_PATH,
        title=f"{target} is up (the runner reaches it) but its peers cannot reach it",
        hosts=(target,),
        evidence=evidence,
        fix="\n".join(fix),
        severity=Status.FAIL,
        key=f"{NETWORK_PATH}:{target}",
    )


def _mail_problem(p: _Pair) -> str:
    """Which way port 25 fails on a live target, '' when it does not."""
    if p.smtp == SMTP_REFUSED:
        return "port 25 refused"
    if p.smtp == SMTP_TIMEOUT and p.ping is True:
        return "port 25 silent"
    if p.smtp == SMTP_BAD_GREETING:
        code = p.greeting.split(" ", 1)[0].split("-", 1)[0] or "?"
        return f"greeting {code} instead of 220"
    if p.smtp == SMTP_ERROR and p.ping is not False:
        return "SMTP conversation failed"
    return ""


def _mail_fix(fleet: _Fleet, target: str, source: str, problems: set[str]) -> str:
    lines = []
    if fleet.platform(source) == "windows":
        lines.append(f"Test-NetConnection {target} -Port 25   # from {source}")
    else:
        lines.append(f"nc -vz {target} 25   # from {source}")
        lines.append(f"swaks --server {target} --quit-after EHLO   # the whole greeting")
    if fleet.platform(target) == "windows":
        lines.append("Get-Service MSExchangeFrontEndTransport, SMTPSVC   # on the target")
        lines.append("Get-NetTCPConnection -LocalPort 25 -State Listen")
    else:
        lines.append("systemctl status postfix   # on the target")
        lines.append("ss -ltn 'sport = :25'   # is anything listening?")
        if any(p.startswith("greeting") for p in problems):
            lines.append("journalctl -u postfix --since today   # why it turns clients away")
    return "\n".join(lines)


def _mail_findings(fleet: _Fleet) -> list[Finding]:
    grouped: dict[str, list[tuple[_Pair, str]]] = {}
    for p in fleet.pairs.values():
        problem = _mail_problem(p)
        if problem:
            grouped.setdefault(p.target, []).append((p, problem))
    findings = []
    for target, seen in sorted(grouped.items()):
        problems = sorted({problem for _, problem in seen})
        sources = ", ".join(p.source for p, _ in seen)
        evidence = [_pair_line(p) for p, _ in seen]
        if fleet.reach.get(target, {}).get(25) is not None:
            evidence.append(_reach_line(fleet, target))
        findings.append(
            Finding(
                cause=MAIL_SERVICE,
                title=f"{target}: {' / '.join(problems)} (seen from {sources})",
                hosts=(target,),
                evidence=tuple(evidence),
                fix=_mail_fix(fleet, target, seen[0][0].source, set(problems)),
                severity=Status.FAIL,
                key=f"{MAIL_SERVICE}:{target}",
            )
        )
    return findings


# --------------------------------------------------------------------------- fleet-wide


def _one_sided_findings(fleet: _Fleet, explained: set[str]) -> list[Finding]:
    findings = []
    for (a, b), forward in sorted(fleet.pairs.items()):
        back = fleet.pairs.get((b, a))
        if back is None or forward.ping is not True or back.ping is not False:
            continue
        if b in explained or a in explained:
            continue
        addr_a = fleet.hosts[a].address if a in fleet.hosts else a
        if fleet.platform(b) == "windows":
            fix = f"Find-NetRoute -RemoteIPAddress {addr_a}   # on {b}: the route back"
        else:
            fix = f"ip route get {addr_a}   # on {b}: the route back"
        fix += f"\n# on {a}: a firewall rule dropping {b}? (nft list ruleset / Get-NetFirewallRule)"
        findings.append(
            Finding(
                cause=ONE_SIDED,
                title=f"{a} reaches {b}, but {b} does not reach {a}",
                hosts=(b, a),
                evidence=(_pair_line(forward), _pair_line(back)),
                fix=fix,
                severity=Status.FAIL,
                key=f"{ONE_SIDED}:{b}->{a}",
            )
        )
    return findings


def _host_addresses(host: HostResult) -> set[str]:
    found = set()
    for iface in _netconfig(host).get("interfaces") or ():
        if iface.get("loopback"):
            continue
        for a in iface.get("ipv4") or ():
            address = str(a.get("address", ""))
            if address and not address.startswith(("127.", "169.254.", "0.")):
                found.add(address)
    return found


def _duplicate_findings(fleet: _Fleet) -> list[Finding]:
    owners: dict[str, list[str]] = {}
    for name in sorted(fleet.audited):
        for address in _host_addresses(fleet.hosts[name]):
            owners.setdefault(address, []).append(name)
    findings = []
    for address, hosts in sorted(owners.items()):
        if len(hosts) < 2:
            continue
        fix = "\n".join(
            [
                f"ip neigh show {address}   # Linux: which MAC answers for it?",
                f"arping -D -c 2 {address}   # Linux: more than one reply = duplicate",
                f"Get-NetIPAddress -IPAddress {address}   # Windows: AddressState Duplicate?",
                "# then change the static address, or the DHCP reservation, of one of them",
            ]
        )
        findings.append(
            Finding(
                cause=DUPLICATE_ADDRESS,
                title=f"{address} is configured on {len(hosts)} hosts: {', '.join(hosts)}",
                hosts=tuple(hosts),
                evidence=tuple(f"{h} has {address}" for h in hosts),
                fix=fix,
                severity=Status.FAIL,
                key=f"{DUPLICATE_ADDRESS}:{address}",
            )
        )
    return findings


# --------------------------------------------------------------------------- not audited


def login_problem(summary: str) -> str:
    """Why the runner could not log in, as one word: auth, host-key, refused, timeout, other."""
    text = summary.lower()
    rules = (
        ("host-key", ("host key", "certificate", "known_hosts", "fingerprint")),
        ("auth", ("auth", "password", "credential", "permission denied", "401", "login")),
        ("refused", ("refused",)),
        ("timeout", ("timed out", "timeout", "no route", "unreachable")),
    )
    for word, needles in rules:
        if any(n in text for n in needles):
            return word
    return "other"


_LOGIN_FIX: dict[tuple[str, str], tuple[str, ...]] = {
    ("auth", "unix"): (
        "ssh -o BatchMode=yes {address} true   # as ansible_user, with the inventory's key",
        "# check ansible_user and the key or password in the vault",
        "journalctl -u ssh --since today   # on the host: why it refused",
    ),
    ("auth", "windows"): (
        "Test-WSMan {address} -Authentication Negotiate -Credential (Get-Credential)",
        "# check ansible_user/ansible_password in the vault; is the account locked?",
    ),
    ("host-key", "unix"): (
        "ssh-keyscan {address} | ssh-keygen -lf -   # the key the host shows now",
        "ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub   # on the host's console",
        "# if they match, add the key to known_hosts; if not, find out why it changed",
    ),
    ("host-key", "windows"): (
        "winrm enumerate winrm/config/listener   # on the host: which certificate?",
        "# trust its CA on the runner (ansible_winrm_ca_trust_path)",
    ),
    ("refused", "unix"): ("systemctl status ssh   # on the host's console: is sshd running?",),
    ("refused", "windows"): (
        "Get-Service WinRM   # on the host: running?",
        "Enable-PSRemoting   # or winrm quickconfig; then Test-WSMan {address}",
    ),
    ("timeout", "unix"): (
        "ping -c 3 {address}   # from the runner",
        "nc -vz {address} 22   # a firewall between the runner and the host?",
    ),
    ("timeout", "windows"): (
        "Test-NetConnection {address} -Port 5985   # from a Windows machine",
        "# Windows Firewall must allow WinRM (Enable-PSRemoting adds the rule)",
    ),
}


def _not_audited_findings(fleet: _Fleet, explained: set[str]) -> list[Finding]:
    findings = []
    for name, host in fleet.hosts.items():
        if name in fleet.audited or name in explained:
            continue
        unreachable = [r for r in host.results if r.status is Status.UNREACHABLE]
        summary = unreachable[0].summary if unreachable else "could not log in"
        problem = login_problem(summary)
        platform = "windows" if host.platform == "windows" else "unix"
        steps = _LOGIN_FIX.get((problem, platform), ("# log in by hand as the runner would",))
        fix = "\n".join(steps).format(address=host.address or name)
        findings.append(
            Finding(
                cause=NOT_AUDITED,
                title=f"{name} was not audited: {summary}",
                hosts=(name,),
                evidence=(f"{name} ({host.connection}): {summary}", _reach_line(fleet, name)),
                fix=fix,
                severity=Status.UNREACHABLE,
                key=f"{NOT_AUDITED}:{name}",
            )
        )
    return findings


def _check_error_fix(errors: Sequence[CheckResult]) -> str:
    """The step that fits why the checks could not run: out of time, or unreadable output."""
    text = " ".join(r.summary for r in errors).lower()
    if "deadline" in text or "abandoned" in text or "did not finish" in text:
        return (
            "# the audit ran out of time on this host: look for a stuck probe or an\n"
            "# overloaded host, then raise --command-timeout / --deadline if it is just slow"
        )
    return (
        "# the host's output made no sense to fleet: see the raw evidence;\n"
        "# rerun the audit on this host, and report it if it happens again"
    )


def _check_error_findings(fleet: _Fleet) -> list[Finding]:
    findings = []
    for name, host in fleet.hosts.items():
        errors = [r for r in host.results if r.status is Status.ERROR]
        if not errors:
            continue
        checks = sorted({r.check for r in errors})
        findings.append(
            Finding(
                cause=CHECK_ERROR,
                title=f"{name}: {', '.join(checks)} could not run",
                hosts=(name,),
                evidence=tuple(
                    f"{r.check}{' -> ' + r.target if r.target else ''}: {r.summary}" for r in errors
                ),
                fix=_check_error_fix(errors),
                severity=Status.ERROR,
                key=f"{CHECK_ERROR}:{name}",
            )
        )
    return findings


# --------------------------------------------------------------------------- verdicts


def _pair_cause(p: _Pair, explained: Mapping[str, str], one_sided: set[tuple[str, str]]) -> str:
    if p.smtp in (SMTP_OK, None) and p.ping in (True, None):
        return PAIR_OK if (p.smtp, p.ping) != (None, None) else PAIR_UNEXPLAINED
    if _mail_problem(p):
        return MAIL_SERVICE
    if p.source in explained and explained[p.source] == LOCAL_STACK:
        return LOCAL_STACK
    if p.target in explained:
        return explained[p.target]
    if (p.source, p.target) in one_sided:
        return ONE_SIDED
    if p.smtp == SMTP_OK and p.ping is False:
        return PAIR_PING_BLOCKED
    return PAIR_UNEXPLAINED


def _verdicts(
    fleet: _Fleet, explained: Mapping[str, str], one_sided: set[tuple[str, str]]
) -> tuple[PairVerdict, ...]:
    rank = {name: i for i, name in enumerate(fleet.hosts)}
    ordered = sorted(
        fleet.pairs.values(),
        key=lambda p: (rank.get(p.source, len(rank)), rank.get(p.target, len(rank)), p.target),
    )
    verdicts = []
    for p in ordered:
        ping = "" if p.ping is None else ("ok" if p.ping else "no reply")
        verdicts.append(
            PairVerdict(
                source=p.source,
                target=p.target,
                ping=ping,
                ping_detail=p.ping_detail,
                port25=p.smtp or "",
                greeting=p.greeting,
                cause=_pair_cause(p, explained, one_sided),
                status=p.status,
            )
        )
    return tuple(verdicts)


def diagnose(run: RunResult) -> Diagnosis:
    """Every finding the run supports, in report order, and a verdict per (source, target)."""
    fleet = _fleet(run)
    stack = _local_stack_findings(fleet)
    broken_sources = {f.hosts[0] for f in stack}
    silent = _silent_target_findings(fleet, broken_sources)
    explained: dict[str, str] = {f.hosts[0]: f.cause for f in silent + stack}
    one_sided = _one_sided_findings(fleet, set(explained))
    findings = (
        silent
        + stack
        + _duplicate_findings(fleet)
        + one_sided
        + _mail_findings(fleet)
        + _not_audited_findings(fleet, {f.hosts[0] for f in silent if f.cause == HOST_DOWN})
        + _check_error_findings(fleet)
    )
    order = list(CAUSES)
    findings.sort(key=lambda f: (order.index(f.cause), f.key))
    one_sided_pairs = {(f.hosts[0], f.hosts[1]) for f in one_sided}
    return Diagnosis(findings=tuple(findings), pairs=_verdicts(fleet, explained, one_sided_pairs))
