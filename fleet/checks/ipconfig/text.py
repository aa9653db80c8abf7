"""The text of ``ipconfig /all``: the last resort when WMI is broken (ipconfig.ps1)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from fleet.checks import winjson
from fleet.checks.facts import Address, Interface, NetConfig
from fleet.checks.net.windows import netconfig, prefix, unique
from fleet.errors import ParseError

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
