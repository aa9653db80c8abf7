"""binding's verdict: is TCP/IP bound to an adapter that is up (KB Q128961, step 1)?"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from fleet import causes
from fleet.checks.facts import Interface, NetConfig, as_facts
from fleet.checks.harness import Finding, with_findings
from fleet.checks.net import global_v4, render_net
from fleet.model import CheckResult, Platform, Status

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


def _enabled(interface: Interface) -> set[str]:
    return {component for component, enabled in interface.bindings if enabled}


def _tcpip_bound(interface: Interface) -> bool:
    """TCP/IP is on: Windows says so in its bindings; Unix has a global IPv4 address."""
    if interface.bindings:
        return "ms_tcpip" in _enabled(interface)
    return bool(global_v4(interface))


def _windows_findings(adapters: Iterable[Interface]) -> list[Finding]:
    """Warnings for connected Windows adapters (when some adapter does carry TCP/IP)."""
    findings: list[Finding] = []
    for a in adapters:
        enabled = _enabled(a)
        if "ms_tcpip" not in enabled:
            findings.append((Status.WARN, causes.TCPIP_UNBOUND, f"TCP/IP not bound to {a.name}"))
            continue
        if "ms_msclient" not in enabled:
            findings.append(
                (
                    Status.WARN,
                    causes.MSCLIENT_UNBOUND,
                    f"Client for Microsoft Networks not bound to {a.name}",
                )
            )
        others = sorted(enabled - USUAL_BINDINGS)
        if others:
            findings.append(
                (
                    Status.WARN,
                    causes.EXTRA_PROTOCOLS,
                    f"other protocols bound to {a.name}: {', '.join(others)}",
                )
            )
    return findings


def _loopback_findings(interfaces: Sequence[Interface]) -> list[Finding]:
    loops = [i for i in interfaces if i.loopback]
    if not loops:
        return [(Status.WARN, causes.LOOPBACK_DOWN, "no loopback interface")]
    if not any(i.up for i in loops):
        return [(Status.WARN, causes.LOOPBACK_DOWN, f"loopback {loops[0].name} is down")]
    if not any(a.address == "127.0.0.1" for i in loops for a in i.ipv4):
        return [(Status.WARN, causes.LOOPBACK_DOWN, f"loopback {loops[0].name} has no 127.0.0.1")]
    return []


def _unbound(connected: Sequence[Interface]) -> Finding:
    if not connected:
        return Status.FAIL, causes.NO_INTERFACE_UP, "no network interface is up"
    names = ", ".join(i.name for i in connected)
    if all(i.bindings for i in connected):
        return Status.FAIL, causes.TCPIP_UNBOUND, f"TCP/IP not bound to {names}"
    return (
        Status.FAIL,
        causes.NO_INTERFACE_UP,
        f"no up interface has a global IPv4 address ({names})",
    )


def judge_binding(host: str, net: NetConfig, platform: Platform, evidence: str = "") -> CheckResult:
    """Fail when no up adapter carries TCP/IP; warn on the KB's lesser binding problems.

    Adapters that are not the server's own connections (``internal``: a NIC bound to a
    Hyper-V switch or a team, whose TCP/IP is unbound by design) are shown, not judged.
    """
    connected = [i for i in net.interfaces if i.up and not i.loopback and not i.internal]
    bound = [i for i in connected if _tcpip_bound(i)]
    findings: list[Finding] = []
    if bound:
        findings += _windows_findings(i for i in connected if i.bindings)
    else:
        findings.append(_unbound(connected))
    if platform is Platform.UNIX:
        findings += _loopback_findings(net.interfaces)
    ok = "TCP/IP bound to " + ", ".join(i.name for i in bound)
    facts = {**as_facts(net), "bound": [i.name for i in bound]}
    return with_findings(host, "binding", findings, ok, facts, evidence or render_net(net))
