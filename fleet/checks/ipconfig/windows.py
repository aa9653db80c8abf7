"""ipconfig on Windows: addresses, DHCP, gateways and DNS per adapter (ipconfig.ps1 beside).

NetTCPIP where it exists, WMI on PowerShell 2.0 (Server 2008 R2) or when CIM
is broken, and, when the WMI repository is broken too, the text of
``ipconfig /all``: jc reads the English output, a small table of labels reads
French and German.  Hidden and cluster adapters are marked ``internal``; the
default gateways come lowest metric first; NetTCPIP gives each address its
state (Duplicate, Tentative...), which WMI does not have.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from fleet.checks import winjson
from fleet.checks.base import Step, StepOutput
from fleet.checks.facts import Address, DefaultRoute, Interface, NetConfig
from fleet.checks.ipconfig.text import parse_ipconfig_text
from fleet.checks.net.windows import (
    adapter_up,
    address_state,
    fallback_source,
    guid,
    internal_reason,
    netconfig,
    prefix,
    unique,
    wmi_connected,
)

KEY = "ipconfig"
SOURCES = ("NetTCPIP", "Win32_NetworkAdapterConfiguration", "ipconfig /all")


def steps(params: Mapping[str, Any]) -> list[Step]:
    return [Step(key=KEY, script="ipconfig/ipconfig.ps1")]


def parse(outputs: Mapping[str, StepOutput]) -> NetConfig:
    """Addresses, DHCP, gateways and DNS per adapter (NetTCPIP, or WMI on PowerShell 2.0)."""
    data = winjson.load(winjson.output(outputs, KEY))
    source = winjson.source(data, SOURCES)
    if source == "ipconfig /all":
        return _from_text(data)
    if source == "NetTCPIP":
        interfaces, routes = _ipconfig_nettcpip(data)
    else:
        interfaces, routes = _ipconfig_wmi(data)
    return netconfig(interfaces, fallback_source(source, data), routes)


def _from_text(data: Mapping[str, Any]) -> NetConfig:
    parsed = parse_ipconfig_text(str(data.get("text") or ""))
    # The text names no hidden flag; the cluster's adapter is known by its description.
    interfaces = tuple(
        replace(i, internal=i.internal or internal_reason(i.description)) for i in parsed.interfaces
    )
    return replace(parsed, interfaces=interfaces, source=fallback_source(parsed.source, data))


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
    state = address_state(row.get("AddressState"))
    return Address(address=text, prefix=length, dynamic=dynamic, state=state)


def _metric(*parts: Any) -> int | None:
    numbers = [winjson.integer(p) for p in parts]
    return None if None in numbers else sum(n for n in numbers if n is not None)


def _nettcpip_routes(
    data: Mapping[str, Any], ipifs: Mapping[int, Mapping[str, Any]], names: Mapping[int, str]
) -> tuple[dict[int, list[str]], list[DefaultRoute]]:
    """Default routes per interface, and each with its metric: RouteMetric + InterfaceMetric."""
    gateways: dict[int, list[str]] = {}
    routes = []
    for index, rows in _by_index(winjson.rows(data, "routes")).items():
        for row in rows:
            for gateway in winjson.ipv4s(row.get("NextHop")):
                gateways.setdefault(index, []).append(gateway)
                interface_metric = ipifs.get(index, {}).get("InterfaceMetric")
                metric = _metric(row.get("RouteMetric"), interface_metric)
                routes.append(DefaultRoute(gateway, names.get(index, ""), metric))
    return gateways, routes


def _ipconfig_nettcpip(data: Mapping[str, Any]) -> tuple[list[Interface], list[DefaultRoute]]:
    adapters = {
        i: rows[0] for i, rows in _by_index(winjson.rows(data, "adapters"), "ifIndex").items()
    }
    addresses = _by_index(winjson.rows(data, "addresses"))
    ipifs = {i: rows[0] for i, rows in _by_index(winjson.rows(data, "interfaces")).items()}
    names = {
        index: winjson.text(ipifs.get(index, {}), "InterfaceAlias")
        or winjson.text(adapters.get(index, {}), "Name")
        for index in set(ipifs) | set(adapters)
    }
    gateways, routes = _nettcpip_routes(data, ipifs, names)
    dns = _by_index(winjson.rows(data, "dns"))
    interfaces = []
    # Adapters without an IPv4 interface stay in the list: that is what "TCP/IP unbound" looks like.
    for index in sorted(set(ipifs) | set(adapters)):
        ipif, adapter = ipifs.get(index, {}), adapters.get(index)
        ipv4 = tuple(a for a in map(_nettcpip_address, addresses.get(index, [])) if a)
        name = names[index]
        description = winjson.text(adapter or {}, "InterfaceDescription")
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
                gateways=unique(gateways.get(index, [])),
                dns=unique(
                    [d for r in dns.get(index, []) for d in winjson.ipv4s(r.get("ServerAddresses"))]
                ),
                mac=winjson.text(adapter or {}, "MacAddress"),
                description=description,
                internal=internal_reason(
                    description,
                    winjson.text(adapter or {}, "ComponentID"),
                    (adapter or {}).get("Hidden") is True,
                ),
            )
        )
    return interfaces, routes


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


def _wmi_routes(interface: Interface, config: Mapping[str, Any]) -> list[DefaultRoute]:
    """DefaultIPGateway[] with GatewayCostMetric[] in parallel, plus the IPConnectionMetric."""
    costs = winjson.strings(config.get("GatewayCostMetric"))
    routes = []
    for k, gateway in enumerate(winjson.strings(config.get("DefaultIPGateway"))):
        if winjson.ipv4s(gateway):
            cost = costs[k] if k < len(costs) else None
            metric = _metric(cost, config.get("IPConnectionMetric"))
            routes.append(DefaultRoute(gateway, interface.name, metric))
    return routes


def _ipconfig_wmi(data: Mapping[str, Any]) -> tuple[list[Interface], list[DefaultRoute]]:
    """WMI's view: no address state (Win32_NetworkAdapterConfiguration has no such field)."""
    configs = {guid(row.get("SettingID")): row for row in winjson.rows(data, "configs")}
    interfaces = []
    routes: list[DefaultRoute] = []
    seen = set()
    pairs = []
    for adapter in winjson.rows(data, "adapters"):
        mine = guid(adapter.get("GUID"))
        seen.add(mine)
        pairs.append((configs.get(mine, {}), adapter))
    pairs += [(config, {}) for key, config in configs.items() if key not in seen]
    for config, adapter in pairs:
        interface = _wmi_interface(config, adapter)
        interfaces.append(interface)
        routes += _wmi_routes(interface, config)
    return interfaces, routes


def _wmi_interface(config: Mapping[str, Any], adapter: Mapping[str, Any]) -> Interface:
    dhcp = _enabled(config.get("DHCPEnabled"), _DHCP) if config else None
    description = winjson.text(adapter, "Description") or winjson.text(config, "Description")
    return Interface(
        name=winjson.text(adapter, "NetConnectionID") or winjson.text(config, "Description"),
        up=wmi_connected(adapter.get("NetConnectionStatus")) if adapter else bool(config),
        ipv4=_wmi_addresses(config, dhcp),
        dhcp=dhcp,
        gateways=unique(winjson.ipv4s(config.get("DefaultIPGateway"))),
        dns=unique(winjson.ipv4s(config.get("DNSServerSearchOrder"))),
        mac=winjson.text(adapter, "MACAddress") or winjson.text(config, "MACAddress"),
        description=description,
        internal=internal_reason(description),
    )
