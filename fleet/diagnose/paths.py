"""Targets nobody reaches (down, or cut off), one-way reachability, and mail services that fail.

The KB's second cause seen from the fleet: when every healthy source fails to
reach a target, the target (or the path to it) is at fault, and the runner's
own reach probe tells "down" from "cut off from its peers".
"""

from __future__ import annotations

from fleet.checks.facts import SmtpOutcome
from fleet.diagnose.commands import Address, Fix, Note, Target
from fleet.diagnose.model import HOST_DOWN, MAIL_SERVICE, NETWORK_PATH, ONE_SIDED, Finding, finding
from fleet.diagnose.observe import Fleet, Pair, host_ip, pair_line, reach_line
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
            findings.append(_gateway_finding(fleet, target, tried, evidence))
        elif fleet.runner_reaches(target):
            findings.append(_path_finding(fleet, target, tried, evidence))
        else:
            findings.append(_down_finding(fleet, target, evidence))
    return findings


def _gateway_finding(
    fleet: Fleet, target: str, tried: list[Pair], evidence: tuple[str, ...]
) -> Finding:
    """A default gateway that answers no ping: down, or (often) filtering ICMP."""
    gateway = Address(tried[0].address or target.removeprefix("gateway "))
    source = Note(tried[0].source)
    sources = ", ".join(sorted({p.source for p in tried}))
    fix = Fix()
    if fleet.platform(tried[0].source) == "windows":
        fix.ps("Get-NetNeighbor -IPAddress {gw}   # on {src}: does the gateway answer ARP?",
               gw=gateway, src=source)  # fmt: skip
        fix.ps("Test-NetConnection {gw} -TraceRoute   # many routers and clouds filter ICMP",
               gw=gateway)  # fmt: skip
    else:
        fix.sh("ip neigh show {gw}   # on {src}: does the gateway answer ARP?",
               gw=gateway, src=source)  # fmt: skip
        fix.sh("ping -c 3 {gw}   # many routers and clouds filter ICMP", gw=gateway)
    fix.note("if the peers and the mail relay are reachable, this is a filter, not an outage")
    title = f"{target} does not answer ping from {sources} (down, or ICMP filtered)"
    hosts = sorted({p.source for p in tried})
    return finding(NETWORK_PATH, target, title, hosts, evidence, fix, Status.WARN)


def _down_finding(fleet: Fleet, target: str, evidence: tuple[str, ...]) -> Finding:
    fix = Fix()
    where = fleet.hosts[target].address if target in fleet.hosts else target
    fix.sh("ping -c 3 {t}   # from the runner: no answer means down or cut off", t=Target(where))
    fix.note("power and network link: the hypervisor or the server's console")
    if fleet.platform(target) == "windows":
        fix.ps("Get-NetAdapter   # on {t}'s console: is the adapter up?", t=Note(target))
    else:
        fix.sh("ip -br link   # on {t}'s console: is the adapter up?", t=Note(target))
    title = f"{target} answers nobody: down or disconnected"
    return finding(HOST_DOWN, target, title, [target], evidence, fix)


def _path_finding(
    fleet: Fleet, target: str, tried: list[Pair], evidence: tuple[str, ...]
) -> Finding:
    source = tried[0].source
    peer = Address(host_ip(fleet, source)), Note(source)
    fix = Fix()
    if fleet.platform(target) == "windows":
        fix.ps(
            "Get-NetFirewallProfile   # on the target: which profile is active, inbound default?"
        )
        fix.ps("Get-NetFirewallRule -Enabled True -Direction Inbound | Select DisplayName, Action")
        back = fix.ps("Find-NetRoute -RemoteIPAddress {ip}   # a route back to {peer}?",
                      ip=peer[0], peer=peer[1])  # fmt: skip
    else:
        fix.sh("nft list ruleset   # on the target: a rule dropping the peers?")
        back = fix.sh("ip route get {ip}   # on the target: a route back to {peer}?",
                      ip=peer[0], peer=peer[1])  # fmt: skip
    if not back:
        fix.note("on the target: is there a route back to {peer}?", peer=peer[1])
    fix.sh("tracepath {t}   # from {src}: where does the path stop?",
           t=Target(tried[0].label), src=peer[1])  # fmt: skip
    title = f"{target} is up (the runner reaches it) but its peers cannot reach it"
    return finding(NETWORK_PATH, target, title, [target], evidence, fix)


def mail_problem(p: Pair) -> str:
    """Which way port 25 fails on a live target, '' when it does not."""
    if p.smtp == SmtpOutcome.REFUSED:
        return "port 25 refused"
    if p.smtp == SmtpOutcome.TIMEOUT and p.connected:
        return "no greeting on port 25"
    if p.smtp == SmtpOutcome.TIMEOUT and p.ping is True:
        return "port 25 silent"
    if p.smtp == SmtpOutcome.BAD_GREETING:
        return f"greeting {p.greeting_code or '?'} instead of 220"
    if p.smtp == SmtpOutcome.ERROR and p.ping is not False:
        return "SMTP conversation failed"
    return ""


def _mail_fix(fleet: Fleet, target: str, seen: Pair, bad_greeting: bool) -> Fix:
    """From the source, the target as the source named it; then on the target."""
    fix = Fix()
    t, source = Target(seen.label), Note(seen.source)
    if fleet.platform(seen.source) == "windows":
        fix.ps("Test-NetConnection {t} -Port 25   # from {src}", t=t, src=source)
    else:
        fix.sh("nc -vz {t} 25   # from {src}", t=t, src=source)
        fix.sh("swaks --server {t} --quit-after EHLO   # the whole greeting", t=t)
    if fleet.platform(target) == "windows":
        fix.ps("Get-Service MSExchangeFrontEndTransport, SMTPSVC   # on the target")
        fix.ps("Get-NetTCPConnection -LocalPort 25 -State Listen")
    else:
        fix.sh("systemctl status postfix   # on the target")
        fix.sh("ss -ltn 'sport = :25'   # is anything listening?")
        if bad_greeting:
            fix.sh("journalctl -u postfix --since today   # why it turns clients away")
    return fix


def mail_findings(fleet: Fleet) -> list[Finding]:
    grouped: dict[str, list[tuple[Pair, str]]] = {}
    for p in fleet.pairs.values():
        problem = mail_problem(p)
        if problem:
            grouped.setdefault(p.target, []).append((p, problem))
    findings = []
    for target, seen in sorted(grouped.items()):
        problems = sorted({problem for _, problem in seen})
        bad_greeting = any(p.smtp == SmtpOutcome.BAD_GREETING for p, _ in seen)
        sources = ", ".join(p.source for p, _ in seen)
        evidence = [pair_line(p) for p, _ in seen]
        if fleet.reach.get(target, {}).get(25) is not None:
            evidence.append(reach_line(fleet, target))
        fix = _mail_fix(fleet, target, seen[0][0], bad_greeting)
        title = f"{target}: {' / '.join(problems)} (seen from {sources})"
        findings.append(finding(MAIL_SERVICE, target, title, [target], evidence, fix))
    return findings


def one_sided_findings(fleet: Fleet, explained: set[str]) -> list[Finding]:
    findings = []
    for (a, b), forward in sorted(fleet.pairs.items()):
        back = fleet.pairs.get((b, a))
        if back is None or forward.ping is not True or back.ping is not False:
            continue
        if b in explained or a in explained:
            continue
        fix = Fix()
        ip, on_b = Address(host_ip(fleet, a) or back.address), Note(b)
        if fleet.platform(b) == "windows":
            fix.ps("Find-NetRoute -RemoteIPAddress {ip}   # on {b}: the route back", ip=ip, b=on_b)
        else:
            fix.sh("ip route get {ip}   # on {b}: the route back", ip=ip, b=on_b)
        fix.note("on {a}: a firewall rule dropping {b}? (nft list ruleset / Get-NetFirewallRule)",
                 a=Note(a), b=on_b)  # fmt: skip
        title = f"{a} reaches {b}, but {b} does not reach {a}"
        evidence = (pair_line(forward), pair_line(back))
        findings.append(finding(ONE_SIDED, f"{b}->{a}", title, (b, a), evidence, fix))
    return findings
