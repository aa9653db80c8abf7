"""What binding.ps1 and ipconfig.ps1 both report about adapters, read the same way."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from typing import Any

from fleet.checks.facts import Interface, NetConfig
from fleet.checks.winjson import integer

# Get-NetAdapter Status is text ("Up"); ifOperStatus as an integer is 1 for up.
_ADAPTER_UP = {"up": True, "connected": True}
_GUID = re.compile(
    r"\{?([0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12})\}?"
)


def adapter_up(value: Any) -> bool:
    if isinstance(value, str) and not value.strip().isdigit():
        return _ADAPTER_UP.get(value.strip().lower(), False)
    return integer(value) == 1


def wmi_connected(value: Any) -> bool:
    return integer(value) == 2  # Win32_NetworkAdapter.NetConnectionStatus 2 = Connected


def guid(value: Any) -> str:
    match = _GUID.search(str(value or ""))
    return match.group(1).upper() if match else ""


def prefix(mask_or_length: str) -> int | None:
    try:
        if "." in mask_or_length:
            return ipaddress.IPv4Network(f"0.0.0.0/{mask_or_length}").prefixlen
        return int(mask_or_length)
    except ValueError:
        return None


def unique(items: Sequence[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


def netconfig(interfaces: Sequence[Interface], source: str) -> NetConfig:
    """The host's configuration from its adapters: gateways and DNS gathered from each."""
    return NetConfig(
        interfaces=tuple(interfaces),
        default_gateways=unique([g for i in interfaces for g in i.gateways]),
        dns_servers=unique([d for i in interfaces for d in i.dns]),
        source=source,
    )
