"""ipconfig on Windows: addresses, DHCP, gateways and DNS per adapter (ipconfig.ps1 beside).

NetTCPIP where it exists, WMI on PowerShell 2.0 (Server 2008 R2) or when CIM
is broken, and, when the WMI repository is broken too, the text of
``ipconfig /all``: jc reads the English output, a small table of labels reads
French and German.  Hidden and cluster adapters are marked ``internal``; the
default gateways come lowest metric first; NetTCPIP gives each address its
state (Duplicate, Tentative...), which WMI does not have.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from fleet.checks import winjson
from fleet.checks.base import Step, StepOutput
from fleet.checks.facts import Address, DefaultRoute, Interface, NetConfig
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
from fleet.errors import ParseError

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


# --------------------------------------------------------------------------- text fallbacks

# Labels of ipconfig /all, compared with only their ASCII letters and digits kept, so the
# same key matches "réseau" and its cp850-through-cp1252 mojibake (0x82 shown as U+201A).
_IPCONFIG_LABELS = {
    "ipv4": (
        "ipv4address",
        "ipaddress",
        "adresseipv4",
        "ipv4adresse",
        "autoconfigurationipv4address",
        "adresseipv4deconfigurationautomatique",
        "autokonfigurationipv4adresse",
    ),
    "mask": ("subnetmask", "masquedesousrseau", "subnetzmaske"),
    "gateway": ("defaultgateway", "passerellepardfaut", "standardgateway"),
    "dhcp": ("dhcpenabled", "dhcpactiv", "dhcpaktiviert"),
    "dns": ("dnsservers", "serveursdns", "dnsserver"),
    "description": ("description", "beschreibung"),
    "mac": ("physicaladdress", "adressephysique", "physischeadresse"),
    "media": ("mediastate", "statutdumdia", "medienstatus"),
}
_LABEL_OF = {key: field for field, keys in _IPCONFIG_LABELS.items() for key in keys}
_IPCONFIG_LINE = re.compile(r"^ {3}(?P<label>\S.*?)[ .\u00a0\u00ff]*: ?(?P<value>.*)$")
_ADAPTER_HEADER = re.compile(r"^(?P<kind>\S.*?)\s*:\s*$")
_YES = ("yes", "oui", "ja")


def _label_key(label: str) -> str:
    return re.sub(r"[^a-z0-9]", "", label.lower().encode("ascii", "ignore").decode())


def parse_ipconfig_text(text: str) -> NetConfig:
    """``ipconfig /all`` text, the last resort.  jc reads the English output; a small
    table of labels reads French and German (and their code-page mojibake)."""
    import jc  # imported here: only this fallback needs it

    parsed = jc.parse("ipconfig", text, quiet=True)
    if isinstance(parsed, dict) and parsed.get("adapters"):
        interfaces = [_jc_interface(a) for a in parsed["adapters"]]
        return netconfig(interfaces, "ipconfig /all")
    adapters = _localised_adapters(text)
    if not adapters:
        raise ParseError("no adapter found in the ipconfig output")
    return netconfig([_text_interface(name, f) for name, f in adapters], "ipconfig /all")


def _jc_interface(adapter: Mapping[str, Any]) -> Interface:
    ipv4 = tuple(
        Address(
            address=a["address"],
            prefix=prefix(a.get("subnet_mask") or "") or 0,
            dynamic=bool(adapter.get("dhcp_enabled")),
        )
        for a in adapter.get("ipv4_addresses") or ()
        if winjson.ipv4s(a.get("address"))
    )
    return Interface(
        name=str(adapter.get("name") or ""),
        up=not adapter.get("media_state"),  # only a disconnected adapter shows Media State
        ipv4=ipv4,
        dhcp=adapter.get("dhcp_enabled"),
        gateways=unique(winjson.ipv4s(adapter.get("default_gateways"))),
        dns=unique(winjson.ipv4s(adapter.get("dns_servers"))),
        mac=str(adapter.get("physical_address") or ""),
        description=str(adapter.get("description") or ""),
    )


def _localised_adapters(text: str) -> list[tuple[str, dict[str, list[str]]]]:
    adapters: list[tuple[str, dict[str, list[str]]]] = []
    field = ""
    for line in text.splitlines():
        header = _ADAPTER_HEADER.match(line)
        if header:
            adapters.append((header.group("kind"), {}))
            field = ""
            continue
        if not adapters or not line.strip():
            continue
        match = _IPCONFIG_LINE.match(line)
        if match:
            field = _LABEL_OF.get(_label_key(match.group("label")), "")
            value = match.group("value").strip()
        elif line.startswith("    "):  # a continuation line (more DNS servers)
            value = line.strip()
        else:
            continue
        if field and value:
            adapters[-1][1].setdefault(field, []).append(value)
    return [(name, fields) for name, fields in adapters if fields]


def _strip_status(value: str) -> str:
    return value.split("(")[0].strip()  # "10.0.0.5(Preferred)" / "(Préféré)"


def _text_interface(header: str, fields: Mapping[str, list[str]]) -> Interface:
    addresses = [_strip_status(v) for v in fields.get("ipv4", [])]
    masks = fields.get("mask", [])
    dhcp_text = fields.get("dhcp", [""])[0].lower()
    ipv4 = tuple(
        Address(address=a, prefix=prefix(m) or 0)
        for a, m in zip(addresses, masks, strict=False)
        if winjson.ipv4s(a)
    )
    return Interface(
        name=header.split(" ", 2)[-1] if " " in header else header,
        up="media" not in fields,
        ipv4=ipv4,
        dhcp=dhcp_text.startswith(_YES) if dhcp_text else None,
        gateways=unique(winjson.ipv4s([_strip_status(v) for v in fields.get("gateway", [])])),
        dns=unique(winjson.ipv4s(fields.get("dns", []))),
        mac=fields.get("mac", [""])[0],
        description=fields.get("description", [""])[0],
    )
