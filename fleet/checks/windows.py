"""The Windows platform module: what the checks run over WinRM, and how to read it.

``compose`` builds ONE PowerShell script per host per audit.  It carries the
step scripts of ``fleet/checks/ps1/`` as text, runs every step side by side in
a runspace pool (one stuck WMI call cannot hide the others' results), and
prints each step's JSON as base64 of UTF-8 inside the nonce-framed sections of
``fleet.checks.batch``.  Parameters reach the scripts as DATA: each value is
base64 in a single-quoted literal, decoded on the host into a hashtable.

The script runs on Windows PowerShell 2.0 (Server 2008 R2, no ConvertTo-Json,
no NetTCPIP module: WMI and the registry instead) and 5.1.  The ``parse_*``
functions turn its JSON into ``fleet.checks.facts`` and survive
ConvertTo-Json's quirks: one object where an array was expected, enums as
integers, ``-Depth`` truncation (arrays joined into one string).  Two
last-resort text parsers read ``ipconfig /all`` and ``ping.exe`` output,
English or localised.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import re
from collections.abc import Mapping, Sequence
from functools import cache
from importlib import resources
from typing import Any

from fleet.checks.base import Step, StepOutput
from fleet.checks.facts import (
    SMTP_OUTCOMES,
    Address,
    Interface,
    NetConfig,
    PingResult,
    SmtpProbe,
)
from fleet.errors import ParseError

SCRIPTS = ("binding.ps1", "ipconfig.ps1", "ping.ps1", "smtp.ps1")
GATEWAY = "gateway"  # the ping target that means "this host's default gateway"

_NONCE = re.compile(r"[0-9A-Za-z]{8,64}")
_PARAM_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_HERE_STRING_END = re.compile(r"^'@", re.MULTILINE)

# --------------------------------------------------------------------------- compose


@cache
def script_text(name: str) -> str:
    """A step script of ``fleet/checks/ps1/``, minified (comments and indentation dropped).

    Minifying keeps the composed script well under the ~32k characters of a
    ``-EncodedCommand`` line; the scripts are written so that no statement
    spans a line whose indentation matters (no here-strings inside).
    """
    if name not in (*SCRIPTS, "prelude.ps1"):
        raise ValueError(f"unknown Windows step script {name!r}")
    text = resources.files("fleet.checks.ps1").joinpath(name).read_text(encoding="utf-8")
    lines = (line.strip() for line in text.splitlines())
    body = "\n".join(line for line in lines if line and not line.startswith("#"))
    if _HERE_STRING_END.search(body):
        raise ValueError(
            f"{name} contains a line starting with '@, which would end its here-string"
        )
    return body


def _param_value(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, (str, int, float)):
        return str(value)
    raise ValueError(f"a Windows step parameter must be a string or a number, not {value!r}")


def _params_literal(params: Mapping[str, Any]) -> str:
    """``@{name = (fleetArg 'base64')...}``: values are base64 data, never PowerShell code."""
    items = []
    for name in sorted(params):
        if not _PARAM_NAME.fullmatch(name):
            raise ValueError(f"bad Windows step parameter name {name!r}")
        b64 = base64.b64encode(_param_value(params[name]).encode("utf-8")).decode("ascii")
        items.append(f"{name} = (fleetArg '{b64}')")
    return "@{" + "; ".join(items) + "}"


def compose(steps: Sequence[Step], nonce: str, step_timeout: float) -> str:
    """The one PowerShell script that runs ``steps`` and prints their framed sections."""
    if not _NONCE.fullmatch(nonce):
        raise ValueError("the nonce must be 8-64 letters or digits")
    used = sorted({step.script for step in steps})
    lines = [
        f"# fleet audit {nonce}",
        # Progress records would reach stderr as CLIXML; errors in the frame itself stop it
        # loudly (the sections then come back missing), the steps set their own preference.
        "$ProgressPreference = 'SilentlyContinue'",
        "$ErrorActionPreference = 'Stop'",
        script_text("prelude.ps1"),
        "$fleetCode = @{}",
    ]
    for name in used:
        lines += [f"$fleetCode['{name}'] = @'", script_text(name), "'@"]
    lines.append("$fleetSteps = @(")
    lines += [f", @('{step.script}', {_params_literal(step.params)})" for step in steps]
    lines.append(")")
    ms = max(1000, round(step_timeout * 1000))
    lines.append(f"fleetRun $fleetCode $fleetSteps '{nonce}' {ms}")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- steps


def binding_steps(params: Mapping[str, Any]) -> list[Step]:
    return [Step(key="binding", script="binding.ps1")]


def ipconfig_steps(params: Mapping[str, Any]) -> list[Step]:
    return [Step(key="ipconfig", script="ipconfig.ps1")]


def _targets(params: Mapping[str, Any], *, gateway: bool) -> list[str]:
    targets = [GATEWAY] if gateway else []
    for target in params.get("targets") or ():
        if str(target) not in targets:
            targets.append(str(target))
    return targets


def ping_steps(params: Mapping[str, Any]) -> list[Step]:
    """One step per target; ``gateway`` (when asked) is resolved on the host itself."""
    count = int(params.get("count", 2))
    timeout_ms = max(1, round(float(params.get("timeout", 2)) * 1000))
    return [
        Step(
            key=f"ping:{target}",
            script="ping.ps1",
            target=target,
            params={"target": target, "echoes": count, "timeout_ms": timeout_ms},
        )
        for target in _targets(params, gateway=bool(params.get("gateway", True)))
    ]


def smtp_steps(params: Mapping[str, Any]) -> list[Step]:
    port = int(params.get("port", 25))
    timeout_ms = max(1, round(float(params.get("timeout", 5)) * 1000))
    helo = str(params.get("helo", "fleet.invalid"))
    return [
        Step(
            key=f"smtp:{target}",
            script="smtp.ps1",
            target=target,
            params={"target": target, "port": port, "timeout_ms": timeout_ms, "helo": helo},
        )
        for target in _targets(params, gateway=False)
    ]


# --------------------------------------------------------------------------- JSON helpers


def _load(output: StepOutput) -> dict[str, Any]:
    """The step's JSON object; ParseError when it is missing, not JSON, or the step failed."""
    if output.exit_status is None:
        raise ParseError(f"{output.key}: no output came back for this step")
    try:
        data = json.loads(output.stdout.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ParseError(f"{output.key}: output is not JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise ParseError(f"{output.key}: expected a JSON object, got {type(data).__name__}")
    if set(data) == {"error"}:
        raise ParseError(f"{output.key}: the step failed on the host: {data['error']}")
    return data


def _rows(data: Mapping[str, Any], field: str) -> list[dict[str, Any]]:
    """A list of objects; ConvertTo-Json gives one object (not a list) for a one-row pipeline."""
    value = data.get(field)
    rows = value if isinstance(value, list) else [] if value is None else [value]
    for row in rows:
        if not isinstance(row, dict):
            # -Depth truncation turns a nested object into its type name or "@{...}" text.
            raise ParseError(f"{field}: expected objects, got {str(row)[:60]!r} (truncated?)")
    return rows


def _strings(value: Any) -> list[str]:
    """A list of strings from a list, a single string, or an array -Depth joined with spaces."""
    if value is None:
        return []
    if isinstance(value, list):
        return [str(v) for v in value if v is not None]
    return str(value).split()


def _ipv4s(value: Any) -> list[str]:
    out = []
    for text in _strings(value):
        try:
            addr = ipaddress.ip_address(text)
        except ValueError:
            continue
        if addr.version == 4 and not addr.is_unspecified:
            out.append(text)
    return out


def _text(row: Mapping[str, Any], *names: str) -> str:
    for name in names:
        value = row.get(name)
        if value is not None:
            return str(value)
    return ""


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.lstrip("-").isdigit():
        return int(value)
    return None


def _enabled(value: Any, names: Mapping[str, bool]) -> bool | None:
    """An enum as ConvertTo-Json writes it (an integer) or as text; None when unknown."""
    if isinstance(value, bool):
        return value
    number = _int(value)
    if number is not None:
        return bool(number)
    if isinstance(value, str):
        return names.get(value.strip().lower())
    return None


_DHCP = {"enabled": True, "disabled": False, "true": True, "false": False}
# Get-NetAdapter Status is text ("Up"); ifOperStatus as an integer is 1 for up.
_ADAPTER_UP = {"up": True, "connected": True}


def _adapter_up(value: Any) -> bool:
    if isinstance(value, str) and not value.strip().isdigit():
        return _ADAPTER_UP.get(value.strip().lower(), False)
    return _int(value) == 1


def _wmi_connected(value: Any) -> bool:
    return _int(value) == 2  # Win32_NetworkAdapter.NetConnectionStatus 2 = Connected


def _guid(value: Any) -> str:
    match = re.search(
        r"\{?([0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-"
        r"[0-9A-Fa-f]{12})\}?",
        str(value or ""),
    )
    return match.group(1).upper() if match else ""


def _prefix(mask_or_length: str) -> int | None:
    try:
        if "." in mask_or_length:
            return ipaddress.IPv4Network(f"0.0.0.0/{mask_or_length}").prefixlen
        return int(mask_or_length)
    except ValueError:
        return None


def _unique(items: Sequence[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


def _source(data: Mapping[str, Any], known: Sequence[str]) -> str:
    source = data.get("source")
    if source not in known:
        raise ParseError(f"unknown source {source!r}: expected one of {', '.join(known)}")
    return str(source)


def _output(outputs: Mapping[str, StepOutput], key: str) -> StepOutput:
    try:
        return outputs[key]
    except KeyError:
        raise ParseError(f"no {key!r} step output") from None


# --------------------------------------------------------------------------- binding


def parse_binding(outputs: Mapping[str, StepOutput]) -> NetConfig:
    """Adapters with their protocol bindings (ComponentID -> enabled)."""
    data = _load(_output(outputs, "binding"))
    if _source(data, ("Get-NetAdapterBinding", "registry")) == "registry":
        return _binding_from_registry(data)
    bindings: dict[str, dict[str, bool]] = {}
    for row in _rows(data, "bindings"):
        component = _text(row, "ComponentID").lower()
        if component:
            bindings.setdefault(_text(row, "Name"), {})[component] = bool(row.get("Enabled"))
    interfaces = tuple(
        Interface(
            name=_text(row, "Name"),
            up=_adapter_up(row.get("Status")),
            mac=_text(row, "MacAddress"),
            description=_text(row, "InterfaceDescription"),
            bindings=tuple(sorted(bindings.get(_text(row, "Name"), {}).items())),
        )
        for row in _rows(data, "adapters")
    )
    return NetConfig(interfaces=interfaces, source="Get-NetAdapterBinding")


def _binding_from_registry(data: Mapping[str, Any]) -> NetConfig:
    bind = data.get("bind")
    if not isinstance(bind, dict):
        raise ParseError(f"bind: expected an object, got {str(bind)[:60]!r}")
    # Linkage\Bind entries name devices: \Device\{GUID}, \Device\Tcpip_{GUID}, \Device\NdisWanIp.
    bound = {
        component.lower(): {_guid(e) for e in _strings(v)} - {""} for component, v in bind.items()
    }
    interfaces = []
    for row in _rows(data, "adapters"):
        guid = _guid(row.get("GUID"))
        interfaces.append(
            Interface(
                name=_text(row, "NetConnectionID"),
                up=_wmi_connected(row.get("NetConnectionStatus")),
                mac=_text(row, "MACAddress"),
                description=_text(row, "Description"),
                bindings=tuple(sorted((c, guid in guids) for c, guids in bound.items())),
            )
        )
    return NetConfig(interfaces=tuple(interfaces), source="registry Linkage\\Bind")


# --------------------------------------------------------------------------- ipconfig


def parse_ipconfig(outputs: Mapping[str, StepOutput]) -> NetConfig:
    """Addresses, DHCP, gateways and DNS per adapter (NetTCPIP, or WMI on PowerShell 2.0)."""
    data = _load(_output(outputs, "ipconfig"))
    source = _source(data, ("NetTCPIP", "Win32_NetworkAdapterConfiguration", "ipconfig /all"))
    if source == "ipconfig /all":
        return parse_ipconfig_text(str(data.get("text") or ""))
    interfaces = _ipconfig_nettcpip(data) if source == "NetTCPIP" else _ipconfig_wmi(data)
    return _netconfig(interfaces, data["source"])


def _netconfig(interfaces: Sequence[Interface], source: str) -> NetConfig:
    return NetConfig(
        interfaces=tuple(interfaces),
        default_gateways=_unique([g for i in interfaces for g in i.gateways]),
        dns_servers=_unique([d for i in interfaces for d in i.dns]),
        source=source,
    )


def _by_index(rows: Sequence[Mapping[str, Any]], field: str = "InterfaceIndex") -> dict[int, list]:
    grouped: dict[int, list] = {}
    for row in rows:
        index = _int(row.get(field))
        if index is not None:
            grouped.setdefault(index, []).append(row)
    return grouped


_PREFIX_ORIGIN_DHCP = 3  # PrefixOrigin enum: Other 0, Manual 1, WellKnown 2, Dhcp 3, RA 4


def _nettcpip_address(row: Mapping[str, Any]) -> Address | None:
    text = _text(row, "IPAddress")
    length = _int(row.get("PrefixLength"))
    if not _ipv4s(text) or length is None:
        return None
    origin = row.get("PrefixOrigin")
    dynamic = _int(origin) == _PREFIX_ORIGIN_DHCP or str(origin).lower() == "dhcp"
    return Address(address=text, prefix=length, dynamic=dynamic)


def _ipconfig_nettcpip(data: Mapping[str, Any]) -> list[Interface]:
    adapters = {i: rows[0] for i, rows in _by_index(_rows(data, "adapters"), "ifIndex").items()}
    addresses = _by_index(_rows(data, "addresses"))
    ipifs = {i: rows[0] for i, rows in _by_index(_rows(data, "interfaces")).items()}
    routes = _by_index(_rows(data, "routes"))
    dns = _by_index(_rows(data, "dns"))
    interfaces = []
    # Adapters without an IPv4 interface stay in the list: that is what "TCP/IP unbound" looks like.
    for index in sorted(set(ipifs) | set(adapters)):
        ipif, adapter = ipifs.get(index, {}), adapters.get(index)
        ipv4 = tuple(a for a in map(_nettcpip_address, addresses.get(index, [])) if a)
        name = _text(ipif, "InterfaceAlias") or _text(adapter or {}, "Name")
        loopback = name.lower().startswith("loopback") or any(
            a.address.startswith("127.") for a in ipv4
        )
        up = (
            _adapter_up(adapter.get("Status"))
            if adapter
            else _int(ipif.get("ConnectionState")) == 1
        )
        interfaces.append(
            Interface(
                name=name,
                up=up,
                loopback=loopback,
                ipv4=ipv4,
                dhcp=_enabled(ipif.get("Dhcp"), _DHCP) if ipif else None,
                gateways=_unique(
                    [g for r in routes.get(index, []) for g in _ipv4s(r.get("NextHop"))]
                ),
                dns=_unique(
                    [d for r in dns.get(index, []) for d in _ipv4s(r.get("ServerAddresses"))]
                ),
                mac=_text(adapter or {}, "MacAddress"),
                description=_text(adapter or {}, "InterfaceDescription"),
            )
        )
    return interfaces


def _wmi_addresses(config: Mapping[str, Any], dhcp: bool | None) -> tuple[Address, ...]:
    """IPAddress[] and IPSubnet[] run in parallel; IPv6 entries ("fe80::...", "64") are mixed in."""
    out = []
    for text, mask in zip(
        _strings(config.get("IPAddress")), _strings(config.get("IPSubnet")), strict=False
    ):
        prefix = _prefix(mask)
        if _ipv4s(text) and prefix is not None and "." in mask:
            out.append(Address(address=text, prefix=prefix, dynamic=dhcp))
    return tuple(out)


def _ipconfig_wmi(data: Mapping[str, Any]) -> list[Interface]:
    configs = {_guid(row.get("SettingID")): row for row in _rows(data, "configs")}
    interfaces = []
    seen = set()
    for adapter in _rows(data, "adapters"):
        guid = _guid(adapter.get("GUID"))
        seen.add(guid)
        interfaces.append(_wmi_interface(configs.get(guid, {}), adapter))
    for guid, config in configs.items():
        if guid not in seen:
            interfaces.append(_wmi_interface(config, {}))
    return interfaces


def _wmi_interface(config: Mapping[str, Any], adapter: Mapping[str, Any]) -> Interface:
    dhcp = _enabled(config.get("DHCPEnabled"), _DHCP) if config else None
    return Interface(
        name=_text(adapter, "NetConnectionID") or _text(config, "Description"),
        up=_wmi_connected(adapter.get("NetConnectionStatus")) if adapter else bool(config),
        ipv4=_wmi_addresses(config, dhcp),
        dhcp=dhcp,
        gateways=_unique(_ipv4s(config.get("DefaultIPGateway"))),
        dns=_unique(_ipv4s(config.get("DNSServerSearchOrder"))),
        mac=_text(adapter, "MACAddress") or _text(config, "MACAddress"),
        description=_text(adapter, "Description") or _text(config, "Description"),
    )


# --------------------------------------------------------------------------- ping

# Win32_PingStatus.StatusCode values worth naming (IP_STATUS of the ICMP API).
PING_STATUS = {
    11002: "network unreachable",
    11003: "host unreachable",
    11010: "timed out",
    11013: "TTL expired in transit",
    11050: "general failure (no route from this host?)",
}


def _ping_error(replies: Sequence[Mapping[str, Any]]) -> str:
    """Why no reply came back, from the first failed reply."""
    for reply in replies:
        if _int(reply.get("resolution")) not in (None, 0) or reply.get("status") is None:
            return "unknown host"
        code = _int(reply.get("status"))
        if code:
            return PING_STATUS.get(code, f"ping status {code}")
    return "no reply"


def parse_ping(output: StepOutput, target: str) -> PingResult:
    """One target's Win32_PingStatus replies: StatusCode 0 is a reply, anything else a loss."""
    data = _load(output)
    if data.get("source") == "ping.exe":  # the fallback when WMI is broken
        return parse_ping_text(str(data.get("text") or ""), target)
    if data.get("error") and not data.get("replies"):
        return PingResult(target=target, transmitted=0, received=0, error=str(data["error"]))
    replies = _rows(data, "replies")
    if not replies:
        raise ParseError(f"{output.key}: no ping replies reported")
    times = [
        float(_int(r.get("time")) or 0)
        for r in replies
        if _int(r.get("status")) == 0 and r.get("status") is not None
    ]
    received = len(times)
    return PingResult(
        target=target,
        transmitted=len(replies),
        received=received,
        rtt_min_ms=min(times) if times else None,
        rtt_avg_ms=round(sum(times) / len(times), 3) if times else None,
        rtt_max_ms=max(times) if times else None,
        address=next((str(r["address"]) for r in replies if r.get("address")), "")
        or _text(data, "address"),
        error="" if received else _ping_error(replies),
    )


# --------------------------------------------------------------------------- smtp


def parse_smtp(output: StepOutput, target: str) -> SmtpProbe:
    """The SMTP conversation the host had with ``target``."""
    data = _load(output)
    outcome = data.get("outcome")
    if outcome not in SMTP_OUTCOMES:
        raise ParseError(f"{output.key}: unknown smtp outcome {outcome!r}")
    port = _int(data.get("port"))
    if port is None:
        raise ParseError(f"{output.key}: no port in the smtp report")
    connect_ms = data.get("connect_ms")
    return SmtpProbe(
        target=target,
        port=port,
        outcome=str(outcome),
        address=_text(data, "address"),
        greeting_code=_int(data.get("code")),
        greeting=tuple(_lines(data.get("greeting"))),
        ehlo=tuple(_lines(data.get("ehlo"))),
        starttls=data.get("starttls") is True,
        error=_text(data, "error"),
        connect_ms=round(float(connect_ms), 3) if isinstance(connect_ms, (int, float)) else None,
    )


def _lines(value: Any) -> list[str]:
    """Reply lines: a list, or one string when there was a single line."""
    if value is None:
        return []
    if isinstance(value, list):
        return [str(v) for v in value]
    return [str(value)]


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
        return _netconfig(interfaces, "ipconfig /all")
    adapters = _localised_adapters(text)
    if not adapters:
        raise ParseError("no adapter found in the ipconfig output")
    return _netconfig([_text_interface(name, f) for name, f in adapters], "ipconfig /all")


def _jc_interface(adapter: Mapping[str, Any]) -> Interface:
    ipv4 = tuple(
        Address(
            address=a["address"],
            prefix=_prefix(a.get("subnet_mask") or "") or 0,
            dynamic=bool(adapter.get("dhcp_enabled")),
        )
        for a in adapter.get("ipv4_addresses") or ()
        if _ipv4s(a.get("address"))
    )
    return Interface(
        name=str(adapter.get("name") or ""),
        up=not adapter.get("media_state"),  # only a disconnected adapter shows Media State
        ipv4=ipv4,
        dhcp=adapter.get("dhcp_enabled"),
        gateways=_unique(_ipv4s(adapter.get("default_gateways"))),
        dns=_unique(_ipv4s(adapter.get("dns_servers"))),
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
        Address(address=a, prefix=_prefix(m) or 0)
        for a, m in zip(addresses, masks, strict=False)
        if _ipv4s(a)
    )
    return Interface(
        name=header.split(" ", 2)[-1] if " " in header else header,
        up="media" not in fields,
        ipv4=ipv4,
        dhcp=dhcp_text.startswith(_YES) if dhcp_text else None,
        gateways=_unique(_ipv4s([_strip_status(v) for v in fields.get("gateway", [])])),
        dns=_unique(_ipv4s(fields.get("dns", []))),
        mac=fields.get("mac", [""])[0],
        description=fields.get("description", [""])[0],
    )


_PING_REPLY = re.compile(r"=\s*\d+\s.*?[=<]\s*(?P<ms>\d+)\s*ms.*TTL=", re.IGNORECASE)
_PING_TOTALS = re.compile(r"=\s*(?P<sent>\d+),[^=]*=\s*(?P<rcvd>\d+),[^=]*=\s*\d+\s*\(")


def parse_ping_text(text: str, target: str) -> PingResult:
    """``ping.exe`` output.  Only echo replies (a line with ``bytes=``/``TTL=``) count:
    ping.exe's own "Received" (and exit code) counts "Destination host unreachable"."""
    times = [float(m.group("ms")) for m in map(_PING_REPLY.search, text.splitlines()) if m]
    totals = _PING_TOTALS.search(text)
    if not totals:
        raise ParseError("no ping statistics in the output")
    sent = int(totals.group("sent"))
    received = min(len(times), sent)
    error = ""
    if not received:
        lowered = text.lower()
        error = next(
            (
                e
                for key, e in (
                    ("unreachable", "host unreachable"),
                    ("general failure", "general failure (no route from this host?)"),
                )
                if key in lowered
            ),
            "timed out",
        )
    return PingResult(
        target=target,
        transmitted=sent,
        received=received,
        rtt_min_ms=min(times) if times else None,
        rtt_avg_ms=round(sum(times) / len(times), 3) if times else None,
        rtt_max_ms=max(times) if times else None,
        error=error,
    )
