"""The judges: pure functions from normalised facts to the verdict an operator reads.

One judge serves both platforms: the Unix and Windows parsers return the same
facts (``fleet.checks.facts``).  This module also holds the rules shared by
the check classes about what a usable step output and a valid target are,
so every check says "could not run" and "not a valid host name" the same way.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

from fleet.checks.base import Platform, Step, StepOutput
from fleet.checks.facts import (
    SMTP_BAD_GREETING,
    SMTP_OK,
    SMTP_REFUSED,
    SMTP_TIMEOUT,
    SMTP_UNREACHABLE,
    SMTP_UNRESOLVED,
    Interface,
    NetConfig,
    PingResult,
    SmtpProbe,
    as_facts,
)
from fleet.errors import ParseError
from fleet.model import CheckResult, Status

T = TypeVar("T")

EVIDENCE_LIMIT = 800  # characters of raw output kept as evidence

APIPA = ipaddress.IPv4Network("169.254.0.0/16")
LOOPBACK = ipaddress.IPv4Network("127.0.0.0/8")

# Windows components a mail server's adapter normally carries; anything else
# bound and enabled is what KB Q128961 means by "simplify the configuration".
USUAL_BINDINGS = frozenset(
    {
        "ms_tcpip",
        "ms_tcpip6",
        "ms_msclient",
        "ms_server",
        "ms_pacer",
        "ms_lltdio",
        "ms_rspndr",
        "ms_lldp",
        "ms_implat",
        "ms_ndiscap",
        "ms_netbt",
        "ms_wfplwf_lower",
        "ms_wfplwf_upper",
        "vms_pp",
    }
)

Finding = tuple[Status, str]


# ---------------------------------------------------------------- shared rules

_HOST_LABEL = re.compile(r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)")
_SCOPE_ID = re.compile(r"[A-Za-z0-9_.-]{1,32}")


def valid_target(name: object) -> bool:
    """True for a host name (RFC 1123 labels; "_" tolerated) or an IPv4/IPv6 address.

    Anything else (spaces, ";", a leading "-" that a command would take for an
    option) is refused before it gets near a command line.
    """
    if not isinstance(name, str) or not name or len(name) > 253:
        return False
    if "%" in name and not _SCOPE_ID.fullmatch(name.partition("%")[2]):
        return False  # an IPv6 zone may not smuggle spaces or CR/LF into a protocol line
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        pass
    labels = name[:-1].split(".") if name.endswith(".") else name.split(".")
    return all(_HOST_LABEL.fullmatch(label) for label in labels)


def probe_params(defaults: Mapping[str, Any], params: Mapping[str, Any]) -> dict[str, Any]:
    """The params a platform module sees: defaults filled in, valid targets only."""
    targets = [t for t in params.get("targets", ()) if valid_target(t)]
    return {**defaults, **params, "targets": targets}


def output_problem(output: StepOutput | None) -> str | None:
    """Why a step's output cannot be judged, or None when it can."""
    if output is None or output.exit_status is None:
        return "no output came back for this step (the batch was cut short)"
    if output.truncated:
        return f"output was truncated after {len(output.stdout)} bytes"
    return None


def excerpt(raw: bytes | str, limit: int = EVIDENCE_LIMIT) -> str:
    """A short piece of raw output for the report: its head and tail when long."""
    text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw
    text = text.strip()
    if len(text) <= limit:
        return text
    half = limit // 2
    return f"{text[:half]}\n[...]\n{text[-half:]}"


def error_result(
    host: str, check: str, reason: str, target: str | None = None, evidence: str = ""
) -> CheckResult:
    """The check could not run or its output made no sense."""
    label = f"{target}: " if target else ""
    return CheckResult(
        host=host,
        check=check,
        status=Status.ERROR,
        summary=f"{label}{reason}",
        target=target,
        evidence=evidence,
    )


# What a parser may raise on output it does not understand.  The Unix parsers
# raise ParseError only; the others are caught too so that a parser's blind
# spot becomes an ``error`` result instead of ending the host's audit.
PARSE_FAILURES = (ParseError, ValueError, KeyError, TypeError, IndexError, AttributeError)


def judged(
    host: str,
    check: str,
    steps: Sequence[Step],
    outputs: Mapping[str, StepOutput],
    parse: Callable[[], T],
    verdict: Callable[[T, str], CheckResult],
    target: str | None = None,
) -> CheckResult:
    """Parse the outputs of ``steps`` and judge them; never raises.

    A missing or truncated section, or output the parser refuses, becomes an
    ``error`` result carrying the reason and a piece of the raw output.
    ``verdict`` gets the facts and that piece (for evidence).
    """
    shown = excerpt(b"\n".join(outputs[s.key].stdout for s in steps if s.key in outputs))
    for step in steps:
        problem = output_problem(outputs.get(step.key))
        if problem:
            return error_result(host, check, problem, target, shown)
    try:
        facts = parse()
    except PARSE_FAILURES as exc:
        reason = str(exc) if isinstance(exc, ParseError) else f"unreadable output ({exc!r})"
        return error_result(host, check, reason, target, shown)
    return verdict(facts, shown)


def per_target(
    host: str,
    check: str,
    targets: Sequence[str],
    steps: Sequence[Step],
    outputs: Mapping[str, StepOutput],
    parse: Callable[[StepOutput, str], T],
    verdict: Callable[[T, str], CheckResult],
) -> list[CheckResult]:
    """One result per target in the operator's order; an invalid name is an ``error``.

    Targets the steps add on their own (ping's "gateway") come first.
    """
    results: dict[str, CheckResult] = {}
    for step in steps:
        target = step.target or step.key
        results[target] = judged(
            host,
            check,
            [step],
            outputs,
            lambda step=step, target=target: parse(outputs[step.key], target),  # type: ignore[misc]
            verdict,
            target,
        )
    extra = [t for t in results if t not in targets]
    return [results.get(t) or _unprobed(host, check, t) for t in [*extra, *targets]]


def _unprobed(host: str, check: str, target: str) -> CheckResult:
    if not valid_target(target):
        return invalid_target_result(host, check, target)
    return error_result(host, check, "no step was run for this target", target)


# ---------------------------------------------------------------- parameters


def known_params(check: str, params: Mapping[str, Any], defaults: Mapping[str, Any]) -> None:
    """``ValueError`` naming the first parameter ``check`` does not take."""
    for key in params:
        if key not in defaults:
            known = ", ".join(sorted(defaults)) or "none"
            raise ValueError(f"{check}: unknown parameter {key!r} (known: {known})")


def as_bool(check: str, key: str, value: object) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("yes", "true", "on", "1"):
        return True
    if text in ("no", "false", "off", "0"):
        return False
    raise ValueError(f"{check}: {key} must be true or false, not {value!r}")


def as_number(check: str, key: str, value: object, low: float, high: float) -> float:
    """``value`` as a number within [low, high]; ``ValueError`` with one clear line if not."""
    try:
        if isinstance(value, bool):
            raise TypeError
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"{check}: {key} must be a number, not {value!r}") from None
    if not low <= number <= high:
        raise ValueError(f"{check}: {key} must be between {low:g} and {high:g}, not {value!r}")
    return number


def as_int(check: str, key: str, value: object, low: int, high: int) -> int:
    number = as_number(check, key, value, low, high)
    if number != int(number):
        raise ValueError(f"{check}: {key} must be a whole number, not {value!r}")
    return int(number)


def as_targets(check: str, value: object) -> list[str]:
    """The target list, de-duplicated in order.  Invalid names are kept: they
    become ``error`` results naming the bad value, not a refused playbook."""
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)) or not all(isinstance(t, str) for t in items):
        raise ValueError(f"{check}: targets must be a list of host names, not {value!r}")
    return list(dict.fromkeys(t.strip() for t in items if t.strip()))


def invalid_target_result(host: str, check: str, target: str) -> CheckResult:
    return error_result(host, check, "not a valid host name or address", target)


def _verdict(findings: Sequence[Finding], ok_summary: str) -> tuple[Status, str]:
    """The worst findings' messages, or ``ok_summary`` when there are none."""
    if not findings:
        return Status.OK, ok_summary
    worst = max((s for s, _ in findings), key=lambda s: s.severity)
    return worst, "; ".join(m for s, m in findings if s is worst)


def _result(
    host: str,
    check: str,
    findings: Sequence[Finding],
    ok_summary: str,
    facts: Mapping[str, Any],
    evidence: str,
    target: str | None = None,
) -> CheckResult:
    status, summary = _verdict(findings, ok_summary)
    return CheckResult(
        host=host,
        check=check,
        status=status,
        summary=summary,
        target=target,
        facts={**facts, "findings": [{"status": s.value, "message": m} for s, m in findings]},
        evidence=evidence,
    )


def _v4(address: str) -> ipaddress.IPv4Address | None:
    try:
        return ipaddress.IPv4Address(address)
    except ValueError:
        return None


def _global_v4(interface: Interface) -> list[str]:
    """The interface's addresses a peer could reach it on (not loopback, APIPA or 0.0.0.0)."""
    out = []
    for a in interface.ipv4:
        ip = _v4(a.address)
        if ip is not None and not (ip in LOOPBACK or ip in APIPA or ip.is_unspecified):
            out.append(a.address)
    return out


def render_net(net: NetConfig) -> str:
    """A few lines an operator reads as evidence for binding/ipconfig (like ``ip -br addr``)."""
    lines = [f"source: {net.source}"] if net.source else []
    for i in net.interfaces:
        state = "up" if i.up else "down"
        addresses = " ".join(f"{a.address}/{a.prefix}" for a in i.ipv4) or "-"
        dhcp = {True: " dhcp", False: " static", None: ""}[i.dhcp]
        bound = [c for c, enabled in i.bindings if enabled]
        extra = f" bound: {','.join(bound)}" if i.bindings else ""
        lines.append(f"{i.name} {state} {addresses}{dhcp}{extra}")
    lines.append(f"default gateway: {', '.join(net.default_gateways) or '-'}")
    lines.append(f"dns: {', '.join(net.dns_servers) or '-'}")
    return excerpt("\n".join(lines))


# ---------------------------------------------------------------- binding


def _enabled(interface: Interface) -> set[str]:
    return {component for component, enabled in interface.bindings if enabled}


def _tcpip_bound(interface: Interface) -> bool:
    """TCP/IP is on: Windows says so in its bindings; Unix has a global IPv4 address."""
    if interface.bindings:
        return "ms_tcpip" in _enabled(interface)
    return bool(_global_v4(interface))


def _windows_binding_findings(adapters: Iterable[Interface]) -> list[Finding]:
    """Warnings for connected Windows adapters (when some adapter does carry TCP/IP)."""
    findings: list[Finding] = []
    for a in adapters:
        enabled = _enabled(a)
        if "ms_tcpip" not in enabled:
            findings.append((Status.WARN, f"TCP/IP not bound to {a.name}"))
            continue
        if "ms_msclient" not in enabled:
            findings.append((Status.WARN, f"Client for Microsoft Networks not bound to {a.name}"))
        others = sorted(enabled - USUAL_BINDINGS)
        if others:
            findings.append(
                (Status.WARN, f"other protocols bound to {a.name}: {', '.join(others)}")
            )
    return findings


def _loopback_findings(interfaces: Sequence[Interface]) -> list[Finding]:
    loops = [i for i in interfaces if i.loopback]
    if not loops:
        return [(Status.WARN, "no loopback interface")]
    if not any(i.up for i in loops):
        return [(Status.WARN, f"loopback {loops[0].name} is down")]
    if not any(a.address == "127.0.0.1" for i in loops for a in i.ipv4):
        return [(Status.WARN, f"loopback {loops[0].name} has no 127.0.0.1")]
    return []


def _no_tcpip_summary(connected: Sequence[Interface]) -> str:
    if not connected:
        return "no network interface is up"
    names = ", ".join(i.name for i in connected)
    if all(i.bindings for i in connected):
        return f"TCP/IP not bound to {names}"
    return f"no up interface has a global IPv4 address ({names})"


def judge_binding(host: str, net: NetConfig, platform: Platform, evidence: str = "") -> CheckResult:
    """Fail when no up adapter carries TCP/IP; warn on the KB's lesser binding problems."""
    connected = [i for i in net.interfaces if i.up and not i.loopback]
    bound = [i for i in connected if _tcpip_bound(i)]
    findings: list[Finding] = []
    if bound:
        findings += _windows_binding_findings(i for i in connected if i.bindings)
    else:
        findings.append((Status.FAIL, _no_tcpip_summary(connected)))
    if platform is Platform.UNIX:
        findings += _loopback_findings(net.interfaces)
    ok = "TCP/IP bound to " + ", ".join(i.name for i in bound)
    facts = {**as_facts(net), "bound": [i.name for i in bound]}
    return _result(host, "binding", findings, ok, facts, evidence or render_net(net))


# ---------------------------------------------------------------- ipconfig


def _address_findings(interfaces: Sequence[Interface]) -> list[Finding]:
    findings: list[Finding] = []
    for i in interfaces:
        usable = _global_v4(i)
        for a in i.ipv4:
            ip = _v4(a.address)
            if ip is None:
                findings.append((Status.FAIL, f"unreadable address {a.address!r} on {i.name}"))
            elif ip.is_unspecified:
                findings.append((Status.FAIL, f"address 0.0.0.0 on {i.name}"))
            elif ip in APIPA:
                # An APIPA address next to a real one is a leftover, not an outage.
                status = Status.WARN if usable else Status.FAIL
                findings.append((status, f"APIPA address {a.address} on {i.name}: DHCP failed"))
            elif a.prefix <= 0 or a.prefix > 32:
                findings.append((Status.FAIL, f"netmask /{a.prefix} on {i.name} ({a.address})"))
    return findings


def _networks(interfaces: Iterable[Interface]) -> list[ipaddress.IPv4Network]:
    out = []
    for i in interfaces:
        for a in i.ipv4:
            if _v4(a.address) is not None and 0 < a.prefix <= 32:
                out.append(ipaddress.IPv4Network(f"{a.address}/{a.prefix}", strict=False))
    return out


def _gateways(net: NetConfig) -> list[str]:
    found = list(net.default_gateways)
    found += [g for i in net.interfaces for g in i.gateways]
    usable = []
    for g in dict.fromkeys(found):
        ip = _v4(g)
        if ip is not None and not ip.is_unspecified:
            usable.append(g)
    return usable


def _gateway_findings(net: NetConfig, interfaces: Sequence[Interface]) -> list[Finding]:
    gateways = _gateways(net)
    if not gateways:
        return [(Status.FAIL, "no default gateway")]
    networks = _networks(interfaces)
    # A /32 address with an on-link gateway is normal in clouds (GCE, Hetzner):
    # the route to the gateway is set explicitly, so it is not a misconfiguration.
    host_routes = any(n.prefixlen == 32 for n in networks)
    return [
        (Status.FAIL, f"default gateway {g} is outside every interface's subnet")
        for g in gateways
        if not host_routes and not any(ipaddress.IPv4Address(g) in n for n in networks)
    ]


def _ipconfig_ok(interfaces: Sequence[Interface], net: NetConfig) -> str:
    parts = []
    for i in interfaces:
        if i.ipv4:
            how = {True: " (DHCP)", False: " (static)", None: ""}[i.dhcp]
            addresses = ", ".join(f"{a.address}/{a.prefix}" for a in i.ipv4)
            parts.append(f"{i.name} {addresses}{how}")
    gateways = ", ".join(_gateways(net))
    return f"{'; '.join(parts)}, gateway {gateways}, DNS {', '.join(net.dns_servers) or '-'}"


def judge_ipconfig(host: str, net: NetConfig, evidence: str = "") -> CheckResult:
    """Fail on no IPv4, APIPA, 0.0.0.0, no default gateway, a gateway off every subnet."""
    interfaces = [i for i in net.interfaces if i.up and not i.loopback]
    findings: list[Finding] = []
    if not any(i.ipv4 for i in interfaces):
        findings.append((Status.FAIL, "no IPv4 address on any up interface"))
    findings += _address_findings(interfaces)
    findings += _gateway_findings(net, interfaces)
    if not net.dns_servers and not any(i.dns for i in interfaces):
        findings.append((Status.WARN, "no DNS servers configured"))
    ok = _ipconfig_ok(interfaces, net)
    facts = as_facts(net)
    return _result(host, "ipconfig", findings, ok, facts, evidence or render_net(net))


# ---------------------------------------------------------------- ping


def _label(ping: PingResult) -> str:
    # The gateway's address is news to the reader; a named peer's is in the facts.
    if ping.target == "gateway" and ping.address:
        return f"gateway {ping.address}"
    return ping.target


def _rtt(ping: PingResult) -> str:
    if ping.rtt_avg_ms is None:
        return ""
    return f", rtt min/avg/max {ping.rtt_min_ms}/{ping.rtt_avg_ms}/{ping.rtt_max_ms} ms"


def judge_ping(host: str, ping: PingResult, evidence: str = "") -> CheckResult:
    """ok with no loss, warn with some, fail when every probe is lost or ping could not try."""
    label = _label(ping)
    counts = f"{ping.received}/{ping.transmitted} replies"
    if ping.transmitted == 0:
        reason = ping.error or "no probe sent"
        if reason == "no default gateway":
            reason = "no default gateway to ping"
        status, summary = Status.FAIL, f"{label}: {reason}"
    elif ping.received >= ping.transmitted:
        status, summary = Status.OK, f"{label}: {counts}{_rtt(ping)}"
    elif ping.received == 0:
        why = f" ({ping.error})" if ping.error else ""
        status, summary = Status.FAIL, f"{label}: {counts}{why}"
    else:
        status = Status.WARN
        summary = f"{label}: {counts} ({ping.loss_percent:g}% loss){_rtt(ping)}"
    facts = {**as_facts(ping), "loss_percent": ping.loss_percent}
    return CheckResult(
        host=host,
        check="ping",
        status=status,
        summary=summary,
        target=ping.target,
        facts=facts,
        evidence=evidence,
    )


# ---------------------------------------------------------------- smtp


def _smtp_failure(probe: SmtpProbe) -> str:
    """The operator's sentence for a failed probe."""
    port = probe.port
    if probe.outcome == SMTP_REFUSED:
        return f"connection refused on port {port}"
    if probe.outcome == SMTP_TIMEOUT:
        return f"timed out on port {port}: {probe.error or 'no answer'}"
    if probe.outcome == SMTP_UNREACHABLE:
        return f"unreachable ({probe.error or 'no route to host'}), port {port}"
    if probe.outcome == SMTP_UNRESOLVED:
        return "name does not resolve on the host"
    if probe.outcome == SMTP_BAD_GREETING:
        last = probe.greeting[-1] if probe.greeting else probe.error
        return f"greeting {last}" if last else "greeting is not 220"
    return f"error: {probe.error or probe.outcome}"


def judge_smtp(
    host: str, probe: SmtpProbe, require_starttls: bool = False, evidence: str = ""
) -> CheckResult:
    """ok on 220 and 250; warn when STARTTLS is required and missing; fail otherwise."""
    ok = probe.outcome == SMTP_OK and probe.greeting_code == 220
    if not ok:
        status, summary = Status.FAIL, f"{probe.target}: {_smtp_failure(probe)}"
    elif require_starttls and not probe.starttls:
        status, summary = Status.WARN, f"{probe.target}: no STARTTLS offered on port {probe.port}"
    else:
        tls = ", STARTTLS" if probe.starttls else ", no STARTTLS"
        status, summary = Status.OK, f"{probe.target}: 220 greeting, EHLO 250{tls}"
    shown = evidence or excerpt("\n".join([*probe.greeting, *probe.ehlo]))
    return CheckResult(
        host=host,
        check="smtp",
        status=status,
        summary=summary,
        target=probe.target,
        facts=as_facts(probe),
        evidence=shown,
    )
