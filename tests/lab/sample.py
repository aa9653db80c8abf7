"""A small made-up fleet with one of each problem, for demonstrations and renderer tests.

``sample_run()`` returns a RunResult as an audit of the lab (198.18.0.0/24)
could produce it: a healthy server, one whose mail service is stopped, one
that is down, a Windows server whose DHCP failed (APIPA), one whose
credentials are refused, and one whose greeting is hostile markup (to show
that reports escape whatever a host says).  Nothing here contacts anything.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from fleet import causes
from fleet.checks.facts import Address, Interface, NetConfig, PingResult, SmtpProbe
from fleet.model import CheckResult, HostResult, RunResult, Status

HOSTILE_GREETING = '554 <script>alert("x")</script> =cmd|"/c calc"!A1 go away'


@dataclass(frozen=True)
class _Truth:
    """How a sample host really is; what its peers observe follows from it."""

    name: str
    address: str
    platform: str = "unix"
    up: bool = True
    login: str = ""  # why the runner cannot log in; "" when it can
    login_cause: str = ""  # that reason's slug in fleet.causes
    port25: str = "ok"  # the SmtpProbe outcome a peer gets
    greeting: str = ""
    apipa: bool = False


_FLEET = (
    _Truth("mx1", "198.18.0.11"),
    _Truth("mx2", "198.18.0.12", port25="refused"),
    _Truth(
        "mx3",
        "198.18.0.13",
        up=False,
        login="timed out connecting to 198.18.0.13:22",
        login_cause=causes.CONNECT_TIMEOUT,
    ),
    _Truth("mx4", "198.18.0.14", port25="bad-greeting", greeting=HOSTILE_GREETING),
    _Truth("win1", "198.18.0.21", platform="windows", apipa=True),
    _Truth(
        "win2",
        "198.18.0.22",
        platform="windows",
        login="authentication failed (401)",
        login_cause=causes.AUTH_REFUSED,
    ),
)
_PEERS = ("mx1", "mx2", "mx3", "mx4")


def _netconfig(t: _Truth) -> NetConfig:
    address = Address("169.254.12.7", 16, True) if t.apipa else Address(t.address, 24, False)
    gateways = () if t.apipa else ("198.18.0.1",)
    bindings = (("ms_tcpip", True), ("ms_msclient", True)) if t.platform == "windows" else ()
    iface = Interface(
        name="Ethernet0" if t.platform == "windows" else "eth0",
        up=True,
        ipv4=(address,),
        dhcp=t.apipa or None,
        gateways=gateways,
        bindings=bindings,
    )
    return NetConfig((iface,), gateways, source="sample")


def _ping(src: _Truth, dst: _Truth) -> CheckResult:
    received = 3 if dst.up and not src.apipa else 0
    rtt = 0.31 if received else None
    facts = PingResult(dst.name, 3, received, rtt, rtt, rtt, address=dst.address)
    status, cause = (Status.OK, "") if received else (Status.FAIL, causes.NO_REPLY)
    summary = f"{received}/3 replies" + (f", {rtt} ms" if rtt else "")
    evidence = f"PING {dst.name} ({dst.address}) 56(84) bytes of data.\n--- {dst.name} ping ---\n"
    evidence += f"3 packets transmitted, {received} received"
    return CheckResult(
        src.name, "ping", status, summary, dst.name, asdict(facts), evidence, 2.0, cause
    )


_SMTP_CAUSES = {
    "refused": causes.REFUSED,
    "timeout": causes.TIMEOUT,
    "unreachable": causes.UNREACHABLE,
    "bad-greeting": causes.BAD_GREETING,
}


def _smtp(src: _Truth, dst: _Truth) -> CheckResult:
    outcome = dst.port25 if dst.up and not src.apipa else "unreachable" if src.apipa else "timeout"
    code = None
    if outcome in ("ok", "bad-greeting"):
        code = int(dst.greeting[:3]) if dst.greeting else 220
    greeting = (dst.greeting or f"220 {dst.name}.lab ESMTP Postfix",) if code else ()
    probe = SmtpProbe(dst.name, 25, outcome, dst.address, code, greeting, starttls=outcome == "ok")
    status = Status.OK if outcome == "ok" else Status.FAIL
    summary = f"{greeting[0]}" if greeting else f"port 25 {outcome}"
    cause = _SMTP_CAUSES.get(outcome, "")
    return CheckResult(src.name, "smtp", status, summary, dst.name, asdict(probe), "", 0.05, cause)


def _reach(t: _Truth) -> list[CheckResult]:
    ports = (5985, 25) if t.platform == "windows" else (22, 25)
    out = []
    for port in ports:
        is_open = t.up and not (port == 25 and t.port25 == "refused")
        status = Status.OK if is_open else Status.FAIL
        summary = f"port {port} {'open' if is_open else 'no answer'}"
        facts = {"port": port, "open": is_open}
        cause = "" if is_open else causes.TIMEOUT
        out.append(CheckResult(t.name, "reach", status, summary, str(port), facts, cause=cause))
    return out


def _host(t: _Truth) -> HostResult:
    connection = "winrm" if t.platform == "windows" else "ssh"
    if t.login:
        results = [CheckResult(t.name, "binding", Status.UNREACHABLE, t.login, cause=t.login_cause)]
        return HostResult(t.name, t.address, connection, t.platform, tuple(results + _reach(t)))
    facts = asdict(_netconfig(t))
    ipconfig = (
        CheckResult(t.name, "ipconfig", Status.FAIL, "APIPA address 169.254.12.7: DHCP failed",
                    facts=facts, cause=causes.APIPA)
        if t.apipa
        else CheckResult(t.name, "ipconfig", Status.OK, f"{t.address}/24 via 198.18.0.1",
                         facts=facts)
    )  # fmt: skip
    results = [CheckResult(t.name, "binding", Status.OK, "TCP/IP bound", facts=facts), ipconfig]
    for peer in (p for p in _FLEET if p.name in _PEERS and p.name != t.name):
        results += [_ping(t, peer), _smtp(t, peer)]
    return HostResult(t.name, t.address, connection, t.platform, tuple(results + _reach(t)), 4.2)


def sample_run(inventory: str = "inventories/lab.ini") -> RunResult:
    """The sample fleet's audit, as the runner would have returned it."""
    return RunResult(
        inventory=inventory,
        playbook="playbooks/mail-connectivity.yml",
        started="2024-05-01T02:00:00+00:00",
        finished="2024-05-01T02:00:09+00:00",
        hosts=tuple(_host(t) for t in _FLEET),
        fleet_version="sample",
    )
