"""fleet.checks.windows parsers fed from output recorded on real Windows machines.

Every file under tests/data/windows/recorded/ is a verbatim copy of output that
someone captured on a real host and published; its README.md names the source.
No recording runs fleet's own scripts, so each test rebuilds the JSON that
binding.ps1 / ipconfig.ps1 would print FROM the recorded objects (keeping only
the fields the script selects, in the script's top-level shape) and checks that
the parser reports what the recording says.  Where the recording shows a
ConvertTo-Json quirk (one object instead of an array, enums as integers, an
empty computed property written as ``{}``, extra properties), the quirk is kept.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import tomllib

from fleet.checks.base import StepOutput
from fleet.checks.binding import windows as binding_win
from fleet.checks.facts import Address, Interface, NetConfig
from fleet.checks.ipconfig import windows as ipconfig_win
from fleet.errors import ParseError

RECORDED = Path(__file__).parent / "data" / "windows" / "recorded"

# Fields the scripts select (fleet/checks/ps1/binding.ps1 and ipconfig.ps1).
ADAPTER_FIELDS = ("Name", "InterfaceDescription", "Status", "MacAddress", "ifIndex")
ADDRESS_FIELDS = ("InterfaceIndex", "InterfaceAlias", "IPAddress", "PrefixLength", "PrefixOrigin")
INTERFACE_FIELDS = ("InterfaceIndex", "InterfaceAlias", "Dhcp", "ConnectionState")
ROUTE_FIELDS = ("InterfaceIndex", "NextHop", "RouteMetric")
AF_INET = 2  # AddressFamily as ConvertTo-Json writes the enum: 2 = IPv4, 23 = IPv6


def out(key: str, payload: object) -> StepOutput:
    return StepOutput(key=key, exit_status=0, stdout=json.dumps(payload).encode("utf-8"))


def select(row: dict[str, Any], fields: tuple[str, ...]) -> dict[str, Any]:
    """Select-Object: the named properties, absent ones as null (as PowerShell writes them)."""
    return {field: row.get(field) for field in fields}


def pipeline(rows: list[dict[str, Any]]) -> Any:
    """What ConvertTo-Json writes for a pipeline: nothing, one object, or an array."""
    if not rows:
        return None
    return rows[0] if len(rows) == 1 else rows


def recorded_stdout(name: str, command_contains: str) -> Any:
    """The JSON a cnquery mock file recorded for the command containing ``command_contains``."""
    commands = tomllib.loads((RECORDED / name).read_text(encoding="utf-8"))["commands"]
    for key, entry in commands.items():
        if command_contains in entry.get("command", key):
            return json.loads(entry["stdout"])
    raise AssertionError(f"{command_contains!r} not recorded in {name}")


def by_name(config: NetConfig) -> dict[str, Interface]:
    return {i.name: i for i in config.interfaces}


# --------------------------------------------------------------------------- Server 2019


@pytest.fixture(scope="module")
def server2019_adapter() -> Any:
    """Get-NetAdapter | Select-Object ... | ConvertTo-Json on Windows Server 2019 (17763)."""
    return recorded_stdout("cnquery-server2019-netadapter.toml", "Get-NetAdapter |")


class TestServer2019GetNetAdapter:
    def test_one_adapter_is_recorded_as_an_object_not_an_array(self, server2019_adapter):
        # The quirk itself, as recorded: a one-row pipeline gives a bare object.
        assert isinstance(server2019_adapter, dict)
        assert server2019_adapter["State"] == 2  # and enums come out as integers

    def test_binding_reads_the_single_adapter_object(self, server2019_adapter):
        adapter = select(server2019_adapter, ADAPTER_FIELDS)
        payload = {
            "source": "Get-NetAdapterBinding",
            "adapters": pipeline([adapter]),  # stays a bare object
            "bindings": None,  # Get-NetAdapterBinding was not recorded on this host
        }
        config = binding_win.parse({"binding": out("binding", payload)})
        assert config.interfaces == (
            Interface(
                name="Ethernet",
                up=True,
                mac="00-15-5D-F2-3B-1D",
                description="Microsoft Hyper-V Network Adapter",
                bindings=(),
            ),
        )

    def test_extra_properties_of_the_raw_object_do_not_matter(self, server2019_adapter):
        # The recorded object as-is (InterfaceType, State, LinkSpeed, Virtual... left in).
        payload = {"source": "Get-NetAdapterBinding", "adapters": server2019_adapter}
        (ethernet,) = binding_win.parse({"binding": out("binding", payload)}).interfaces
        assert (ethernet.name, ethernet.up, ethernet.mac) == ("Ethernet", True, "00-15-5D-F2-3B-1D")

    def test_ipconfig_keeps_the_adapter_and_invents_no_address(self, server2019_adapter):
        # The recorded Get-NetIPAddress selected neither InterfaceIndex nor PrefixLength:
        # rows without them must not turn into an address of unknown mask.
        addresses = recorded_stdout("cnquery-server2019-netadapter.toml", "Get-NetIPAddress |")
        rows = [
            select(
                {"InterfaceAlias": a["InterfaceAlias"], "IPAddress": a["IPv4Address"]},
                ADDRESS_FIELDS,
            )
            for a in addresses
            if a["IPv4Address"]
        ]
        payload = {
            "source": "NetTCPIP",
            "adapters": select(server2019_adapter, ADAPTER_FIELDS),
            "addresses": rows,
        }
        config = ipconfig_win.parse({"ipconfig": out("ipconfig", payload)})
        (ethernet,) = config.interfaces
        assert ethernet.name == "Ethernet" and ethernet.up
        assert ethernet.ipv4 == ()
        assert config.default_gateways == ()


# --------------------------------------------------------------------------- Server 2016


@pytest.fixture(scope="module")
def server2016_ipinterfaces() -> list[dict[str, Any]]:
    """Get-NetIPInterface with computed IPAddresses/DefaultGateway columns, Server 2016 (14393)."""
    return recorded_stdout("cnquery-server2016-netipinterface.toml", "-EncodedCommand")


def nested_json(text: str) -> list[dict[str, Any]]:
    """The IPAddresses column: a ConvertTo-Json string holding one object or an array."""
    value = json.loads(text)
    return value if isinstance(value, list) else [value]


def server2016_payload(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """ipconfig.ps1's NetTCPIP object, rebuilt from the recorded IPv4 interface rows."""
    ipv4 = [r for r in rows if r["AddressFamily"] == AF_INET]  # -AddressFamily IPv4
    addresses = [
        select({**a, "InterfaceIndex": r["InterfaceIndex"]}, ADDRESS_FIELDS)
        for r in ipv4
        for a in nested_json(r["IPAddresses"])
        if a["AddressFamily"] == AF_INET
    ]
    routes = [
        select(
            {"InterfaceIndex": r["InterfaceIndex"], "NextHop": r["DefaultGateway"]}, ROUTE_FIELDS
        )
        for r in ipv4
        if isinstance(r["DefaultGateway"], str)
    ]
    return {
        "source": "NetTCPIP",
        "adapters": None,  # Get-NetAdapter was not recorded on this host
        "addresses": pipeline(addresses),
        "interfaces": pipeline([select(r, INTERFACE_FIELDS) for r in ipv4]),
        "routes": pipeline(routes),  # one default route: a bare object
        "dns": None,
    }


class TestServer2016GetNetIPInterface:
    def test_the_recording_shows_the_quirks(self, server2016_ipinterfaces):
        isatap = next(
            r for r in server2016_ipinterfaces if r["InterfaceAlias"] == "isatap.localdomain"
        )
        assert isinstance(json.loads(isatap["IPAddresses"]), dict)  # one address: an object
        assert isatap["DefaultGateway"] == {}  # an empty computed property: {}
        assert {r["ConnectionState"] for r in server2016_ipinterfaces} == {0, 1}  # enum as int

    def test_addresses_prefixes_and_the_gateway_come_through(self, server2016_ipinterfaces):
        config = ipconfig_win.parse(
            {"ipconfig": out("ipconfig", server2016_payload(server2016_ipinterfaces))}
        )
        interfaces = by_name(config)
        assert set(interfaces) == {"Ethernet0", "Loopback Pseudo-Interface 1"}  # IPv4 only
        ethernet = interfaces["Ethernet0"]
        assert ethernet.ipv4 == (Address(address="192.168.5.38", prefix=24, dynamic=False),)
        assert ethernet.gateways == ("192.168.5.1",)
        assert ethernet.up and not ethernet.loopback
        assert ethernet.dhcp is None  # Dhcp was not recorded: unknown, not "static"
        loopback = interfaces["Loopback Pseudo-Interface 1"]
        assert loopback.loopback and loopback.up
        assert loopback.ipv4 == (Address(address="127.0.0.1", prefix=8, dynamic=False),)
        assert config.default_gateways == ("192.168.5.1",)

    def test_raw_rows_with_extra_properties_and_empty_objects_are_survived(
        self, server2016_ipinterfaces
    ):
        # The recorded IPv4 rows as they are (NlMtu, MacAddress, IPAddresses as text,
        # DefaultGateway {} ...) given as the interfaces, and {} given as a route.
        ipv4 = [r for r in server2016_ipinterfaces if r["AddressFamily"] == AF_INET]
        payload = {
            "source": "NetTCPIP",
            "interfaces": ipv4,
            "routes": [r["DefaultGateway"] for r in ipv4],  # "192.168.5.1" is no object...
        }
        with pytest.raises(ParseError, match="routes: expected objects"):
            ipconfig_win.parse({"ipconfig": out("ipconfig", payload)})
        payload["routes"] = [{}, {"InterfaceIndex": 5, "NextHop": "192.168.5.1"}]
        config = ipconfig_win.parse({"ipconfig": out("ipconfig", payload)})
        assert by_name(config)["Ethernet0"].gateways == ("192.168.5.1",)
        assert by_name(config)["Loopback Pseudo-Interface 1"].gateways == ()


# --------------------------------------------------------------------------- Get-NetRoute


@pytest.fixture(scope="module")
def route_table() -> list[dict[str, Any]]:
    """Get-NetRoute | Select-Object ... | ConvertTo-Json, IPv4 and IPv6, one Ethernet + loopback."""
    return json.loads((RECORDED / "cnquery-get-netroute.json").read_text(encoding="utf-8"))


def route_payload(routes: Any) -> dict[str, Any]:
    return {
        "source": "NetTCPIP",
        "interfaces": [
            {"InterfaceIndex": 13, "InterfaceAlias": "Ethernet", "ConnectionState": 1},
            {"InterfaceIndex": 1, "InterfaceAlias": "Loopback Pseudo-Interface 1"},
        ],
        "routes": routes,
    }


class TestGetNetRoute:
    def test_the_default_route_alone_is_a_bare_object(self, route_table):
        # ipconfig.ps1 asks for -AddressFamily IPv4 -DestinationPrefix '0.0.0.0/0' only.
        default = [
            select(r, ROUTE_FIELDS)
            for r in route_table
            if r["AddressFamily"] == AF_INET and r["DestinationPrefix"] == "0.0.0.0/0"
        ]
        config = ipconfig_win.parse({"ipconfig": out("ipconfig", route_payload(pipeline(default)))})
        assert by_name(config)["Ethernet"].gateways == ("192.168.64.1",)
        assert by_name(config)["Loopback Pseudo-Interface 1"].gateways == ()
        assert config.default_gateways == ("192.168.64.1",)

    def test_on_link_routes_are_not_mistaken_for_gateways(self, route_table):
        # Had the prefix filter been lost, every IPv4 route comes back: on-link ones carry
        # NextHop 0.0.0.0 and IPv6 ones "::"; only the real next hop is a gateway.
        config = ipconfig_win.parse({"ipconfig": out("ipconfig", route_payload(route_table))})
        assert config.default_gateways == ("192.168.64.1",)


# --------------------------------------------------------------------------- Get-NetAdapterBinding


def table_rows(text: str) -> list[dict[str, str]]:
    """A PowerShell Format-Table: columns start where the header's dashes start."""
    lines = text.splitlines()
    dashes = next(i for i, line in enumerate(lines) if line.startswith("----"))
    header, rule = lines[dashes - 1], lines[dashes]
    starts = [i for i, c in enumerate(rule) if c == "-" and (i == 0 or rule[i - 1] == " ")]
    names = [header[s:].split()[0] for s in starts]
    bounds = list(zip(starts, [*starts[1:], None], strict=True))
    return [
        {name: line[a:b].strip() for name, (a, b) in zip(names, bounds, strict=True)}
        for line in lines[dashes + 1 :]
        if line.strip()
    ]


class TestNetAdapterBindingTable:
    @pytest.fixture(scope="class")
    def rows(self) -> list[dict[str, str]]:
        return table_rows(
            (RECORDED / "docs-3493-netadapterbinding.txt").read_text(encoding="utf-8")
        )

    def test_the_recorded_table_reads(self, rows):
        assert [r["Name"] for r in rows] == ["Ethernet", "Ethernet 3", "Ethernet 2"]
        assert {(r["ComponentID"], r["Enabled"]) for r in rows} == {("ms_tcpip6", "False")}

    def test_a_disabled_binding_is_reported_unbound(self, rows):
        # ConvertTo-Json writes Enabled as a JSON boolean; the names and ComponentIDs are
        # the recorded ones.  Get-NetAdapter was not recorded: adapters carry names only.
        bindings = [
            {"Name": r["Name"], "ComponentID": r["ComponentID"], "Enabled": r["Enabled"] == "True"}
            for r in rows
        ]
        payload = {
            "source": "Get-NetAdapterBinding",
            "adapters": [{"Name": r["Name"]} for r in rows],
            "bindings": bindings,
        }
        config = binding_win.parse({"binding": out("binding", payload)})
        assert [i.name for i in config.interfaces] == ["Ethernet", "Ethernet 3", "Ethernet 2"]
        for interface in config.interfaces:
            assert interface.bindings == (("ms_tcpip6", False),)
            # ms_tcpip was not in the output: it must not be reported bound.
            assert ("ms_tcpip", True) not in interface.bindings
