"""What binding.ps1 and ipconfig.ps1 both report about adapters, read the same way."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from typing import Any

from fleet.checks.facts import DefaultRoute, Interface, NetConfig
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


def netconfig(
    interfaces: Sequence[Interface], source: str, routes: Sequence[DefaultRoute] = ()
) -> NetConfig:
    """The host's configuration from its adapters: gateways and DNS gathered from each.

    With ``routes`` (their metrics known), the gateways come in the order Windows
    prefers them: the lowest metric first, the one the host's traffic takes.
    """
    ordered = sorted(routes, key=lambda r: (r.metric is None, r.metric or 0))
    return NetConfig(
        interfaces=tuple(interfaces),
        default_gateways=unique(
            [r.gateway for r in ordered] + [g for i in interfaces for g in i.gateways]
        ),
        dns_servers=unique([d for i in interfaces for d in i.dns]),
        source=source,
        default_routes=tuple(ordered),
    )


# Get-NetIPAddress AddressState (duplicate address detection, NL_DAD_STATE) as ConvertTo-Json
# writes it.  Win32_NetworkAdapterConfiguration has no such field.
ADDRESS_STATES = {0: "Invalid", 1: "Tentative", 2: "Duplicate", 3: "Deprecated", 4: "Preferred"}


def address_state(value: Any) -> str:
    """An AddressState enum: an integer (ConvertTo-Json), or its name (a table)."""
    number = integer(value)
    if number is not None:
        return ADDRESS_STATES.get(number, f"state {number}")
    return str(value).strip() if isinstance(value, str) else ""


# The failover cluster's NetFT adapter: hidden, 169.254.x.x by design (Get-NetAdapter
# -IncludeHidden shows ComponentID ROOT\NetFt; ipconfig /all shows its description).
_CLUSTER = ("failover cluster virtual adapter", "netft")


def internal_reason(
    description: str = "",
    component: str = "",
    hidden: bool = False,
    bindings: Sequence[tuple[str, bool]] = (),
) -> str:
    """Why an adapter is not one of the server's own connections ("" when it is one).

    The cluster's NetFT adapter and other hidden adapters carry addresses the server
    never uses for its clients; a physical NIC bound to a Hyper-V virtual switch
    (``vms_pp``) or to an LBFO team (``ms_implat``) has TCP/IP unbound by design:
    the host's vEthernet or team adapter carries it instead.
    """
    described = f"{description} {component}".lower()
    if any(word in described for word in _CLUSTER):
        return "failover cluster adapter (NetFT)"
    enabled = {c for c, on in bindings if on}
    if "vms_pp" in enabled:
        return "Hyper-V switch uplink"
    if "ms_implat" in enabled:
        return "NIC team member"
    if hidden:
        return "hidden adapter"
    return ""


def fallback_source(name: str, data: Mapping[str, Any]) -> str:
    """The source's name, with why the richer sources failed when the script fell back."""
    failed = data.get("fallback")
    return f"{name} (after {failed})" if isinstance(failed, str) and failed else name
