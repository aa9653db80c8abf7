"""fleet.checks.windows: the composed PowerShell script and the parsers of what it prints.

Text parsers run on real recorded Windows output (tests/data/windows/README.md
names each source); the JSON parsers on the shapes ConvertTo-Json and the
script's PowerShell 2.0 writer produce, quirks included.
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import pytest

from fleet import causes
from fleet.checks import windows
from fleet.checks.base import Platform, Step, StepOutput
from fleet.checks.batch import split_sections
from fleet.checks.binding import BindingCheck
from fleet.checks.binding import windows as binding_win
from fleet.checks.ipconfig import IpconfigCheck
from fleet.checks.ipconfig import windows as ipconfig_win
from fleet.checks.ping import PingCheck
from fleet.checks.ping import windows as ping_win
from fleet.checks.smtp import SmtpCheck
from fleet.checks.smtp import windows as smtp_win
from fleet.errors import ParseError
from fleet.model import Status

DATA = Path(__file__).parent / "data" / "windows"
NONCE = "0123456789abcdef"
WINDOWS = Platform.WINDOWS


def out(key: str, payload: object, exit_status: int | None = 0) -> StepOutput:
    text = payload if isinstance(payload, str) else json.dumps(payload)
    return StepOutput(key=key, exit_status=exit_status, stdout=text.encode("utf-8"))


def steps(check, **params) -> list[Step]:
    return list(check.steps(WINDOWS, check.validate(params)))


def test_every_step_script_beside_a_check_is_shipped():
    assert {"binding/binding.ps1", "ipconfig/ipconfig.ps1", "ping/ping.ps1",
            "smtp/smtp.ps1"} <= set(windows.SCRIPTS)  # fmt: skip


def all_steps() -> list[Step]:
    return (
        steps(BindingCheck())
        + steps(IpconfigCheck())
        + steps(PingCheck(), targets=["mx1", "mx2", "mx3"])
        + steps(SmtpCheck(), targets=["mx1", "mx2", "mx3"])
    )


class TestCompose:
    def test_parameters_travel_as_base64_data_not_code(self):
        hostile = "mx1'; Remove-Item -Recurse C:\\ ; '"
        # Straight to the step builder: the check's validation would have dropped it.
        step = smtp_win.step("smtp:x", hostile, SmtpCheck().validate({}))
        script = windows.compose([step], NONCE, 30)
        assert hostile not in script
        assert "Remove-Item" not in script
        encoded = re.findall(r"target = \(fleetArg '([A-Za-z0-9+/=]+)'\)", script)
        assert [base64.b64decode(e).decode() for e in encoded] == [hostile]

    def test_every_script_is_carried_once_and_the_whole_fits_one_command_line(self):
        script = windows.compose(all_steps(), NONCE, 60)
        for name in {step.script for step in all_steps()}:
            assert script.count(f"$fleetCode['{name}'] = @'") == 1
        assert script.count(", @('ping/ping.ps1'") == 4  # the gateway and three peers
        # powershell -EncodedCommand takes UTF-16LE base64; a command line holds ~32k chars.
        assert len(base64.b64encode(script.encode("utf-16-le"))) < 32_000

    def test_preferences_are_deliberate_in_the_frame_and_in_every_step(self):
        script = windows.compose(all_steps(), NONCE, 60)
        assert "$ProgressPreference = 'SilentlyContinue'" in script.splitlines()[:4]
        for name in windows.SCRIPTS:
            text = windows.script_text(name)
            assert text.startswith("param($p)\n$ErrorActionPreference = 'Stop'\n")
            assert "$ProgressPreference = 'SilentlyContinue'" in text

    def test_step_timeout_reaches_the_runner_in_milliseconds(self):
        script = windows.compose(all_steps(), NONCE, 12.5)
        assert script.endswith(f"fleetRun $fleetCode $fleetSteps '{NONCE}' 12500\n")

    @pytest.mark.parametrize("nonce", ["short", "0123456789abcdef'; x", ""])
    def test_a_nonce_that_could_break_the_script_is_refused(self, nonce):
        with pytest.raises(ValueError):
            windows.compose(all_steps(), nonce, 60)

    def test_unknown_scripts_and_parameter_names_are_refused(self):
        with pytest.raises(ValueError):
            windows.compose([Step(key="x", script="..\\evil.ps1")], NONCE, 60)
        with pytest.raises(ValueError):
            windows.compose(
                [Step(key="x", script="ping/ping.ps1", params={"a; b": "1"})], NONCE, 60
            )
        with pytest.raises(ValueError):
            windows.compose([Step("x", "ping/ping.ps1", params={"t": ["a"]})], NONCE, 60)

    def test_the_frame_the_prelude_prints_is_what_batch_splits(self):
        # Render fleetSection's Write() exactly as PowerShell expands it.
        prelude = windows.script_text("prelude.ps1")
        template = re.search(r'\[Console\]::Out\.Write\("(.*)"\)', prelude).group(1)
        payload = json.dumps({"source": "x", "caf\u00e9": "\u2713"})
        b64 = base64.b64encode(payload.encode("utf-8")).decode()
        both = steps(BindingCheck()) + steps(IpconfigCheck())
        printed = "".join(
            template.replace("`n", "\n")
            .replace("$nonce", NONCE)
            .replace("$i", str(i))
            .replace("$rc", str(rc))
            .replace("$b64", b64)
            for i, rc in ((0, 0), (1, 124))
        )
        sections = split_sections(printed.encode(), NONCE, both)
        assert sections["binding"].exit_status == 0
        assert sections["ipconfig"].exit_status == 124
        assert json.loads(sections["binding"].stdout) == json.loads(payload)

    def test_ping_targets_start_with_the_gateway_unless_told_not_to(self):
        keys = [s.key for s in steps(PingCheck(), targets=["mx1", "mx1"], count=3)]
        assert keys == ["ping:gateway", "ping:mx1"]
        assert steps(PingCheck(), targets=["mx1"], gateway=False)[0].params == {
            "target": "mx1",
            "echoes": 2,
            "timeout_ms": 2000,
        }

    def test_ping_never_trusts_ping_exe(self):
        text = windows.script_text("ping/ping.ps1")
        assert "Win32_PingStatus" in text
        # ping.exe only as the broken-WMI fallback, its text parsed, its exit code never read
        assert text.index("Win32_PingStatus") < text.index("& ping.exe")
        assert "LASTEXITCODE" not in text and "$?" not in text


# --------------------------------------------------------------------------- binding

NETADAPTER_BINDING_ONE_ADAPTER = {
    "source": "Get-NetAdapterBinding",
    # one adapter: ConvertTo-Json gives an object, not a one-element array
    "adapters": {
        "Name": "Ethernet0",
        "InterfaceDescription": "Intel(R) 82574L Gigabit Network Connection",
        "Status": "Up",
        "MacAddress": "00-15-5D-12-00-31",
        "ifIndex": 6,
        "InterfaceGuid": "{5F1C2A31-8D3E-4B7A-9C11-0A1B2C3D4E31}",
    },
    "bindings": [
        {"Name": "Ethernet0", "ComponentID": "ms_tcpip", "Enabled": False},
        {"Name": "Ethernet0", "ComponentID": "ms_msclient", "Enabled": True},
        {"Name": "Ethernet0", "ComponentID": "ms_tcpip6", "Enabled": True},
    ],
}


def test_binding_reads_one_adapter_object_and_componentids():
    facts = binding_win.parse({"binding": out("binding", NETADAPTER_BINDING_ONE_ADAPTER)})
    (eth,) = facts.interfaces
    assert eth.name == "Ethernet0" and eth.up
    assert dict(eth.bindings) == {"ms_msclient": True, "ms_tcpip": False, "ms_tcpip6": True}


def test_binding_status_as_an_integer_is_understood():
    data = json.loads(json.dumps(NETADAPTER_BINDING_ONE_ADAPTER))
    data["adapters"]["Status"] = 2  # ifOperStatus down
    (eth,) = binding_win.parse({"binding": out("binding", data)}).interfaces
    assert eth.up is False


def test_binding_from_the_registry_on_powershell_2():
    # the PS 2.0 writer's output: compact, REG_MULTI_SZ lists as arrays
    text = (
        '{"source":"registry","adapters":{"NetConnectionID":"Local Area Connection",'
        '"Description":"Intel(R) PRO/1000 MT Network Connection","NetConnectionStatus":2,'
        '"MACAddress":"00:0C:29:76:C8:D0","InterfaceIndex":11,'
        '"GUID":"{F856FDB3-CE70-489D-A231-704790DC1351}"},"bind":{'
        '"ms_tcpip":["\\\\Device\\\\NdisWanIp"],'
        '"ms_msclient":["\\\\Device\\\\Tcpip_{f856fdb3-ce70-489d-a231-704790dc1351}"],'
        '"ms_server":[]}}'
    )
    (lan,) = binding_win.parse({"binding": out("binding", text)}).interfaces
    assert lan.up and lan.mac == "00:0C:29:76:C8:D0"
    assert dict(lan.bindings) == {"ms_msclient": True, "ms_server": False, "ms_tcpip": False}


# --------------------------------------------------------------------------- ipconfig

NETTCPIP = {
    "source": "NetTCPIP",
    "adapters": {
        "Name": "Ethernet0",
        "InterfaceDescription": "vmxnet3",
        "Status": "Up",
        "MacAddress": "00-15-5D-12-00-33",
        "ifIndex": 6,
    },
    "addresses": [
        {
            "InterfaceIndex": 6,
            "InterfaceAlias": "Ethernet0",
            "IPAddress": "169.254.47.112",
            "PrefixLength": 16,
            "PrefixOrigin": 2,
        },
        {
            "InterfaceIndex": 1,
            "InterfaceAlias": "Loopback Pseudo-Interface 1",
            "IPAddress": "127.0.0.1",
            "PrefixLength": 8,
            "PrefixOrigin": 2,
        },
    ],
    "interfaces": [
        {"InterfaceIndex": 6, "InterfaceAlias": "Ethernet0", "Dhcp": 1, "ConnectionState": 1},
        {
            "InterfaceIndex": 1,
            "InterfaceAlias": "Loopback Pseudo-Interface 1",
            "Dhcp": 0,
            "ConnectionState": 1,
        },
    ],
    "routes": None,
    "dns": [
        {"InterfaceIndex": 6, "InterfaceAlias": "Ethernet0", "ServerAddresses": []},
        {
            "InterfaceIndex": 1,
            "InterfaceAlias": "Loopback Pseudo-Interface 1",
            "ServerAddresses": [],
        },
    ],
}


def test_ipconfig_apipa_with_dhcp_as_an_integer_enum():
    facts = ipconfig_win.parse({"ipconfig": out("ipconfig", NETTCPIP)})
    loopback, eth = facts.interfaces
    assert loopback.loopback and not eth.loopback
    assert eth.ipv4[0].address == "169.254.47.112" and eth.ipv4[0].prefix == 16
    assert eth.dhcp is True and eth.gateways == () and facts.default_gateways == ()


def test_ipconfig_survives_depth_truncation_of_arrays_and_single_rows():
    data = json.loads(json.dumps(NETTCPIP))
    data["routes"] = {"InterfaceIndex": 6, "NextHop": "198.18.0.1", "RouteMetric": 0}
    # an array past -Depth is written as its items joined by spaces
    data["dns"] = {"InterfaceIndex": 6, "ServerAddresses": "198.18.0.1 198.18.0.2"}
    data["interfaces"][0]["Dhcp"] = "Disabled"
    eth = ipconfig_win.parse({"ipconfig": out("ipconfig", data)}).interfaces[1]
    assert eth.gateways == ("198.18.0.1",)
    assert eth.dns == ("198.18.0.1", "198.18.0.2")
    assert eth.dhcp is False


def test_ipconfig_rows_truncated_to_type_names_are_a_parse_error():
    data = dict(NETTCPIP, addresses=["Microsoft.Management.Infrastructure.CimInstance"])
    with pytest.raises(ParseError, match="truncated"):
        ipconfig_win.parse({"ipconfig": out("ipconfig", data)})


def test_ipconfig_from_wmi_skips_ipv6_and_joins_adapters_by_guid():
    data = {
        "source": "Win32_NetworkAdapterConfiguration",
        "adapters": [
            {
                "NetConnectionID": "Local Area Connection",
                "Description": "Intel",
                "NetConnectionStatus": 2,
                "MACAddress": "00:0C:29:76:C8:D0",
                "InterfaceIndex": 11,
                "GUID": "{F856FDB3-CE70-489D-A231-704790DC1351}",
            },
            {
                "NetConnectionID": "Local Area Connection 2",
                "Description": "Intel #2",
                "NetConnectionStatus": 7,
                "MACAddress": "00:0C:29:76:C8:D1",
                "InterfaceIndex": 12,
                "GUID": "{00000000-CE70-489D-A231-704790DC1351}",
            },
        ],
        "configs": {
            "InterfaceIndex": 11,
            "Description": "Intel",
            "SettingID": "{F856FDB3-CE70-489D-A231-704790DC1351}",
            "MACAddress": "00:0C:29:76:C8:D0",
            "IPAddress": ["192.168.23.154", "fe80::9595:e8d9:b190:ecac"],
            "IPSubnet": ["255.255.255.0", "64"],
            "DefaultIPGateway": ["192.168.23.1"],
            "DHCPEnabled": False,
            "DNSServerSearchOrder": ["192.168.23.151"],
        },
    }
    facts = ipconfig_win.parse({"ipconfig": out("ipconfig", data)})
    lan, lan2 = facts.interfaces
    assert [(a.address, a.prefix) for a in lan.ipv4] == [("192.168.23.154", 24)]
    assert lan.dhcp is False and lan.gateways == ("192.168.23.1",)
    assert lan2.up is False and lan2.ipv4 == () and lan2.dhcp is None
    assert facts.dns_servers == ("192.168.23.151",)


@pytest.mark.parametrize(
    ("payload", "exit_status", "message", "cause"),
    [
        ('{"source": "NetTCPIP", "adapters": [', 0, "not JSON", causes.UNPARSED),
        ("[1, 2]", 0, "expected a JSON object", causes.UNPARSED),
        ('{"error": "Access is denied"}', 1, "Access is denied", causes.UNPARSED),
        ('{"error": "step did not finish within 9 s"}', 124, "did not finish",
         causes.COMMAND_TIMEOUT),
        ('{"source": "ipconfig.exe"}', 0, "unknown source", causes.UNPARSED),
        ("", None, "no output", causes.OUTPUT_LOST),
        (b"\xff\xfe{}", 0, "not JSON", causes.UNPARSED),
    ],
)  # fmt: skip
def test_ipconfig_output_not_as_promised_is_a_parse_error(payload, exit_status, message, cause):
    stdout = payload if isinstance(payload, bytes) else payload.encode()
    output = StepOutput(key="ipconfig", exit_status=exit_status, stdout=stdout)
    with pytest.raises(ParseError, match=message) as raised:
        ipconfig_win.parse({"ipconfig": output})
    assert raised.value.cause == cause


def test_a_step_that_ran_out_of_time_on_the_host_says_so_in_its_cause():
    output = out("ipconfig", {"error": "step did not finish within 9 s"}, exit_status=124)
    [result] = IpconfigCheck().evaluate("win1", WINDOWS, {}, {"ipconfig": output})
    assert (result.status, result.cause) == (Status.ERROR, causes.COMMAND_TIMEOUT)


# --------------------------------------------------------------------------- ping / smtp


def test_ping_counts_only_statuscode_zero_as_a_reply():
    data = {
        "target": "mx2",
        "address": "mx2",
        "replies": [
            {"status": 0, "time": 3, "resolution": 0, "address": "198.18.0.12"},
            {"status": 11010, "time": None, "resolution": 0, "address": "198.18.0.12"},
            {"status": 0, "time": 5, "resolution": 0, "address": "198.18.0.12"},
        ],
    }
    result = ping_win.parse(out("ping:mx2", data), "mx2")
    assert (result.transmitted, result.received) == (3, 2)
    assert (result.rtt_min_ms, result.rtt_avg_ms, result.rtt_max_ms) == (3.0, 4.0, 5.0)
    assert result.address == "198.18.0.12" and result.error == ""


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        ({"status": None, "time": None, "resolution": 11001, "address": ""}, "unknown host"),
        ({"status": 11003, "time": None, "resolution": 0, "address": "x"}, "host unreachable"),
        ({"status": 11050, "time": None, "resolution": 0, "address": "x"}, "general failure"),
    ],
)
def test_ping_names_why_nothing_came_back(reply, error):
    # One reply serialised alone: still a list here, as the script builds it with +=.
    result = ping_win.parse(out("ping:x", {"target": "x", "replies": reply}), "x")
    assert result.received == 0 and result.loss_percent == 100.0
    assert result.error.startswith(error)


def test_ping_gateway_missing_is_a_result_not_an_error():
    data = {"target": "gateway", "error": "no default gateway"}
    result = ping_win.parse(out("ping:gateway", data), "gateway")
    assert result.error == "no default gateway" and result.transmitted == 0


def test_smtp_multi_line_greeting_and_starttls():
    data = {
        "target": "mx3",
        "port": 25,
        "outcome": "ok",
        "address": "198.18.0.13",
        "code": 220,
        "greeting": ["220-mx3.lab ESMTP", "220 mx3.lab ready"],
        "ehlo": ["250-mx3.lab", "250-STARTTLS", "250 8BITMIME"],
        "starttls": True,
        "connect_ms": 0.8312,
    }
    probe = smtp_win.parse(out("smtp:mx3", data), "mx3")
    assert probe.outcome == "ok" and probe.greeting_code == 220
    assert probe.greeting == ("220-mx3.lab ESMTP", "220 mx3.lab ready")
    assert probe.starttls and probe.connect_ms == 0.831


def test_smtp_waits_for_a_slow_greeting_and_reports_its_delay():
    params = SmtpCheck().validate({"targets": ["mx3"], "greeting_timeout": 20})
    assert smtp_win.step("smtp:mx3", "mx3", params).params["greet_ms"] == 20000
    data = {
        "target": "mx3",
        "port": 25,
        "outcome": "ok",
        "code": 220,
        "greeting": ["220-pre-greeting", "220 mx3.lab"],
        "ehlo": ["250-mx3.lab", "250 STARTTLS"],
        "starttls": True,
        "connect_ms": 0.5,
        "greeted_ms": 6100.5,
    }
    probe = smtp_win.parse(out("smtp:mx3", data), "mx3")
    assert probe.greeting_ms == 6100.0 and probe.tls_checked is False
    assert SmtpCheck().judge("win-ok", params, probe, "").cause == "slow-greeting"


def test_smtp_single_line_as_a_string_and_unknown_outcomes():
    data = {
        "target": "mx",
        "port": 25,
        "outcome": "bad-greeting",
        "code": 421,
        "greeting": "421 4.3.2 Service not available",
        "ehlo": None,
    }
    probe = smtp_win.parse(out("smtp:mx", data), "mx")
    assert probe.greeting == ("421 4.3.2 Service not available",) and probe.ehlo == ()
    with pytest.raises(ParseError, match="outcome"):
        smtp_win.parse(out("smtp:mx", dict(data, outcome="maybe")), "mx")


# --------------------------------------------------------------------------- text fallbacks


@pytest.mark.parametrize(
    ("sample", "adapter", "address", "prefix", "gateway", "dhcp"),
    [
        (
            "ipconfig-all-xp.out",
            "Local Area Connection",
            "192.168.22.135",
            24,
            "192.168.22.1",
            True,
        ),
        (
            "ipconfig-all-server2008.out",
            "Local Area Connection",
            "192.168.23.154",
            24,
            "192.168.23.1",
            False,
        ),
        ("ipconfig-all-server2016.out", "Ethernet0", "192.168.22.153", 24, "192.168.22.1", False),
        ("ipconfig-all-win10.out", "Ethernet 2", "10.50.13.132", 24, "10.50.13.1", True),
    ],
)
def test_ipconfig_all_text_from_several_windows_versions(
    sample, adapter, address, prefix, gateway, dhcp
):
    facts = ipconfig_win.parse_ipconfig_text((DATA / sample).read_text(encoding="utf-8"))
    by_name = {i.name: i for i in facts.interfaces}
    iface = by_name[adapter]
    assert [(a.address, a.prefix) for a in iface.ipv4] == [(address, prefix)]
    assert iface.gateways == (gateway,) and iface.dhcp is dhcp and iface.up
    assert gateway in facts.default_gateways


def test_ipconfig_all_text_disconnected_adapters_are_down():
    facts = ipconfig_win.parse_ipconfig_text((DATA / "ipconfig-all-win10.out").read_text())
    by_name = {i.name: i for i in facts.interfaces}
    assert by_name["Bluetooth Network Connection"].up is False
    assert by_name["Tailscale"].dns == ()  # IPv6-only DNS servers are not IPv4 facts


@pytest.mark.parametrize(
    ("sample", "address", "gateway"),
    [
        ("ipconfig-fr.out", "192.1.2.158", "192.1.2.252"),
        # cp850 bytes read as cp1252: accents become U+201A, the no-break space U+00FF
        ("ipconfig-fr-win10-garbled.out", "10.10.155.20", "10.10.155.254"),
    ],
)
def test_ipconfig_text_in_french_even_garbled_by_the_code_page(sample, address, gateway):
    facts = ipconfig_win.parse_ipconfig_text((DATA / sample).read_text(encoding="utf-8"))
    first = facts.interfaces[0]
    assert [(a.address, a.prefix) for a in first.ipv4] == [(address, 24)]
    assert first.gateways == (gateway,)
    assert facts.default_gateways == (gateway,)


def test_ipconfig_text_without_adapters_is_a_parse_error():
    with pytest.raises(ParseError):
        ipconfig_win.parse_ipconfig_text("Windows IP Configuration\n\n")


@pytest.mark.parametrize(
    ("sample", "sent", "received", "error", "rtt"),
    [
        ("ping-win7-success.out", 10, 10, "", (56.0, 107.7, 194.0)),
        ("ping-win-timeout.out", 4, 0, "timed out", None),
        # ping.exe says "Received = 4" and exits 0: these are not replies.
        ("ping-win-host-unreachable.out", 4, 0, "host unreachable", None),
        ("ping-win11-general-failure.out", 3, 0, "host unreachable", None),
        ("ping-fr-win10-garbled.out", 4, 0, "timed out", None),
    ],
)
def test_ping_exe_text(sample, sent, received, error, rtt):
    result = ping_win.parse_ping_text((DATA / sample).read_text(encoding="utf-8"), "t")
    assert (result.transmitted, result.received, result.error) == (sent, received, error)
    if rtt:
        assert (result.rtt_min_ms, result.rtt_avg_ms, result.rtt_max_ms) == rtt


def test_ping_exe_text_without_statistics_is_a_parse_error():
    text = "Pinging 192.168.207.100 with 32 bytes of data:\nRequest timed out.\n"
    with pytest.raises(ParseError):
        ping_win.parse_ping_text(text, "t")


def test_ipconfig_falls_back_to_ipconfig_all_text_when_wmi_is_broken():
    text = (DATA / "ipconfig-all-server2016.out").read_text(encoding="utf-8", errors="replace")
    net = ipconfig_win.parse(
        {"ipconfig": out("ipconfig", {"source": "ipconfig /all", "text": text})}
    )
    assert net.source == "ipconfig /all"
    assert any(i.ipv4 for i in net.interfaces)


def test_ping_falls_back_to_ping_exe_text_counting_only_real_replies():
    text = (DATA / "ping-win-host-unreachable.out").read_text(encoding="utf-8", errors="replace")
    payload = {"target": "mx2", "address": "mx2", "source": "ping.exe", "text": text}
    result = ping_win.parse(out("ping:mx2", payload), "mx2")
    assert result.received == 0 and result.transmitted > 0  # ping.exe says "Received = N"


# ----------------------------------------------- servers mail teams run (issue 11, Windows)

# What the scripts call that CIM or WMI answers: each must sit inside a try, so that a
# broken repository makes the step fall back (WMI, .NET, ipconfig /all, ping.exe).
_CIM_CALL = (
    r"\b(?:Get-NetAdapter|Get-NetAdapterBinding|Get-NetIPAddress|Get-NetIPInterface"
    r"|Get-NetRoute|Get-DnsClientServerAddress|Get-WmiObject|Get-CimInstance)\b"
)


def unguarded_calls(script: str) -> list[str]:
    """Lines of ``script`` calling CIM/WMI outside every ``try { }`` (Get-Command aside)."""
    found = []
    stack: list[str] = []
    for line in script.splitlines():
        code = re.sub(r"'[^']*'", "''", line)  # string literals hold no code
        for token in re.finditer(r"\btry\s*\{|\{|\}|" + _CIM_CALL, code):
            text = token.group(0)
            if text.startswith("try"):
                stack.append("try")
            elif text == "{":
                stack.append("")
            elif text == "}":
                stack.pop()
            elif "try" not in stack and not code[: token.start()].rstrip().endswith("Get-Command"):
                found.append(line.strip())
    return found


@pytest.mark.parametrize("name", ["binding/binding.ps1", "ipconfig/ipconfig.ps1", "ping/ping.ps1"])
def test_every_cim_and_wmi_call_sits_inside_a_try_so_the_fallbacks_are_reachable(name):
    assert unguarded_calls(windows.script_text(name)) == []


def test_the_unguarded_call_finder_finds_one():
    assert unguarded_calls("if ($x) {\n$a = Get-NetRoute -PolicyStore ActiveStore\n}") == [
        "$a = Get-NetRoute -PolicyStore ActiveStore"
    ]
    assert unguarded_calls("try {\n$a = @(Get-WmiObject Win32_X)\n} catch { $b = 1 }") == []


def test_scripts_read_hidden_adapters_and_only_the_active_routes():
    ipconfig = windows.script_text("ipconfig/ipconfig.ps1")
    assert "Get-NetAdapter -IncludeHidden" in ipconfig
    for name in ("ipconfig/ipconfig.ps1", "ping/ping.ps1"):
        assert "Get-NetRoute -AddressFamily IPv4 -PolicyStore ActiveStore" in windows.script_text(
            name
        )
    assert "AddressState" in ipconfig and "InterfaceMetric" in ipconfig


def nettcpip(**changes) -> dict:
    data = json.loads(json.dumps(NETTCPIP))
    data.update(changes)
    return data


def test_ipconfig_hidden_cluster_adapter_is_marked_internal():
    # Get-NetAdapter -IncludeHidden on a cluster node: NetFT, ComponentID ROOT\NetFt, Hidden.
    netft = {
        "Name": "Local Area Connection* 12",
        "InterfaceDescription": "Microsoft Failover Cluster Virtual Adapter",
        "Status": "Up",
        "MacAddress": "02-50-8D-B6-0E-02",
        "ifIndex": 6,
        "ComponentID": "ROOT\\NetFt",
        "Hidden": True,
        "Virtual": True,
    }
    net = ipconfig_win.parse({"ipconfig": out("ipconfig", nettcpip(adapters=netft))})
    (cluster,) = [i for i in net.interfaces if not i.loopback]
    assert cluster.internal == "failover cluster adapter (NetFT)"
    assert cluster.ipv4[0].address == "169.254.47.112"


def test_ipconfig_other_hidden_adapters_are_internal_visible_ones_are_not():
    hidden = {**NETTCPIP["adapters"], "Hidden": True, "Virtual": True}
    net = ipconfig_win.parse({"ipconfig": out("ipconfig", nettcpip(adapters=hidden))})
    assert [i.internal for i in net.interfaces] == ["", "hidden adapter"]
    visible = {**NETTCPIP["adapters"], "Hidden": False, "Virtual": True}
    net = ipconfig_win.parse({"ipconfig": out("ipconfig", nettcpip(adapters=visible))})
    assert [i.internal for i in net.interfaces] == ["", ""]


def test_ipconfig_address_state_is_read_as_its_name():
    data = nettcpip()
    data["addresses"][0]["AddressState"] = 2  # Duplicate
    data["addresses"][1]["AddressState"] = 4  # Preferred
    loopback, eth = ipconfig_win.parse({"ipconfig": out("ipconfig", data)}).interfaces
    assert (eth.ipv4[0].state, loopback.ipv4[0].state) == ("Duplicate", "Preferred")
    assert (
        ipconfig_win.parse({"ipconfig": out("ipconfig", NETTCPIP)}).interfaces[1].ipv4[0].state
        == ""
    )


def test_ipconfig_default_gateways_come_lowest_route_plus_interface_metric_first():
    data = nettcpip(
        adapters=[
            {"Name": "Team1", "Status": "Up", "ifIndex": 12},
            {"Name": "Backup", "Status": "Up", "ifIndex": 6},
        ],
        interfaces=[
            {"InterfaceIndex": 12, "InterfaceAlias": "Team1", "Dhcp": 0, "InterfaceMetric": 5},
            {"InterfaceIndex": 6, "InterfaceAlias": "Backup", "Dhcp": 0, "InterfaceMetric": 25},
        ],
        routes=[
            {"InterfaceIndex": 6, "NextHop": "10.20.0.1", "RouteMetric": 0},
            {"InterfaceIndex": 12, "NextHop": "198.18.0.1", "RouteMetric": 256},
        ],
    )
    net = ipconfig_win.parse({"ipconfig": out("ipconfig", data)})
    assert net.default_gateways == ("10.20.0.1", "198.18.0.1")
    assert [(r.gateway, r.interface, r.metric) for r in net.default_routes] == [
        ("10.20.0.1", "Backup", 25),
        ("198.18.0.1", "Team1", 261),
    ]


def test_ipconfig_from_wmi_orders_gateways_by_cost_and_has_no_address_state():
    config = {
        "Description": "Intel(R) PRO/1000 MT Network Connection",
        "SettingID": "{F856FDB3-CE70-489D-A231-704790DC1351}",
        "IPAddress": ["198.18.0.35", "fe80::1"],
        "IPSubnet": ["255.255.255.0", "64"],
        "DefaultIPGateway": ["198.18.0.254", "198.18.0.1"],
        "GatewayCostMetric": [50, 10],
        "IPConnectionMetric": 20,
        "DHCPEnabled": False,
    }
    payload = {"source": "Win32_NetworkAdapterConfiguration", "configs": config, "fallback": ""}
    net = ipconfig_win.parse({"ipconfig": out("ipconfig", payload)})
    assert net.default_gateways == ("198.18.0.1", "198.18.0.254")
    assert [r.metric for r in net.default_routes] == [30, 70]
    assert net.interfaces[0].ipv4[0].state == ""
    assert net.source == "Win32_NetworkAdapterConfiguration"


def test_ipconfig_says_why_it_fell_back():
    text = (DATA / "ipconfig-all-server2016.out").read_text(encoding="utf-8", errors="replace")
    why = "NetTCPIP: Invalid class; WMI: Invalid namespace"
    payload = {"source": "ipconfig /all", "text": text, "fallback": why}
    net = ipconfig_win.parse({"ipconfig": out("ipconfig", payload)})
    assert net.source == f"ipconfig /all (after {why})"
    assert all(i.internal == "" for i in net.interfaces)


def test_a_cluster_adapter_is_known_by_its_description_where_nothing_else_says():
    # The description ipconfig /all shows for NetFT (tests/data/windows/README.md, itprotoday).
    from fleet.checks.net.windows import internal_reason

    assert internal_reason("Microsoft Failover Cluster Virtual Adapter") == (
        "failover cluster adapter (NetFT)"
    )
    assert internal_reason("Intel(R) 82574L Gigabit Network Connection") == ""


BOUND_TO_A_SWITCH_OR_TEAM = {
    "source": "Get-NetAdapterBinding",
    "adapters": [
        {"Name": "vEthernet (External)", "InterfaceDescription": "Hyper-V Virtual Ethernet "
         "Adapter", "Status": "Up", "Virtual": True},
        {"Name": "Ethernet0", "InterfaceDescription": "Intel(R) 82574L", "Status": "Up"},
        {"Name": "NIC2", "InterfaceDescription": "Intel(R) 82574L #2", "Status": "Up"},
    ],
    "bindings": [
        {"Name": "vEthernet (External)", "ComponentID": "ms_tcpip", "Enabled": True},
        {"Name": "vEthernet (External)", "ComponentID": "ms_msclient", "Enabled": True},
        {"Name": "vEthernet (External)", "ComponentID": "vms_pp", "Enabled": False},
        {"Name": "Ethernet0", "ComponentID": "ms_tcpip", "Enabled": False},
        {"Name": "Ethernet0", "ComponentID": "vms_pp", "Enabled": True},
        {"Name": "NIC2", "ComponentID": "ms_tcpip", "Enabled": False},
        {"Name": "NIC2", "ComponentID": "ms_implat", "Enabled": True},
    ],
}  # fmt: skip


def test_binding_marks_switch_uplinks_and_team_members_internal():
    net = binding_win.parse({"binding": out("binding", BOUND_TO_A_SWITCH_OR_TEAM)})
    assert [(i.name, i.internal) for i in net.interfaces] == [
        ("vEthernet (External)", ""),
        ("Ethernet0", "Hyper-V switch uplink"),
        ("NIC2", "NIC team member"),
    ]
    result = BindingCheck().judge("hv1", WINDOWS, {}, net, "")
    assert (result.status, result.summary) == (Status.OK, "TCP/IP bound to vEthernet (External)")


def test_binding_falls_back_to_the_registry_and_dotnet_adapters_and_says_why():
    payload = {
        "source": "registry",
        "adapters": [
            {
                "NetConnectionID": "Ethernet0",
                "Description": "vmxnet3",
                "NetConnectionStatus": 2,
                "MACAddress": "00155D120031",
                "GUID": "{5F1C2A31-8D3E-4B7A-9C11-0A1B2C3D4E31}",
            }
        ],
        "adapters_from": "NetworkInterface",
        "bind": {"ms_tcpip": ["\\Device\\{5F1C2A31-8D3E-4B7A-9C11-0A1B2C3D4E31}"]},
        "fallback": "Get-NetAdapterBinding: Invalid class; Win32_NetworkAdapter: Invalid class",
    }
    net = binding_win.parse({"binding": out("binding", payload)})
    assert net.source == (
        "registry Linkage\\Bind, adapters from .NET NetworkInterface (after "
        "Get-NetAdapterBinding: Invalid class; Win32_NetworkAdapter: Invalid class)"
    )
    assert dict(net.interfaces[0].bindings) == {"ms_tcpip": True}


def test_ping_reports_carry_their_source_and_the_gateway_lookup_used():
    payload = {
        "target": "gateway",
        "address": "198.18.0.1",
        "source": "Win32_PingStatus",
        "replies": [{"status": 0, "time": 1, "resolution": 0, "address": "198.18.0.1"}],
        "gateway_from": "NetworkInterface",
        "fallback": "Get-NetRoute: Invalid class; WMI: Invalid class",
    }
    result = ping_win.parse(out("ping:gateway", payload), "gateway")
    assert (result.received, result.address) == (1, "198.18.0.1")
    missing = {"target": "gateway", "error": "no default gateway", "gateway_from": "Get-NetRoute"}
    assert ping_win.parse(out("ping:gateway", missing), "gateway").error == "no default gateway"
