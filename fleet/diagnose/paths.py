"""Targets nobody reaches (down, or cut off), one-way reachability, and mail services that fail.

The KB's second cause seen from the fleet: when every healthy source fails to
reach a target, the target (or the path to it) is at fault, and the runner's
own reach probe tells "down" from "cut off from its peers".
"""

from __future__ import annotations

from fleet.checks.facts import SMTP_BAD_GREETING, SMTP_ERROR, SMTP_REFUSED, SMTP_TIMEOUT
from fleet.diagnose.model import HOST_DOWN, MAIL_SERVICE, NETWORK_PATH, ONE_SIDED, Finding
from fleet.diagnose.observe import Fleet, Pair, pair_line, reach_line
from fleet.model import Status


def silent_target_findings(fleet: Fleet, broken_sources: set[str]) -> list[Finding]:
    """Targets that no healthy source reaches: down, or cut off from its peers."""
    findings = []
    targets = sorted({p.target for p in fleet.pairs.values()})
    for target in targets:
        if target in broken_sources:
            continue  # its own stack explains why nobody reaches it
        tried = [p for p in fleet.pairs_to(target) if p.source not in broken_sources]
        if not tried or not all(p.silent for p in tried):
            continue
        evidence = tuple([pair_line(p) for p in tried] + [reach_line(fleet, target)])
        if target.startswith("gateway of "):
            continue  # no gateway at all: the host's ipconfig result says so
        if target.startswith("gateway "):
            findings.append(_gateway_finding(target, tried, evidence))
        elif fleet.runner_reaches(target):
            findings.append(_path_finding(fleet, target, tried, evidence))
        else:
            findings.append(_down_finding(fleet, target, evidence))
    return findings


def _gateway_finding(target: str, tried: list[Pair], evidence: tuple[str, ...]) -> Finding:
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


def _down_finding(fleet: Fleet, target: str, evidence: tuple[str, ...]) -> Finding:
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
    fleet: Fleet, target: str, tried: list[Pair], evidence: tuple[str, ...]
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


def mail_problem(p: Pair) -> str:
    """Which way port 25 fails on a live target, '' when it does not."""
    if p.smtp == SMTP_REFUSED:
        return "port 25 refused"
    if p.smtp == SMTP_TIMEOUT and p.ping is True:
        return "port 25 silent"
    if p.smtp == SMTP_BAD_GREETING:
        return f"greeting {p.greeting_code or '?'} instead of 220"
    if p.smtp == SMTP_ERROR and p.ping is not False:
        return "SMTP conversation failed"
    return ""


def _mail_fix(fleet: Fleet, target: str, source: str, bad_greeting: bool) -> str:
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
        if bad_greeting:
            lines.append("journalctl -u postfix --since today   # why it turns clients away")
    return "\n".join(lines)


def mail_findings(fleet: Fleet) -> list[Finding]:
    grouped: dict[str, list[tuple[Pair, str]]] = {}
    for p in fleet.pairs.values():
        problem = mail_problem(p)
        if problem:
            grouped.setdefault(p.target, []).append((p, problem))
    findings = []
    for target, seen in sorted(grouped.items()):
        problems = sorted({problem for _, problem in seen})
        bad_greeting = any(p.smtp == SMTP_BAD_GREETING for p, _ in seen)
        sources = ", ".join(p.source for p, _ in seen)
        evidence = [pair_line(p) for p, _ in seen]
        if fleet.reach.get(target, {}).get(25) is not None:
            evidence.append(reach_line(fleet, target))
        findings.append(
            Finding(
                cause=MAIL_SERVICE,
                title=f"{target}: {' / '.join(problems)} (seen from {sources})",
                hosts=(target,),
                evidence=tuple(evidence),
                fix=_mail_fix(fleet, target, seen[0][0].source, bad_greeting),
                severity=Status.FAIL,
                key=f"{MAIL_SERVICE}:{target}",
            )
        )
    return findings


def one_sided_findings(fleet: Fleet, explained: set[str]) -> list[Finding]:
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
                evidence=(pair_line(forward), pair_line(back)),
                fix=fix,
                severity=Status.FAIL,
                key=f"{ONE_SIDED}:{b}->{a}",
            )
        )
    return findings
