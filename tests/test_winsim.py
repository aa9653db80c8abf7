"""tests.lab.winsim: each simulated Windows host, driven the way the audit drives it.

Round trip for every profile: compose -> handle_script -> split_sections ->
parse_*.  Ping and SMTP are real, towards loopback only (aiosmtpd and small
socket servers on 127.0.0.1); probes the profile cannot route send nothing.
"""

from __future__ import annotations

import dataclasses
import json
import socket
import threading
import time
from collections.abc import Iterator

import pytest
from aiosmtpd.controller import Controller

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
from tests.lab import winsim

NONCE = "feedc0de12345678"
LAB_ADDRESS = "198.18.0.31"


def run(profile: winsim.Profile, steps: list[Step], timeout: float = 20) -> dict[str, StepOutput]:
    script = windows.compose(steps, NONCE, timeout)
    stdout, stderr, code = winsim.handle_script(profile, script, address=LAB_ADDRESS)
    assert (code, stderr) == (0, b"")
    return dict(split_sections(stdout, NONCE, steps))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def smtp_port() -> Iterator[int]:
    """A real SMTP server (aiosmtpd) on loopback."""

    class Sink:
        async def handle_DATA(self, server, session, envelope):  # never reached: no DATA
            return "250 OK"

    port = free_port()
    controller = Controller(Sink(), hostname="127.0.0.1", port=port)
    controller.start()
    yield port
    controller.stop()


def scripted_server(lines: list[bytes]) -> tuple[int, threading.Event]:
    """A one-connection server that sends ``lines`` then answers each command with 250/221."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    done = threading.Event()

    def serve() -> None:
        with listener:
            listener.settimeout(10)
            conn, _ = listener.accept()
            with conn:
                conn.sendall(b"".join(lines))
                reader = conn.makefile("rb")
                for line in reader:
                    if line.upper().startswith(b"EHLO"):
                        conn.sendall(b"250-mx3.lab\r\n250-STARTTLS\r\n250 SIZE 1000\r\n")
                    elif line.upper().startswith(b"QUIT"):
                        conn.sendall(b"221 bye\r\n")
                        break
            done.set()

    threading.Thread(target=serve, daemon=True).start()
    return port, done


def check_steps(check, **params) -> list[Step]:
    return list(check.steps(Platform.WINDOWS, check.validate(params)))


def smtp_step(target: str, port: int, timeout: float = 3) -> Step:
    # Straight to the step builder: a hostile target must reach the host as data.
    params = SmtpCheck().validate({"port": port, "timeout": timeout})
    return smtp_win.step(f"smtp:{target}", target, params)


# --------------------------------------------------------------------------- every profile


AUDIT = (
    check_steps(BindingCheck())
    + check_steps(IpconfigCheck())
    + check_steps(PingCheck(), targets=["127.0.0.1"], count=2, timeout=1)
)


@pytest.mark.parametrize("name", sorted(winsim.PROFILES))
def test_every_profile_round_trips_through_the_real_parsers(name):
    profile = winsim.PROFILES[name]
    outputs = run(profile, AUDIT)
    binding = binding_win.parse(outputs)
    ipconfig = ipconfig_win.parse(outputs)
    loop = ping_win.parse(outputs["ping:127.0.0.1"], "127.0.0.1")
    assert binding.interfaces and ipconfig.interfaces
    assert (loop.transmitted, loop.received) == (2, 2)  # a real ICMP echo on loopback
    assert all(o.exit_status == 0 for o in outputs.values())


def nic(facts, loopback=False):
    (iface,) = [i for i in facts.interfaces if i.loopback is loopback]
    return iface


def test_ok_is_a_healthy_server_2019():
    outputs = run(winsim.PROFILES["ok"], AUDIT)
    eth = nic(binding_win.parse(outputs))
    assert dict(eth.bindings)["ms_tcpip"] is True and dict(eth.bindings)["ms_msclient"]
    ipconfig = ipconfig_win.parse(outputs)
    assert [(a.address, a.prefix) for a in nic(ipconfig).ipv4] == [(LAB_ADDRESS, 24)]
    assert ipconfig.default_gateways == ("198.18.0.1",) and nic(ipconfig).dhcp is False
    assert ipconfig.source == "NetTCPIP"


def test_one_adapter_comes_back_as_an_object_like_convertto_json_writes_it():
    outputs = run(winsim.PROFILES["ok"], check_steps(BindingCheck()))
    raw = json.loads(outputs["binding"].stdout)
    assert isinstance(raw["adapters"], dict) and isinstance(raw["bindings"], list)


def test_unbound_has_tcpip_unchecked_and_no_ipv4():
    outputs = run(winsim.PROFILES["unbound"], AUDIT)
    assert dict(nic(binding_win.parse(outputs)).bindings)["ms_tcpip"] is False
    ipconfig = ipconfig_win.parse(outputs)
    assert nic(ipconfig).ipv4 == () and ipconfig.default_gateways == ()


def test_unbound_host_reaches_nothing_and_sends_nothing():
    steps = check_steps(PingCheck(), targets=["198.18.0.11"], gateway=True, count=1)
    steps.append(smtp_step("198.18.0.11", 25))
    outputs = run(winsim.PROFILES["unbound"], steps)
    gateway = ping_win.parse(outputs["ping:gateway"], "gateway")
    assert gateway.error == "no default gateway"
    peer = ping_win.parse(outputs["ping:198.18.0.11"], "198.18.0.11")
    assert peer.received == 0 and peer.error.startswith("general failure")
    smtp = smtp_win.parse(outputs["smtp:198.18.0.11"], "198.18.0.11")
    assert smtp.outcome == "unreachable"


def test_apipa_reports_169_254_with_dhcp_on_and_no_gateway():
    outputs = run(winsim.PROFILES["apipa"], AUDIT)
    eth = nic(ipconfig_win.parse(outputs))
    assert eth.ipv4[0].address.startswith("169.254.") and eth.ipv4[0].prefix == 16
    assert eth.dhcp is True and eth.gateways == ()


def test_nogw_is_static_without_gateway():
    steps = list(AUDIT) + check_steps(PingCheck(), count=1)
    outputs = run(winsim.PROFILES["nogw"], steps)
    ipconfig = ipconfig_win.parse(outputs)
    assert nic(ipconfig).ipv4[0].address == LAB_ADDRESS and ipconfig.default_gateways == ()
    assert ping_win.parse(outputs["ping:gateway"], "gateway").error == "no default gateway"


def test_2008_takes_the_powershell_2_fallbacks():
    outputs = run(winsim.PROFILES["2008"], AUDIT)
    binding, ipconfig = binding_win.parse(outputs), ipconfig_win.parse(outputs)
    assert binding.source == "registry Linkage\\Bind"
    assert ipconfig.source == "Win32_NetworkAdapterConfiguration"
    (lan,) = binding.interfaces
    assert dict(lan.bindings)["ms_tcpip"] is True
    assert [(a.address, a.prefix) for a in ipconfig.interfaces[0].ipv4] == [(LAB_ADDRESS, 24)]
    # the script's own writer: compact, no JavaScriptSerializer escapes
    assert b": " not in outputs["binding"].stdout and b"\\\\Device\\\\" in outputs["binding"].stdout


def test_badpass_host_keeps_the_lab_credentials():
    profile = winsim.PROFILES["badpass"]
    assert (profile.user, profile.password) == ("fleet", "Lab-Passw0rd")
    assert "Lab-Passw0rd" not in repr(profile)


# --------------------------------------------------------------------------- real probes


def test_gateway_is_resolved_on_the_host_and_pinged_for_real():
    adapter = dataclasses.replace(winsim.PROFILES["ok"].adapters[0], gateway="127.0.0.1")
    profile = dataclasses.replace(winsim.PROFILES["ok"], adapters=(adapter,))
    outputs = run(profile, check_steps(PingCheck(), count=2))
    result = ping_win.parse(outputs["ping:gateway"], "gateway")
    assert (result.received, result.address) == (2, "127.0.0.1")


def test_smtp_against_a_real_server(smtp_port):
    outputs = run(winsim.PROFILES["ok"], [smtp_step("127.0.0.1", smtp_port)])
    probe = smtp_win.parse(outputs["smtp:127.0.0.1"], "127.0.0.1")
    assert probe.outcome == "ok" and probe.greeting_code == 220
    assert probe.ehlo[-1].startswith("250 ") and probe.connect_ms is not None


def test_smtp_multi_line_greeting_is_read_whole_before_ehlo():
    port, done = scripted_server([b"220-mx3.lab ESMTP\r\n", b"220-no UCE\r\n", b"220 mx3.lab\r\n"])
    outputs = run(winsim.PROFILES["2008"], [smtp_step("127.0.0.1", port)])
    probe = smtp_win.parse(outputs["smtp:127.0.0.1"], "127.0.0.1")
    assert probe.greeting == ("220-mx3.lab ESMTP", "220-no UCE", "220 mx3.lab")
    assert probe.outcome == "ok" and probe.starttls
    assert done.wait(5)


def test_smtp_421_is_a_bad_greeting():
    port, _ = scripted_server([b"421 4.3.2 Service not available\r\n"])
    outputs = run(winsim.PROFILES["ok"], [smtp_step("127.0.0.1", port)])
    probe = smtp_win.parse(outputs["smtp:127.0.0.1"], "127.0.0.1")
    assert (probe.outcome, probe.greeting_code) == ("bad-greeting", 421)


def test_smtp_refused_and_silent_servers():
    silent = socket.create_server(("127.0.0.1", 0))  # accepts, never speaks
    with silent:
        steps = [
            smtp_step("127.0.0.1", free_port()),
            smtp_step("localhost", silent.getsockname()[1], 0.5),
        ]
        outputs = run(winsim.PROFILES["ok"], steps)
    refused = smtp_win.parse(outputs[steps[0].key], "127.0.0.1")
    assert refused.outcome == "refused"
    quiet = smtp_win.parse(outputs[steps[1].key], "localhost")
    assert quiet.outcome == "timeout" and quiet.error == "greeting failed: TimedOut"


def test_names_that_do_not_resolve(monkeypatch):
    # The resolver is stubbed so no DNS query leaves the machine.
    monkeypatch.setattr(winsim, "_resolve", lambda name: None)
    steps = check_steps(PingCheck(), targets=["mx9"], gateway=False, count=1)
    steps.append(smtp_step("mx9", 25))
    outputs = run(winsim.PROFILES["ok"], steps)
    assert ping_win.parse(outputs["ping:mx9"], "mx9").error == "unknown host"
    assert smtp_win.parse(outputs["smtp:mx9"], "mx9").outcome == "unresolved"


def test_targets_outside_the_lab_are_never_probed():
    steps = check_steps(PingCheck(), targets=["192.0.2.99"], gateway=False, count=1)
    outputs = run(winsim.PROFILES["ok"], steps)
    assert outputs["ping:192.0.2.99"].exit_status == 1
    with pytest.raises(ParseError, match="outside the lab"):
        ping_win.parse(outputs["ping:192.0.2.99"], "192.0.2.99")


def test_a_stuck_step_times_out_alone(monkeypatch):
    def slow(profile, address, params):
        time.sleep(3)
        return {}

    monkeypatch.setitem(winsim.EMULATORS, "smtp/smtp.ps1", slow)
    steps = [*check_steps(BindingCheck()), smtp_step("127.0.0.1", 25)]
    started = time.monotonic()
    outputs = run(winsim.PROFILES["ok"], steps, timeout=1)
    assert time.monotonic() - started < 2.5
    assert outputs["binding"].exit_status == 0
    assert outputs["smtp:127.0.0.1"].exit_status == 124
    assert b"did not finish within 1 s" in outputs["smtp:127.0.0.1"].stdout


# --------------------------------------------------------------------------- only fleet's scripts


def test_the_simulator_answers_every_step_script_fleet_ships():
    # A check's Windows script needs exactly one answer here (winsim's @answers).
    assert set(winsim.EMULATORS) == set(windows.SCRIPTS)


def test_anything_but_a_composed_script_is_refused():
    stdout, stderr, code = winsim.handle_script(
        winsim.PROFILES["ok"], "Get-Process | Stop-Process", address=LAB_ADDRESS
    )
    assert (stdout, code) == (b"", 1)
    assert b"CommandNotFoundException" in stderr


def test_a_composed_script_with_code_added_is_refused():
    script = windows.compose(AUDIT, NONCE, 20)
    for tampered in (
        script.replace("$ProgressPreference", "Remove-Item C:\\x; $ProgressPreference", 1),
        script.replace("fleetRun $fleetCode", "iex 'calc'\nfleetRun $fleetCode"),
        script.replace("Win32_PingStatus", "Win32_Process"),
        script + "Restart-Computer\n",
    ):
        assert winsim.recognise(tampered) is None
        assert winsim.handle_script(winsim.PROFILES["ok"], tampered, address=LAB_ADDRESS)[2] == 1


def test_recognise_reads_back_the_steps_as_data():
    hostile = "mx1'; Remove-Item C:\\ -Recurse; '"
    script = windows.compose([smtp_step(hostile, 2525)], NONCE, 7)
    audit = winsim.recognise(script)
    assert audit is not None and audit.nonce == NONCE and audit.timeout_ms == 7000
    assert dict(audit.steps[0].params) == {
        "helo": "fleet.invalid",
        "port": "2525",
        "target": hostile,
        "timeout_ms": "3000",
        "greet_ms": "30000",
    }


# ------------------------------------------------------------- JSON as PowerShell writes it


def test_ps2_writer_and_convertto_json_escaping_both_parse_back():
    value = {"a": ['220 <mx> "q" \\ caf\u00e9\n', 1.5, None, True], "n": 3}
    for text in (winsim.ps2_json(value), winsim.ps51_json(value)):
        assert json.loads(text) == value
    assert "\\u003cmx\\u003e" in winsim.ps51_json(value)
    assert "\\u000a" in winsim.ps2_json(value) and "<mx>" in winsim.ps2_json(value)


# ------------------------------------------------ servers mail teams run (issue 11, Windows)


def judged(name: str):
    outputs = run(winsim.PROFILES[name], AUDIT)
    binding = BindingCheck().judge("h", Platform.WINDOWS, {}, binding_win.parse(outputs), "")
    ipconfig = IpconfigCheck().judge("h", Platform.WINDOWS, {}, ipconfig_win.parse(outputs), "")
    return binding, ipconfig


@pytest.mark.parametrize("name", ["dag", "team", "hyperv"])
def test_cluster_team_and_hyper_v_hosts_are_healthy(name):
    binding, ipconfig = judged(name)
    assert (binding.status, ipconfig.status) == (Status.OK, Status.OK), (
        binding.summary,
        ipconfig.summary,
    )


def test_dag_node_lists_its_hidden_cluster_adapter_without_judging_it():
    outputs = run(winsim.PROFILES["dag"], AUDIT)
    net = ipconfig_win.parse(outputs)
    (netft,) = [i for i in net.interfaces if i.internal]
    assert netft.ipv4[0].address.startswith("169.254.")
    assert netft.internal == "failover cluster adapter (NetFT)"
    # Get-NetAdapterBinding, like Get-NetAdapter, leaves hidden adapters out.
    assert all(not i.internal for i in binding_win.parse(outputs).interfaces)


def test_team_reads_only_the_active_route_not_the_persistent_leftover():
    net = ipconfig_win.parse(run(winsim.PROFILES["team"], AUDIT))
    assert net.default_gateways == ("198.18.0.1",)
    assert [(r.gateway, r.interface, r.metric) for r in net.default_routes] == [
        ("198.18.0.1", "Team1", 15)
    ]
    members = {i.name for i in binding_win.parse(run(winsim.PROFILES["team"], AUDIT)).interfaces}
    assert {"NIC1", "NIC2", "Team1"} == members


def test_hyper_v_uplink_is_internal_and_vethernet_carries_tcpip():
    binding = binding_win.parse(run(winsim.PROFILES["hyperv"], AUDIT))
    assert {i.name: i.internal for i in binding.interfaces} == {
        "Ethernet0": "Hyper-V switch uplink",
        "vEthernet (External)": "",
    }


def test_duplicate_address_fails_ipconfig_with_address_conflict():
    binding, ipconfig = judged("dupaddr")
    assert binding.status is Status.OK
    assert (ipconfig.status, ipconfig.cause) == (Status.FAIL, causes.ADDRESS_CONFLICT)
    assert ipconfig.summary.startswith("address 198.18.0.200 on Ethernet0 is Duplicate")


def test_gateway_ping_reports_the_lookup_it_used():
    steps = check_steps(PingCheck(), targets=[], gateway=True, count=1, timeout=1)
    assert [s.target for s in steps] == ["gateway"]
    for name, lookup in (("ok", "Get-NetRoute"), ("2008", "NetworkInterface")):
        profile = winsim.PROFILES[name]
        loop = dataclasses.replace(profile.adapters[0], gateway="127.0.0.1")  # pinged for real
        profile = dataclasses.replace(profile, adapters=(loop,))
        report = winsim.ping_report(profile, LAB_ADDRESS, steps[0].params)
        assert (report["source"], report["gateway_from"]) == ("Win32_PingStatus", lookup)


def test_the_audit_script_as_ansibles_raw_sends_it_is_recognised():
    """Ansible's PowerShell plugin strips every line and drops blank ones (and the final
    newline): the bench points ``ansible -m raw`` at the simulator with fleet's script."""
    script = windows.compose(AUDIT, NONCE, 20)
    as_ansible = "\n".join(line.strip() for line in script.splitlines() if line.strip())
    assert as_ansible != script
    audit = winsim.recognise(as_ansible)
    assert audit is not None and [s.script for s in audit.steps] == [s.script for s in AUDIT]
    # Still only fleet's script: the same reshaping of a tampered one is refused.
    tampered = script.replace("fleetRun $fleetCode", "iex 'calc'\nfleetRun $fleetCode")
    assert winsim.recognise(winsim.ansible_form(tampered)) is None
