"""What the run observed, gathered once: every (source, target) pair, the runner's reach, logins.

Read from results' statuses, causes and typed facts only; a summary is shown
in evidence, never read.  Facts that do not decode into their type (an older
or foreign report) count as "not observed" rather than as a guess.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from fleet import causes
from fleet.checks.facts import (
    NetConfig,
    SmtpOutcome,
    net_config_from,
    ping_result_from,
    smtp_probe_from,
)
from fleet.model import CheckResult, HostResult, RunResult, Status

NOT_AUDITED = causes.NOT_AUDITED
# Causes that mean the runner could not log in (the rest of NOT_AUDITED: the run stopped).
LOGIN_CAUSES = NOT_AUDITED - {causes.DEADLINE, causes.INTERRUPTED}

# The SMTP outcome a probe's cause stands for, when its facts are not a probe.
_OUTCOME_OF_CAUSE = {
    causes.REFUSED: SmtpOutcome.REFUSED,
    causes.TIMEOUT: SmtpOutcome.TIMEOUT,
    causes.GREETING_TIMEOUT: SmtpOutcome.TIMEOUT,
    causes.UNREACHABLE: SmtpOutcome.UNREACHABLE,
    causes.NAME_UNRESOLVED: SmtpOutcome.UNRESOLVED,
    causes.BAD_GREETING: SmtpOutcome.BAD_GREETING,
}

_NOT_RUN = (Status.ERROR, Status.SKIPPED, Status.UNREACHABLE)

# What the runner's reach probe saw of a port, in the words evidence uses.
REACH_OPEN, REACH_REFUSED, REACH_SILENT = "open", "refused", "no answer"
_REACH_OF_CAUSE = {
    causes.REFUSED: REACH_REFUSED,
    causes.TIMEOUT: REACH_SILENT,
    causes.UNREACHABLE: "unreachable",
    causes.NAME_UNRESOLVED: "name not resolved",
}
_ANSWERED = (REACH_OPEN, REACH_REFUSED)
# A port not probed because the host sits behind a jump host: says neither up nor down.
REACH_BEHIND = "behind bastion"
# An SMTP probe that got a TCP connection, whatever its outcome.
_CONNECTED_CAUSES = (causes.GREETING_TIMEOUT, causes.SLOW_GREETING)


@dataclass(frozen=True)
class Pair:
    """Everything one source observed of one target (ping and SMTP merged)."""

    source: str
    target: str  # canonical: inventory name if the target is an inventory host
    label: str  # the target as the playbook wrote it
    ping: bool | None  # None: not run, or the check could not run
    ping_detail: str
    smtp: str | None  # SmtpProbe outcome; None: not probed
    smtp_detail: str
    greeting: str
    greeting_code: int | None
    address: str  # what the target resolved to on the source
    unresolved: bool  # the target's name does not resolve on the source
    status: Status
    connected: bool = False  # port 25 took the connection (whatever came after)

    @property
    def answered(self) -> bool:
        """The target showed it is alive: an echo reply, a TCP answer (even RST), a
        connection that then waited for its greeting."""
        return (
            self.ping is True
            or self.connected
            or self.smtp in (SmtpOutcome.OK, SmtpOutcome.REFUSED, SmtpOutcome.BAD_GREETING)
        )

    @property
    def silent(self) -> bool:
        """Something was tried and nothing at all came back."""
        tried = self.ping is False or self.smtp in (SmtpOutcome.TIMEOUT, SmtpOutcome.UNREACHABLE)
        return tried and not self.answered


@dataclass(frozen=True)
class Fleet:
    """The run's observations, indexed for the finders."""

    hosts: dict[str, HostResult]
    audited: frozenset[str]  # hosts the runner logged into and audited
    logins: dict[str, CheckResult]  # host -> the result that says why it was not audited
    pairs: dict[tuple[str, str], Pair]
    reach: dict[str, dict[int, str]]  # host -> runner-side port -> one of REACH_SEEN
    _by_source: dict[str, list[Pair]] = field(init=False, repr=False, compare=False)
    _by_target: dict[str, list[Pair]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Indexes, so the diagnosis stays linear in the fleet's size.
        by_source: dict[str, list[Pair]] = {}
        by_target: dict[str, list[Pair]] = {}
        for pair in self.pairs.values():
            by_source.setdefault(pair.source, []).append(pair)
            by_target.setdefault(pair.target, []).append(pair)
        object.__setattr__(self, "_by_source", by_source)
        object.__setattr__(self, "_by_target", by_target)

    def pairs_from(self, source: str) -> list[Pair]:
        return list(self._by_source.get(source, ()))

    def pairs_to(self, target: str) -> list[Pair]:
        return list(self._by_target.get(target, ()))

    def platform(self, host: str) -> str:
        h = self.hosts.get(host)
        return h.platform if h else "unix"

    def runner_reaches(self, host: str) -> bool | None:
        """Can the runner reach ``host``?  None when nothing says either way."""
        ports = {p: seen for p, seen in self.reach.get(host, {}).items() if not _behind(seen)}
        if host in self.audited or any(seen in _ANSWERED for seen in ports.values()):
            return True  # logging in proves the path, and so does an answer (even RST)
        if ports:
            return False
        return None


def observe(run: RunResult) -> Fleet:
    """The run's observations."""
    hosts = {h.host: h for h in run.hosts}
    audited = frozenset(h.host for h in run.hosts if _audited(h))
    logins = {
        h.host: found
        for h in run.hosts
        if h.host not in audited and (found := _login_failure(h)) is not None
    }
    return Fleet(
        hosts=hosts,
        audited=audited,
        logins=logins,
        pairs=_collect_pairs(hosts),
        reach=_collect_reach(run.hosts),
    )


def _audited(host: HostResult) -> bool:
    """The runner logged in: a result from the host (not the runner's reach) that is not a
    failed login or a stopped run.  A result without a cause (an older report) counts by status."""
    return any(
        r.check != "reach" and r.status is not Status.UNREACHABLE and r.cause not in NOT_AUDITED
        for r in host.results
    )


def _login_failure(host: HostResult) -> CheckResult | None:
    return next(
        (r for r in host.results if r.status is Status.UNREACHABLE or r.cause in LOGIN_CAUSES),
        None,
    )


def results(host: HostResult, check: str) -> list[CheckResult]:
    return [r for r in host.results if r.check == check]


def netconfig(host: HostResult) -> NetConfig | None:
    """The richest network configuration the host reported (ipconfig first, then binding)."""
    for check in ("ipconfig", "binding"):
        for r in results(host, check):
            try:
                config = net_config_from(r.facts)
            except ValueError:
                continue
            if config.interfaces:
                return config
    return None


def host_ip(fleet: Fleet, name: str) -> str:
    """``name``'s IP address: its inventory address when that is one, else the first
    address it reported (not loopback, not APIPA); "" when neither is known."""
    host = fleet.hosts.get(name)
    if host is None:
        return ""
    try:
        return str(ipaddress.ip_address(host.address))
    except ValueError:
        pass
    config = netconfig(host)
    for iface in config.interfaces if config else ():
        for a in iface.ipv4 if not iface.loopback else ():
            if not a.address.startswith(("127.", "169.254.", "0.")):
                return a.address
    return ""


def _observed(r: CheckResult) -> bool:
    return r.status not in _NOT_RUN and r.cause not in NOT_AUDITED


@dataclass(frozen=True)
class _Ping:
    replied: bool | None
    detail: str
    address: str = ""


@dataclass(frozen=True)
class _Smtp:
    outcome: str | None
    detail: str
    greeting: str = ""
    greeting_code: int | None = None
    address: str = ""
    connected: bool = False


def _ping_seen(r: CheckResult) -> _Ping:
    if not _observed(r):
        return _Ping(None, r.summary)
    try:
        ping = ping_result_from(r.facts)
    except ValueError:
        return _Ping(r.status is Status.OK, r.summary)
    detail = f"{ping.received}/{ping.transmitted} received"
    if ping.rtt_avg_ms is not None:
        detail += f", avg {ping.rtt_avg_ms} ms"
    if ping.error:
        detail += f" ({ping.error})"
    return _Ping(ping.received > 0, detail, ping.address)


def _smtp_seen(r: CheckResult) -> _Smtp:
    if not _observed(r):
        return _Smtp(None, r.summary)
    slow = r.cause == causes.SLOW_GREETING  # a greeting that came late came: never "down"
    ok = r.status is Status.OK or slow
    by_status = SmtpOutcome.OK if ok else _OUTCOME_OF_CAUSE.get(r.cause, SmtpOutcome.ERROR)
    connected = r.cause in _CONNECTED_CAUSES
    try:
        probe = smtp_probe_from(r.facts)
    except ValueError:
        return _Smtp(by_status, r.summary, connected=connected)
    greeting = probe.greeting[0] if probe.greeting else ""
    if not greeting and probe.greeting_code:
        greeting = str(probe.greeting_code)
    outcome = probe.outcome or by_status
    if slow and outcome != SmtpOutcome.BAD_GREETING:
        outcome = SmtpOutcome.OK
    return _Smtp(
        outcome,
        probe.error or r.summary,
        greeting,
        probe.greeting_code,
        probe.address,
        connected or probe.connect_ms is not None or probe.greeting_code is not None,
    )


def _canonical(target: str, hosts: Mapping[str, HostResult], by_address: Mapping[str, str]) -> str:
    """The inventory name of a target given by name or by address."""
    if target in hosts:
        return target
    return by_address.get(target, target)


def _collect_pairs(hosts: Mapping[str, HostResult]) -> dict[tuple[str, str], Pair]:
    pairs: dict[tuple[str, str], Pair] = {}
    by_address: dict[str, str] = {}
    for h in hosts.values():
        by_address.setdefault(h.address, h.host)
    for host in hosts.values():
        by_target: dict[str, dict[str, CheckResult]] = {}
        for r in host.results:
            if r.check in ("ping", "smtp") and r.target:
                by_target.setdefault(r.target, {})[r.check] = r
        for label, found in by_target.items():
            pair = _make_pair(host.host, label, found, hosts, by_address)
            pairs[(pair.source, pair.target)] = pair
    return pairs


def _make_pair(
    source: str,
    label: str,
    found: Mapping[str, CheckResult],
    hosts: Mapping[str, HostResult],
    by_address: Mapping[str, str],
) -> Pair:
    ping = _ping_seen(found["ping"]) if "ping" in found else _Ping(None, "")
    smtp = _smtp_seen(found["smtp"]) if "smtp" in found else _Smtp(None, "")
    address = ping.address or smtp.address
    if label == "gateway":  # each host's own gateway, not one shared "gateway" host
        label = f"gateway {address}" if address else f"gateway of {source}"
    unresolved = smtp.outcome == SmtpOutcome.UNRESOLVED or (
        "ping" in found and found["ping"].cause == causes.NAME_UNRESOLVED
    )
    return Pair(
        source=source,
        target=_canonical(label, hosts, by_address),
        label=label,
        ping=ping.replied,
        ping_detail=ping.detail,
        smtp=smtp.outcome,
        smtp_detail=smtp.detail,
        greeting=smtp.greeting,
        greeting_code=smtp.greeting_code,
        address=address,
        unresolved=unresolved,
        status=max((r.status for r in found.values()), key=lambda s: s.severity),
        connected=smtp.connected,
    )


def _reach_port(r: CheckResult) -> int | None:
    """The port a reach result is about: its target ("25") or ``facts["port"]``."""
    for candidate in (r.target, r.facts.get("port")):
        try:
            return int(str(candidate))
        except (TypeError, ValueError):
            continue
    return None


def _reach_seen(r: CheckResult) -> str:
    """What the runner saw of a port: by the probe's outcome, its cause, else its status."""
    outcome = r.facts.get("outcome")
    if outcome == "open" or r.facts.get("open") is True or r.status is Status.OK:
        return REACH_OPEN
    if outcome == "refused":
        return REACH_REFUSED
    return _REACH_OF_CAUSE.get(r.cause, REACH_SILENT)


def _behind(seen: str) -> bool:
    return seen.startswith(REACH_BEHIND)


def _collect_reach(hosts: Iterable[HostResult]) -> dict[str, dict[int, str]]:
    reach: dict[str, dict[int, str]] = {}
    for host in hosts:
        for r in results(host, "reach"):
            port = _reach_port(r)
            if port is not None and r.cause == causes.BEHIND_BASTION:
                bastion = r.facts.get("bastion") or "?"
                reach.setdefault(host.host, {})[port] = f"{REACH_BEHIND} {bastion}"
                continue
            if port is None or r.status in (Status.ERROR, Status.SKIPPED):
                continue
            reach.setdefault(host.host, {})[port] = _reach_seen(r)
    return reach


def pair_line(p: Pair) -> str:
    """One pair as a line of evidence."""
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


def reach_line(fleet: Fleet, host: str) -> str:
    """What the runner's reach probe saw of ``host``, as a line of evidence."""
    ports = fleet.reach.get(host)
    if not ports:
        if host not in fleet.hosts:
            return f"runner -> {host}: not probed (not in the inventory)"
        return f"runner -> {host}: no reach check"
    shown = ", ".join(f"port {p} {seen}" for p, seen in sorted(ports.items()))
    return f"runner -> {host}: {shown}"
