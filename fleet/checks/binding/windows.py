"""binding on Windows: adapters and their protocol bindings (binding.ps1 beside this file).

Get-NetAdapterBinding where it exists; on Server 2008 R2 (PowerShell 2.0), or
when CIM is broken, each service's ``Linkage\\Bind`` registry value, which names
adapters by GUID (the adapters from WMI, or from .NET when WMI is broken too).
A NIC bound to a Hyper-V switch or an LBFO team is marked ``internal``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fleet.checks.base import Step, StepOutput
from fleet.checks.facts import Interface, NetConfig
from fleet.checks.net.windows import (
    adapter_up,
    fallback_source,
    guid,
    internal_reason,
    wmi_connected,
)
from fleet.checks.winjson import load, output, rows, source, strings, text
from fleet.errors import ParseError

KEY = "binding"


def steps(params: Mapping[str, Any]) -> list[Step]:
    return [Step(key=KEY, script="binding/binding.ps1")]


def parse(outputs: Mapping[str, StepOutput]) -> NetConfig:
    """Adapters with their protocol bindings (ComponentID -> enabled)."""
    data = load(output(outputs, KEY))
    if source(data, ("Get-NetAdapterBinding", "registry")) == "registry":
        return _from_registry(data)
    bindings: dict[str, dict[str, bool]] = {}
    for row in rows(data, "bindings"):
        component = text(row, "ComponentID").lower()
        if component:
            bindings.setdefault(text(row, "Name"), {})[component] = bool(row.get("Enabled"))
    interfaces = []
    for row in rows(data, "adapters"):
        bound = tuple(sorted(bindings.get(text(row, "Name"), {}).items()))
        description = text(row, "InterfaceDescription")
        interfaces.append(
            Interface(
                name=text(row, "Name"),
                up=adapter_up(row.get("Status")),
                mac=text(row, "MacAddress"),
                description=description,
                bindings=bound,
                internal=internal_reason(
                    description, text(row, "ComponentID"), row.get("Hidden") is True, bound
                ),
            )
        )
    return NetConfig(interfaces=tuple(interfaces), source="Get-NetAdapterBinding")


def _from_registry(data: Mapping[str, Any]) -> NetConfig:
    bind = data.get("bind")
    if not isinstance(bind, dict):
        raise ParseError(f"bind: expected an object, got {str(bind)[:60]!r}")
    # Linkage\Bind entries name devices: \Device\{GUID}, \Device\Tcpip_{GUID}, \Device\NdisWanIp.
    bound = {
        component.lower(): {guid(e) for e in strings(v)} - {""} for component, v in bind.items()
    }
    interfaces = []
    for row in rows(data, "adapters"):
        mine = guid(row.get("GUID"))
        description = text(row, "Description")
        interfaces.append(
            Interface(
                name=text(row, "NetConnectionID"),
                up=wmi_connected(row.get("NetConnectionStatus")),
                mac=text(row, "MACAddress"),
                description=description,
                bindings=tuple(sorted((c, mine in guids) for c, guids in bound.items())),
                internal=internal_reason(description),
            )
        )
    name = "registry Linkage\\Bind"
    if text(data, "adapters_from") == "NetworkInterface":
        name += ", adapters from .NET NetworkInterface"
    return NetConfig(interfaces=tuple(interfaces), source=fallback_source(name, data))
