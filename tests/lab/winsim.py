"""The Windows hosts of the lab: what each one answers when fleet's audit script runs on it.

The lab's WS-Management server (``tests.lab.wsman``, glued by
``tests.lab.winhost``) hands every PowerShell script it receives to
``handle_script``.  Only scripts that ``fleet.checks.windows.compose`` produced
are accepted - the step list is read back out of the script and recomposed, and
the two must match byte for byte; anything else is refused the way PowerShell
refuses an unknown command.

For each step the simulator prints what that Windows host would print:
ConvertTo-Json's shapes on PowerShell 5.1 (one object where a pipeline gave one
row, enums as integers, ``<>&'`` escaped) or the script's own JSON writer on
PowerShell 2.0 (Server 2008 R2, WMI and registry fallbacks).  Ping and SMTP are
done FOR REAL from this process (inside the host's network namespace): ICMP via
the system ``ping``, TCP and an SMTP dialogue via sockets, and only towards
loopback or the lab network.  A host whose profile says it has no route (TCP/IP
unbound, APIPA without gateway) fails those probes as Windows would.
"""

from __future__ import annotations

import base64
import binascii
import errno
import ipaddress
import json
import re
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field, replace
from typing import Any

from fleet.checks.base import Step
from fleet.checks.ping import GATEWAY
from fleet.checks.windows import compose, script_text

LAB_USER = "fleet"
LAB_PASSWORD = "Lab-Passw0rd"
LAB_GATEWAY = "198.18.0.1"
# Real probes go only here: loopback and the lab range (the standard lab and the bench).
LAB_NETWORKS = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("198.18.0.0/15"))

# Enum values as ConvertTo-Json writes them.
PREFIX_MANUAL, PREFIX_WELLKNOWN, PREFIX_DHCP = 1, 2, 3
NETCONNECTION_CONNECTED, NETCONNECTION_MEDIA_DISCONNECTED = 2, 7
# Get-NetIPAddress AddressState
ADDRESS_STATES = {"Invalid": 0, "Tentative": 1, "Duplicate": 2, "Deprecated": 3, "Preferred": 4}
# Win32_PingStatus
PING_OK, PING_TIMED_OUT, PING_HOST_UNREACHABLE, PING_GENERAL_FAILURE = 0, 11010, 11003, 11050
RESOLUTION_HOST_NOT_FOUND = 11001

_DEFAULT_BINDINGS = (
    ("ms_tcpip", True),
    ("ms_tcpip6", True),
    ("ms_msclient", True),
    ("ms_server", True),
    ("ms_pacer", True),
    ("ms_lltdio", True),
    ("ms_rspndr", True),
    ("ms_lldp", True),
    ("ms_implat", False),
)
# A NIC whose only binding is the one that ties it to a Hyper-V switch (vms_pp) or to an
# LBFO team (ms_implat): every other component, TCP/IP included, is unbound by design.
_ONLY = {component for component, _ in _DEFAULT_BINDINGS} | {"vms_pp"}


def _only(component: str) -> tuple[tuple[str, bool], ...]:
    return tuple((c, c == component) for c in sorted(_ONLY))


@dataclass(frozen=True)
class Adapter:
    """One network adapter of a simulated Windows host."""

    name: str  # NetConnectionID / InterfaceAlias, e.g. "Ethernet0"
    description: str
    mac: str  # "00-15-5D-12-00-31" as Get-NetAdapter shows it
    if_index: int
    guid: str  # "{...}" upper case
    status: str = "Up"  # Get-NetAdapter Status: Up | Disconnected
    bindings: tuple[tuple[str, bool], ...] = _DEFAULT_BINDINGS  # ComponentID -> enabled
    lab_address: bool = True  # carries the host's lab address (/24) in front of ``ipv4``
    ipv4: tuple[tuple[str, int], ...] = ()
    dhcp: bool = False
    gateway: str | None = LAB_GATEWAY
    dns: tuple[str, ...] = (LAB_GATEWAY,)
    link_local6: str = "fe80::1"
    # Get-NetAdapter: Hidden (left out unless -IncludeHidden), ComponentID.
    hidden: bool = False
    component_id: str = ""
    # AddressState by address, where not Preferred (e.g. a conflict: "Duplicate").
    address_states: tuple[tuple[str, str], ...] = ()
    route_metric: int = 0  # the default route's RouteMetric
    interface_metric: int = 15  # Get-NetIPInterface InterfaceMetric (automatic, 1 Gbit/s)

    @property
    def tcpip(self) -> bool:
        return dict(self.bindings).get("ms_tcpip", False)

    @property
    def up(self) -> bool:
        return self.status == "Up"


@dataclass(frozen=True)
class Profile:
    """One simulated Windows host."""

    name: str
    windows: str  # "Windows Server 2019 Datacenter"
    build: str  # "10.0.17763"
    powershell: str  # "5.1" or "2.0"
    hostname: str
    adapters: tuple[Adapter, ...]
    user: str = LAB_USER
    password: str = field(default=LAB_PASSWORD, repr=False)
    # Default routes (InterfaceIndex, NextHop) only in the PersistentStore: left behind,
    # e.g. by a NIC that joined a team; Get-NetRoute lists them unless asked for the ActiveStore.
    stale_routes: tuple[tuple[int, str], ...] = ()

    @property
    def legacy(self) -> bool:
        """PowerShell 2.0: no ConvertTo-Json, no NetTCPIP/NetAdapter modules."""
        return self.powershell.startswith("2.")


def _adapter(n: int, k: int = 0, **changes: Any) -> Adapter:
    """Adapter ``k`` of host ``n``: its own MAC and GUID."""
    base = Adapter(
        name="Ethernet0",
        description="Intel(R) 82574L Gigabit Network Connection",
        mac=f"00-15-5D-12-{k:02X}-{n:02X}",
        if_index=6,
        guid=f"{{5F1C2A{n:02X}-8D3E-4B7A-9C11-0A1B2C3D{k:02X}{n:02X}}}",
        link_local6=f"fe80::5d:12ff:fe{k:02x}:{n:x}",
    )
    return replace(base, **changes)


def _server2019(name: str, n: int, /, *more: Adapter, **changes: Any) -> Profile:
    """A Server 2019 host: its first adapter (``changes``) carries the lab address."""
    return Profile(
        name=name,
        windows="Windows Server 2019 Datacenter",
        build="10.0.17763",
        powershell="5.1",
        hostname=f"WIN-{name.upper()}",
        adapters=(_adapter(n, **changes), *more),
    )


def _secondary(n: int, k: int, name: str, index: int, **changes: Any) -> Adapter:
    """An adapter without the lab address, gateway or DNS."""
    return _adapter(
        n, k, name=name, if_index=index, lab_address=False, gateway=None, dns=(), **changes
    )


PROFILES: dict[str, Profile] = {
    "ok": _server2019("ok", 0x31),
    "unbound": _server2019(
        "unbound",
        0x32,
        bindings=tuple((c, c != "ms_tcpip" and e) for c, e in _DEFAULT_BINDINGS),
    ),
    # DHCP never answered: Windows falls back to 169.254/16 and has no gateway.
    "apipa": _server2019(
        "apipa",
        0x33,
        lab_address=False,
        ipv4=(("169.254.47.112", 16),),
        dhcp=True,
        gateway=None,
        dns=(),
    ),
    "nogw": _server2019("nogw", 0x34, gateway=None),
    "2008": Profile(
        name="2008",
        windows="Windows Server 2008 R2 Standard",
        build="6.1.7601",
        powershell="2.0",
        hostname="WIN-2008R2",
        adapters=(
            _adapter(
                0x35,
                name="Local Area Connection",
                description="Intel(R) PRO/1000 MT Network Connection",
                if_index=11,
                bindings=(
                    ("ms_tcpip", True),
                    ("ms_tcpip6", True),
                    ("ms_msclient", True),
                    ("ms_server", True),
                ),
            ),
        ),
    ),
    # Healthy; the lab inventory holds a wrong password for it.
    "badpass": _server2019("badpass", 0x36),
    # Healthy Exchange DAG node: the failover cluster's hidden NetFT adapter has 169.254.x.x.
    "dag": _server2019(
        "dag",
        0x37,
        _secondary(
            0x37,
            1,
            "Local Area Connection* 12",
            21,
            description="Microsoft Failover Cluster Virtual Adapter",
            component_id="ROOT\\NetFt",
            hidden=True,
            ipv4=(("169.254.1.57", 16),),
        ),
    ),
    # Healthy LBFO team: TCP/IP on the team adapter, the members carry only ms_implat; a
    # default route via the members' old subnet survives in the PersistentStore only.
    "team": replace(
        _server2019(
            "team",
            0x38,
            _secondary(0x38, 1, "NIC1", 4, bindings=_only("ms_implat")),
            _secondary(0x38, 2, "NIC2", 5, bindings=_only("ms_implat")),
            name="Team1",
            description="Microsoft Network Adapter Multiplexor Driver",
            if_index=12,
        ),
        stale_routes=((4, "10.0.5.1"),),
    ),
    # Healthy Hyper-V host: the physical NIC is the virtual switch's uplink (vms_pp only);
    # the host's own vEthernet adapter carries TCP/IP.
    "hyperv": _server2019(
        "hyperv",
        0x39,
        _secondary(0x39, 1, "Ethernet0", 4, bindings=_only("vms_pp")),
        name="vEthernet (External)",
        description="Hyper-V Virtual Ethernet Adapter",
        if_index=9,
    ),
    # Broken: a second address that another machine on the segment already answers for.
    "dupaddr": _server2019(
        "dupaddr",
        0x40,
        ipv4=(("198.18.0.200", 24),),
        address_states=(("198.18.0.200", "Duplicate"),),
    ),
}


# --------------------------------------------------------------------------- the host's view


def _addresses(adapter: Adapter, address: str) -> list[tuple[str, int, int]]:
    """(address, prefix, PrefixOrigin) of an adapter; none when TCP/IP is unbound."""
    if not adapter.tcpip:
        return []
    rows = [(address, 24)] if adapter.lab_address else []
    rows += list(adapter.ipv4)
    return [(a, p, _origin(adapter, a)) for a, p in rows]


def _state(adapter: Adapter, address: str) -> int:
    return ADDRESS_STATES[dict(adapter.address_states).get(address, "Preferred")]


def _uses(script: str, words: str) -> bool:
    """Whether fleet's step script asks for ``words`` (a cmdlet's switch, as PowerShell would)."""
    return words in script_text(script)


def _origin(adapter: Adapter, address: str) -> int:
    if ipaddress.ip_address(address).is_link_local:
        return PREFIX_WELLKNOWN
    return PREFIX_DHCP if adapter.dhcp else PREFIX_MANUAL


def _gateways(profile: Profile) -> list[tuple[Adapter, str]]:
    """The active default routes, the lowest RouteMetric + InterfaceMetric first."""
    found = [(a, a.gateway) for a in profile.adapters if a.tcpip and a.gateway]
    return sorted(found, key=lambda pair: pair[0].route_metric + pair[0].interface_metric)


def _routable(profile: Profile, address: str, target: str) -> bool:
    """Whether this Windows host has a route to ``target`` (else: "General failure")."""
    ip = ipaddress.ip_address(target)
    if ip.is_loopback:
        return True
    for adapter in profile.adapters:
        if not adapter.up:
            continue
        for a, prefix, _ in _addresses(adapter, address):
            if ip in ipaddress.ip_network(f"{a}/{prefix}", strict=False):
                return True
    return any(a.up for a, _ in _gateways(profile))


def _pipeline(rows: list[Any]) -> Any:
    """What a PowerShell pipeline assigned to a variable holds: nothing, one object, or an array."""
    if not rows:
        return None
    return rows[0] if len(rows) == 1 else rows


def _wmi_mac(adapter: Adapter) -> str:
    return adapter.mac.replace("-", ":")  # WMI writes 00:15:5D:..., Get-NetAdapter 00-15-5D-...


def _wmi_adapters(profile: Profile) -> Any:
    return _pipeline(
        [
            {
                "NetConnectionID": a.name,
                "Description": a.description,
                "NetConnectionStatus": NETCONNECTION_CONNECTED
                if a.up
                else NETCONNECTION_MEDIA_DISCONNECTED,
                "MACAddress": _wmi_mac(a),
                "InterfaceIndex": a.if_index,
                "GUID": a.guid,
            }
            for a in profile.adapters
        ]
    )


def _net_adapters(profile: Profile, script: str, if_index: bool = False) -> Any:
    """Get-NetAdapter rows as ``script`` selects them; ipconfig.ps1 adds ifIndex."""
    return _pipeline(
        [
            {
                "Name": a.name,
                "InterfaceDescription": a.description,
                "Status": a.status,
                "MacAddress": a.mac,
                **({"ifIndex": a.if_index} if if_index else {}),
                "ComponentID": a.component_id,
                "Hidden": a.hidden,
            }
            for a in _visible(profile, script)
        ]
    )


# --------------------------------------------------------------------------- the answers

# What each step script answers on a simulated host, by the script's name:
# a check's Windows script adds exactly one answer here, with ``@answers``.
Emulator = Callable[[Profile, str, Mapping[str, str]], dict[str, Any]]
EMULATORS: dict[str, Emulator] = {}


def answers(script: str) -> Callable[[Emulator], Emulator]:
    """Register what ``script`` (``"<check>/<file>.ps1"``) prints on a simulated host."""

    def register(emulator: Emulator) -> Emulator:
        EMULATORS[script] = emulator
        return emulator

    return register


@answers("binding/binding.ps1")
def binding_report(
    profile: Profile, address: str, params: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """What binding.ps1 returns on this host."""
    if profile.legacy:
        return _binding_registry(profile)
    return {
        "source": "Get-NetAdapterBinding",
        "adapters": _net_adapters(profile, "binding/binding.ps1"),
        "bindings": _pipeline(
            [
                {"Name": a.name, "ComponentID": c, "Enabled": e}
                for a in _visible(profile, "binding/binding.ps1")
                for c, e in a.bindings
            ]
        ),
    }


def _visible(profile: Profile, script: str) -> list[Adapter]:
    """What Get-NetAdapter lists: hidden adapters (NetFT) only with -IncludeHidden."""
    hidden = _uses(script, "Get-NetAdapter -IncludeHidden")
    return [a for a in profile.adapters if hidden or not a.hidden]


# Linkage\Bind entry formats per service (the GUID is the adapter's).
_LINKAGE = {
    "ms_tcpip": ("\\Device\\{}", ["\\Device\\NdisWanIp"]),
    "ms_tcpip6": ("\\Device\\{}", ["\\Device\\NdisWanIpv6"]),
    "ms_msclient": ("\\Device\\Tcpip_{}", []),
    "ms_server": ("\\Device\\Tcpip_{}", []),
}


def _binding_registry(profile: Profile) -> dict[str, Any]:
    bind = {}
    for component, (pattern, extra) in _LINKAGE.items():
        entries = [
            pattern.format(a.guid) for a in profile.adapters if dict(a.bindings).get(component)
        ]
        bind[component] = entries + extra
    return {
        "source": "registry",
        "adapters": _wmi_adapters(profile),
        "adapters_from": "Win32_NetworkAdapter",
        "bind": bind,
        "fallback": "",
    }


@answers("ipconfig/ipconfig.ps1")
def ipconfig_report(
    profile: Profile, address: str, params: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """What ipconfig.ps1 returns on this host."""
    if profile.legacy:
        return _ipconfig_wmi(profile, address)
    bound = [a for a in profile.adapters if a.tcpip]
    loopback = {"InterfaceIndex": 1, "InterfaceAlias": "Loopback Pseudo-Interface 1"}
    addresses = [
        {
            "InterfaceIndex": a.if_index,
            "IPAddress": ip,
            "PrefixLength": prefix,
            "PrefixOrigin": origin,
            "AddressState": _state(a, ip),
        }
        for a in bound
        for ip, prefix, origin in _addresses(a, address)
    ]
    addresses.append(
        {
            "InterfaceIndex": 1,
            "IPAddress": "127.0.0.1",
            "PrefixLength": 8,
            "PrefixOrigin": PREFIX_WELLKNOWN,
            "AddressState": ADDRESS_STATES["Preferred"],
        }
    )
    interfaces = [
        {
            "InterfaceIndex": a.if_index,
            "InterfaceAlias": a.name,
            "Dhcp": int(a.dhcp),
            "ConnectionState": int(a.up),
            "InterfaceMetric": a.interface_metric,
        }
        for a in bound
    ]
    interfaces.append({**loopback, "Dhcp": 0, "ConnectionState": 1, "InterfaceMetric": 75})
    return {
        "source": "NetTCPIP",
        "adapters": _net_adapters(profile, "ipconfig/ipconfig.ps1", if_index=True),
        "addresses": _pipeline(addresses),
        "interfaces": _pipeline(interfaces),
        "routes": _pipeline(_routes(profile)),
        "dns": _pipeline(
            [{"InterfaceIndex": a.if_index, "ServerAddresses": list(a.dns)} for a in bound]
            + [{"InterfaceIndex": 1, "ServerAddresses": []}]
        ),
    }


def _routes(profile: Profile) -> list[dict[str, Any]]:
    """Get-NetRoute's default routes: without -PolicyStore it lists both stores."""
    rows = [
        {"InterfaceIndex": a.if_index, "NextHop": gw, "RouteMetric": a.route_metric}
        for a, gw in _gateways(profile)
    ]
    if not _uses("ipconfig/ipconfig.ps1", "-PolicyStore ActiveStore"):
        rows += [
            {"InterfaceIndex": index, "NextHop": gw, "RouteMetric": 0}
            for index, gw in profile.stale_routes
        ]
    return rows


def _ipconfig_wmi(profile: Profile, address: str) -> dict[str, Any]:
    configs = []
    for a in profile.adapters:
        if not a.tcpip:
            continue  # IPEnabled=FALSE: TCP/IP is not bound
        rows = _addresses(a, address)
        configs.append(
            {
                "InterfaceIndex": a.if_index,
                "Description": a.description,
                "SettingID": a.guid,
                "MACAddress": _wmi_mac(a),
                # IPv6 rides in the same arrays, the prefix length standing in for a mask.
                "IPAddress": [ip for ip, _, _ in rows] + [a.link_local6],
                "IPSubnet": [str(ipaddress.ip_network(f"0.0.0.0/{p}").netmask) for _, p, _ in rows]
                + ["64"],
                "DefaultIPGateway": [a.gateway] if a.gateway else None,
                "GatewayCostMetric": [a.route_metric] if a.gateway else None,
                "IPConnectionMetric": a.interface_metric,
                "DHCPEnabled": a.dhcp,
                "DNSServerSearchOrder": list(a.dns) or None,
            }
        )
    return {
        "source": "Win32_NetworkAdapterConfiguration",
        "adapters": _wmi_adapters(profile),
        "configs": _pipeline(configs),
        "fallback": "",
    }


# --------------------------------------------------------------------------- real probes


class OutsideLab(Exception):
    """A probe would leave the lab: the simulator never sends such traffic."""


def _resolve(name: str) -> str | None:
    try:
        infos = socket.getaddrinfo(name, None, socket.AF_INET, socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        return None
    return str(infos[0][4][0]) if infos else None


def _check_lab(ip: str) -> None:
    if not any(ipaddress.ip_address(ip) in net for net in LAB_NETWORKS):
        raise OutsideLab(f"the lab host will not send traffic to {ip}: outside the lab")


_PING_TIME = re.compile(rb"time=([\d.]+) ms")


def _echo(ip: str, timeout_ms: int) -> tuple[int, int | None]:
    """One ICMP echo with the system ping: (Win32_PingStatus StatusCode, ResponseTime)."""
    proc = subprocess.run(
        ["ping", "-n", "-c", "1", "-W", f"{max(timeout_ms, 1) / 1000:g}", ip],
        capture_output=True,
        timeout=timeout_ms / 1000 + 5,
        check=False,
    )
    found = _PING_TIME.search(proc.stdout)
    if proc.returncode == 0 and found:
        return PING_OK, round(float(found.group(1)))
    if b"Unreachable" in proc.stdout:
        return PING_HOST_UNREACHABLE, None
    if proc.returncode == 1:
        return PING_TIMED_OUT, None
    return PING_GENERAL_FAILURE, None


def _gateway_from(profile: Profile) -> str:
    return "NetworkInterface" if profile.legacy else "Get-NetRoute"


@answers("ping/ping.ps1")
def ping_report(profile: Profile, address: str, params: Mapping[str, str]) -> dict[str, Any]:
    """What ping.ps1 returns: one Win32_PingStatus query per echo, done for real."""
    target = params["target"]
    echoes, timeout_ms = int(params["echoes"]), int(params["timeout_ms"])
    if target == GATEWAY:
        gateways = _gateways(profile)
        if not gateways:
            return {
                "target": target,
                "error": "no default gateway",
                "gateway_from": _gateway_from(profile),
            }
        ip: str | None = gateways[0][1]
    else:
        ip = _resolve(target)
    replies = []
    for _ in range(echoes):
        if ip is None:
            reply = {
                "status": None,
                "time": None,
                "resolution": RESOLUTION_HOST_NOT_FOUND,
                "address": "",
            }
        elif not _routable(profile, address, ip):
            reply = {"status": PING_GENERAL_FAILURE, "time": None, "resolution": 0, "address": ip}
        else:
            _check_lab(ip)
            status, ms = _echo(ip, timeout_ms)
            reply = {"status": status, "time": ms, "resolution": 0, "address": ip}
        replies.append(reply)
    # The script keeps the name it was given; each reply carries the address it reached.
    return {
        "target": target,
        "address": ip if target == GATEWAY else target,
        "source": "Win32_PingStatus",
        "replies": replies,
        "gateway_from": _gateway_from(profile) if target == GATEWAY else "",
    }


# errno -> .NET SocketError name, as the script reports it.
_SOCKET_ERROR = {
    errno.ECONNREFUSED: "ConnectionRefused",
    errno.ETIMEDOUT: "TimedOut",
    errno.EHOSTUNREACH: "HostUnreachable",
    errno.ENETUNREACH: "NetworkUnreachable",
    errno.ECONNRESET: "ConnectionReset",
    errno.ECONNABORTED: "ConnectionAborted",
}
_SMTP_OUTCOME = {
    "ConnectionRefused": "refused",
    "TimedOut": "timeout",
    "HostUnreachable": "unreachable",
    "NetworkUnreachable": "unreachable",
}


class _SocketError(Exception):
    def __init__(self, code: str) -> None:
        self.code = code
        super().__init__(code)


class _Conversation:
    """The SMTP client side, line by line as .NET's StreamReader/StreamWriter would do it."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.reader = sock.makefile("rb")

    def reply(self) -> list[str]:
        lines: list[str] = []
        while True:
            try:
                raw = self.reader.readline(4096)
            except TimeoutError:
                raise _SocketError("TimedOut") from None
            except OSError as exc:
                raise _SocketError(_SOCKET_ERROR.get(exc.errno or 0, "SocketError")) from None
            if not raw:
                return lines
            # Encoding.ASCII turns every non-ASCII byte into "?".
            line = bytes(b if b < 128 else 63 for b in raw).decode("ascii").rstrip("\r\n")
            lines.append(line)
            if not re.match(r"^\d{3}-", line):
                return lines

    def send(self, line: str) -> None:
        try:
            self.sock.sendall(line.encode("ascii", "replace") + b"\r\n")
        except OSError as exc:
            raise _SocketError(_SOCKET_ERROR.get(exc.errno or 0, "SocketError")) from None


@answers("smtp/smtp.ps1")
def smtp_report(profile: Profile, address: str, params: Mapping[str, str]) -> dict[str, Any]:
    """What smtp.ps1 returns: a real, polite SMTP conversation (greeting, EHLO, QUIT)."""
    report: dict[str, Any] = {
        "target": params["target"],
        "port": int(params["port"]),
        "outcome": "error",
        "greeting": [],
        "ehlo": [],
        "starttls": False,
    }
    ip = _resolve(params["target"])
    if ip is None:
        report.update(outcome="unresolved", error="name not resolved")
        return report
    report["address"] = ip
    if not _routable(profile, address, ip):
        report.update(outcome="unreachable", error="connect failed: NetworkUnreachable")
        return report
    _check_lab(ip)
    timeout = int(params["timeout_ms"]) / 1000
    started = time.perf_counter()
    try:
        sock = socket.create_connection((ip, report["port"]), timeout=timeout)
    except TimeoutError:
        report.update(outcome="timeout", error="no answer to connect")
        return report
    except OSError as exc:
        code = _SOCKET_ERROR.get(exc.errno or 0, "SocketError")
        report.update(outcome=_SMTP_OUTCOME.get(code, "error"), error=f"connect failed: {code}")
        return report
    report["connect_ms"] = (time.perf_counter() - started) * 1000
    with sock:
        _converse(_Conversation(sock), report, params)
    return report


def _converse(talk: _Conversation, report: dict[str, Any], params: Mapping[str, str]) -> None:
    stage = "greeting"
    try:
        report["greeting"] = talk.reply()
        if not report["greeting"]:
            report["error"] = "connection closed before the greeting"
            return
        code = re.match(r"^(\d{3})", report["greeting"][0])
        if code:
            report["code"] = int(code.group(1))
        if report.get("code") != 220:
            report["outcome"] = "bad-greeting"
            return
        stage = "ehlo"
        talk.send("EHLO " + re.sub(r"[\r\n]", "", params["helo"]))
        report["ehlo"] = talk.reply()
        if not report["ehlo"] or not report["ehlo"][-1].startswith("250 "):
            report["error"] = "EHLO refused"
            return
        report["starttls"] = any(re.match(r"^250[ -]STARTTLS", x) for x in report["ehlo"])
        stage = "quit"
        talk.send("QUIT")
        talk.reply()
        report["outcome"] = "ok"
    except _SocketError as exc:
        if stage == "quit":
            report["outcome"] = "ok"
            return
        report["error"] = f"{stage} failed: {exc.code}"
        report["outcome"] = _SMTP_OUTCOME.get(exc.code, "error")


# ------------------------------------------------------------- JSON as PowerShell writes it


def ps51_json(value: Any) -> str:
    """ConvertTo-Json -Compress on Windows PowerShell 5.1 (JavaScriptSerializer escaping)."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    for char, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("'", "\\u0027")):
        text = text.replace(char, escaped)
    return text


def _ps2_string(text: str) -> str:
    out = ['"']
    for char in text:
        if char == '"':
            out.append('\\"')
        elif char == "\\":
            out.append("\\\\")
        elif ord(char) < 32:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    out.append('"')
    return "".join(out)


def ps2_json(value: Any, depth: int = 0) -> str:
    """The composed script's own JSON writer (fleetJ), used where ConvertTo-Json is missing."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return _ps2_string(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return format(value, ".15g")
    if depth >= 4:
        return _ps2_string(str(value))
    if isinstance(value, dict):
        return (
            "{"
            + ",".join(f"{_ps2_string(str(k))}:{ps2_json(v, depth + 1)}" for k, v in value.items())
            + "}"
        )
    return "[" + ",".join(ps2_json(v, depth + 1) for v in value) + "]"


# --------------------------------------------------------------------------- the script


@dataclass(frozen=True)
class AuditScript:
    """A composed audit script, read back: its nonce, step timeout and steps."""

    nonce: str
    timeout_ms: int
    steps: tuple[Step, ...]


_HEADER = re.compile(r"# fleet audit (?P<nonce>[0-9A-Za-z]{8,64})\n")
_RUN = re.compile(r"\nfleetRun \$fleetCode \$fleetSteps '(?P<nonce>[0-9A-Za-z]+)' (?P<ms>\d+)\n?\Z")
_STEP = re.compile(r", @\('(?P<script>[a-z_]+/[a-z_]+\.ps1)', @\{(?P<params>.*)\}\)")
_PARAM = re.compile(r"(?P<name>[A-Za-z_][A-Za-z0-9_]*) = \(fleetArg '(?P<b64>[A-Za-z0-9+/=]*)'\)")


def _read_params(text: str) -> dict[str, str] | None:
    params = {}
    for item in text.split("; ") if text else []:
        match = _PARAM.fullmatch(item)
        if not match:
            return None
        try:
            params[match["name"]] = base64.b64decode(match["b64"], validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
    return params


def recognise(script: str) -> AuditScript | None:
    """The audit script's steps if ``script`` is exactly what ``compose`` makes, else None."""
    header, run = _HEADER.match(script), _RUN.search(script)
    start = script.find("\n$fleetSteps = @(\n")
    if not header or not run or start < 0 or header["nonce"] != run["nonce"]:
        return None
    steps = []
    for i, line in enumerate(script[start : run.start()].splitlines()[2:]):
        if line == ")":
            break
        match = _STEP.fullmatch(line)
        params = _read_params(match["params"]) if match else None
        if match is None or params is None:
            return None
        steps.append(Step(key=str(i), script=match["script"], params=params))
    parsed = AuditScript(nonce=header["nonce"], timeout_ms=int(run["ms"]), steps=tuple(steps))
    try:
        again = compose(parsed.steps, parsed.nonce, parsed.timeout_ms / 1000)
    except ValueError:
        return None
    return parsed if script in (again, ansible_form(again)) else None


def ansible_form(script: str) -> str:
    """``script`` as Ansible's PowerShell shell plugin sends a ``raw`` command: every line
    stripped, blank lines dropped (``_encode_script``); PowerShell runs it the same, so
    the bench can point ``ansible -m raw`` at these hosts with fleet's script."""
    return "\n".join(line.strip() for line in script.splitlines() if line.strip())


def _refusal(script: str) -> tuple[bytes, bytes, int]:
    word = re.sub(r"[^\w.-]", "", (script.split() or ["<empty>"])[0])[:40] or "<script>"
    message = (
        f"{word} : The term '{word}' is not recognized as the name of a cmdlet, function, "
        "script file, or operable program. This lab host runs only fleet's own audit scripts.\r\n"
        "    + CategoryInfo          : ObjectNotFound: "
        f"({word}:String) [], CommandNotFoundException\r\n"
        "    + FullyQualifiedErrorId : CommandNotFoundException\r\n"
    )
    return b"", message.encode("utf-8"), 1


def _run_step(profile: Profile, address: str, step: Step) -> tuple[int, Any]:
    try:
        return 0, EMULATORS[step.script](profile, address, step.params)
    except Exception as exc:
        return 1, {"error": str(exc)}


def _section(nonce: str, index: int, rc: int, text: str) -> bytes:
    b64 = base64.b64encode(text.encode("utf-8")).decode("ascii")
    return (
        f"\n@@fleet {nonce} begin {index}\n{b64}\n@@fleet {nonce} end {index} {rc} 0 b64\n".encode()
    )


def run_audit(profile: Profile, audit: AuditScript, address: str) -> bytes:
    """The stdout of the audit script on this host: steps side by side, sections in order."""
    to_json = ps2_json if profile.legacy else ps51_json
    deadline = time.monotonic() + audit.timeout_ms / 1000
    out = []
    pool = ThreadPoolExecutor(max_workers=max(1, len(audit.steps)), thread_name_prefix="winsim")
    try:
        futures = [pool.submit(_run_step, profile, address, step) for step in audit.steps]
        for index, future in enumerate(futures):
            try:
                rc, report = future.result(timeout=max(0.0, deadline - time.monotonic()))
            except FutureTimeout:
                rc = 124
                report = {"error": f"step did not finish within {audit.timeout_ms / 1000:g} s"}
            out.append(_section(audit.nonce, index, rc, to_json(report)))
    finally:
        # Like BeginStop: do not wait for a stuck probe (its own socket timeouts end it).
        pool.shutdown(wait=False, cancel_futures=True)
    return b"".join(out)


def handle_script(profile: Profile, script: str, *, address: str) -> tuple[bytes, bytes, int]:
    """stdout, stderr and exit code of running ``script`` on the simulated host.

    ``address`` is the host's lab address (that of its namespace), which the
    profile's primary adapter reports unless the profile says otherwise (APIPA).
    """
    audit = recognise(script)
    if audit is None:
        return _refusal(script)
    return run_audit(profile, audit, address), b"", 0


__all__: Sequence[str] = (
    "PROFILES",
    "Adapter",
    "AuditScript",
    "Profile",
    "ansible_form",
    "binding_report",
    "handle_script",
    "ipconfig_report",
    "ping_report",
    "ps2_json",
    "ps51_json",
    "recognise",
    "smtp_report",
)
