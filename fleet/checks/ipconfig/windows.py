"""ipconfig on Windows: addresses, DHCP, gateways and DNS per adapter (ipconfig.ps1 beside).

NetTCPIP where it exists, WMI on PowerShell 2.0 (Server 2008 R2), and, when
the WMI repository is broken, the text of ``ipconfig /all``: jc reads the
English output, a small table of labels reads French and German.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from fleet.checks import winjson
from fleet.checks.base import Step, StepOutput
from fleet.checks.facts import Address, Interface, NetConfig
from fleet.checks.ipconfig.text import parse_ipconfig_text
from fleet.checks.net.windows import adapter_up, guid, netconfig, prefix, unique, wmi_connected

KEY = "ipconfig"
SOURCES = ("NetTCPIP", "Win32_NetworkAdapterConfiguration", "ipconfig /all")


def steps(params: Mapping[str, Any]) -> list[Step]:
    return [Step(key=KEY, script="ipconfig/ipconfig.ps1")]


def parse(outputs: Mapping[str, StepOutput]) -> NetConfig:
    """Addresses, DHCP, gateways and DNS per adapter (NetTCPIP, or WMI on PowerShell 2.0)."""
    data = winjson.load(winjson.output(outputs, KEY))
    source = winjson.source(data, SOURCES)
    if source == "ipconfig /all":
        return parse_ipconfig_text(str(data.get("text") or ""))
    interfaces = _ipconfig_nettcpip(data) if source == "NetTCPIP" else _ipconfig_wmi(data)
    return netconfig(interfaces, data["source"])


def _enabled(value: Any, names: Mapping[str, bool]) -> bool | None:
    """An enum as ConvertTo-Json writes it (an integer) or as text; None when unknown."""
    if isinstance(value, bool):
        return value
    number = winjson.integer(value)
    if number is not None:
        return bool(number)
    if isinstance(value, str):
        return names.get(value.strip().lower())
    return None


_DHCP = {"enabled": True, "disabled": False, "true": True, "false": False}


def _by_index(rows: Sequence[Mapping[str, Any]], field: str = "InterfaceIndex") -> dict[int, list]:
    grouped: dict[int, list] = {}
    for row in rows:
        index = winjson.integer(row.get(field))
        if index is not None:
            grouped.setdefault(index, []).append(row)
    return grouped


_PREFIX_ORIGIN_DHCP = 3  # PrefixOrigin enum: Other 0, Manual 1, WellKnown 2, Dhcp 3, RA 4


def _nettcpip_address(row: Mapping[str, Any]) -> Address | None:
    text = winjson.text(row, "IPAddress")
    length = winjson.integer(row.get("PrefixLength"))
    if not winjson.ipv4s(text) or length is None:
        return None
    origin = row.get("PrefixOrigin")
    dynamic = winjson.integer(origin) == _PREFIX_ORIGIN_DHCP or str(origin).lower() == "dhcp"
    return Address(address=text, prefix=length, dynamic=dynamic)


def _ipconfig_nettcpip(data: Mapping[str, Any]) -> list[Interface]:
    adapters = {
        i: rows[0] for i, rows in _by_index(winjson.rows(data, "adapters"), "ifIndex").items()
    }
    addresses = _by_index(winjson.rows(data, "addresses"))
    ipifs = {i: rows[0] for i, rows in _by_index(winjson.rows(data, "interfaces")).items()}
    routes = _by_index(winjson.rows(data, "routes"))
    dns = _by_index(winjson.rows(data, "dns"))
    interfaces = []
    # Adapters without an IPv4 interface stay in the list: that is what "TCP/IP unbound" looks like.
    for index in sorted(set(ipifs) | set(adapters)):
        ipif, adapter = ipifs.get(index, {}), adapters.get(index)
        ipv4 = tuple(a for a in map(_nettcpip_address, addresses.get(index, [])) if a)
        name = winjson.text(ipif, "InterfaceAlias") or winjson.text(adapter or {}, "Name")
        loopback = name.lower().startswith("loopback") or any(
            a.address.startswith("127.") for a in ipv4
        )
        up = (
            adapter_up(adapter.get("Status"))
            if adapter
            else winjson.integer(ipif.get("ConnectionState")) == 1
        )
        interfaces.append(
            Interface(
                name=name,
                up=up,
                loopback=loopback,
                ipv4=ipv4,
                dhcp=_enabled(ipif.get("Dhcp"), _DHCP) if ipif else None,
                gateways=unique(
                    [g for r in routes.get(index, []) for g in winjson.ipv4s(r.get("NextHop"))]
                ),
                dns=unique(
                    [d for r in dns.get(index, []) for d in winjson.ipv4s(r.get("ServerAddresses"))]
                ),
                mac=winjson.text(adapter or {}, "MacAddress"),
                description=winjson.text(adapter or {}, "InterfaceDescription"),
            )
        )
    return interfaces


def _wmi_addresses(config: Mapping[str, Any], dhcp: bool | None) -> tuple[Address, ...]:
    """IPAddress[] and IPSubnet[] run in parallel; IPv6 entries ("fe80::...", "64") are mixed in."""
    out = []
    for text, mask in zip(
        winjson.strings(config.get("IPAddress")),
        winjson.strings(config.get("IPSubnet")),
        strict=False,
    ):
        length = prefix(mask)
        if winjson.ipv4s(text) and length is not None and "." in mask:
            out.append(Address(address=text, prefix=length, dynamic=dhcp))
    return tuple(out)


def _ipconfig_wmi(data: Mapping[str, Any]) -> list[Interface]:
    configs = {guid(row.get("SettingID")): row for row in winjson.rows(data, "configs")}
    interfaces = []
    seen = set()
    for adapter in winjson.rows(data, "adapters"):
        mine = guid(adapter.get("GUID"))
        seen.add(mine)
        interfaces.append(_wmi_interface(configs.get(mine, {}), adapter))
    for key, config in configs.items():
        if key not in seen:
            interfaces.append(_wmi_interface(config, {}))
    return interfaces


def _wmi_interface(config: Mapping[str, Any], adapter: Mapping[str, Any]) -> Interface:
    dhcp = _enabled(config.get("DHCPEnabled"), _DHCP) if config else None
    return Interface(
        name=winjson.text(adapter, "NetConnectionID") or winjson.text(config, "Description"),
        up=wmi_connected(adapter.get("NetConnectionStatus")) if adapter else bool(config),
        ipv4=_wmi_addresses(config, dhcp),
        dhcp=dhcp,
        gateways=unique(winjson.ipv4s(config.get("DefaultIPGateway"))),
        dns=unique(winjson.ipv4s(config.get("DNSServerSearchOrder"))),
        mac=winjson.text(adapter, "MACAddress") or winjson.text(config, "MACAddress"),
        description=winjson.text(adapter, "Description") or winjson.text(config, "Description"),
    )
