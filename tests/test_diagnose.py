"""The diagnosis tells the KB's two causes apart, and says what to do about each."""

from __future__ import annotations

from dataclasses import asdict, replace

import pytest

from fleet import causes
from fleet.checks.facts import Address, Interface, NetConfig, PingResult, SmtpProbe
from fleet.diagnose import (
    CHECK_ERROR,
    DUPLICATE_ADDRESS,
    HOST_DOWN,
    LOCAL_STACK,
    MAIL_SERVICE,
    NETWORK_PATH,
    NOT_AUDITED,
    ONE_SIDED,
    PAIR_OK,
    PAIR_PING_BLOCKED,
    diagnose,
)
from fleet.model import CheckResult, HostResult, RunResult, Status

ADDR = {"mx1": "198.18.0.11", "mx2": "198.18.0.12", "mx3": "198.18.0.13"}


# --------------------------------------------------------------------------- builders


def netconfig(address: str, prefix: int = 24, gateway: str = "198.18.0.1", **iface) -> dict:
    gateways = (gateway,) if gateway else ()
    return asdict(
        NetConfig(
            interfaces=(
                Interface(name="lo", up=True, loopback=True, ipv4=(Address("127.0.0.1", 8),)),
                Interface(
                    name=iface.pop("name", "eth0"),
                    up=True,
                    ipv4=(Address(address, prefix),) if address else (),
                    gateways=gateways,
                    **iface,
                ),
            ),
            default_gateways=gateways,
        )
    )


def ipconfig(host: str, status=Status.OK, summary="address ok", cause="", **kw) -> CheckResult:
    facts = netconfig(kw.pop("address", ADDR[host]), **kw)
    return CheckResult(host, "ipconfig", status, summary, facts=facts, cause=cause)


def binding(host: str, status=Status.OK, summary="TCP/IP bound", cause="", **kw) -> CheckResult:
    facts = netconfig(kw.pop("address", ADDR[host]), **kw)
    return CheckResult(host, "binding", status, summary, facts=facts, cause=cause)


def ping(host: str, target: str, received: int = 3, address: str = "") -> CheckResult:
    facts = PingResult(target, 3, received, 0.2, 0.4, 0.6, address=address or ADDR.get(target, ""))
    status, cause = (Status.OK, "") if received else (Status.FAIL, causes.NO_REPLY)
    return CheckResult(
        host, "ping", status, f"{received}/3", target=target, facts=asdict(facts), cause=cause
    )


SMTP_CAUSE = {
    "refused": causes.REFUSED,
    "timeout": causes.TIMEOUT,
    "unreachable": causes.UNREACHABLE,
    "unresolved": causes.NAME_UNRESOLVED,
    "bad-greeting": causes.BAD_GREETING,
    "error": causes.SMTP_ERROR,
}


def smtp(host: str, target: str, outcome: str = "ok", greeting: str = "") -> CheckResult:
    code = int(greeting[:3]) if greeting else (220 if outcome == "ok" else None)
    lines = (greeting or f"220 {target} ESMTP",) if code else ()
    facts = SmtpProbe(target, 25, outcome, greeting_code=code, greeting=lines)
    status = Status.OK if outcome == "ok" else Status.FAIL
    return CheckResult(
        host,
        "smtp",
        status,
        outcome,
        target=target,
        facts=asdict(facts),
        cause=SMTP_CAUSE.get(outcome, ""),
    )


def reach(host: str, port: int, is_open: bool = True) -> CheckResult:
    status, cause = (Status.OK, "") if is_open else (Status.FAIL, causes.TIMEOUT)
    return CheckResult(host, "reach", status, f"port {port}", target=str(port), cause=cause)


def unreachable(host: str, summary: str, cause: str) -> CheckResult:
    return CheckResult(host, "binding", Status.UNREACHABLE, summary, cause=cause)


def host(name: str, *results: CheckResult, platform: str = "unix") -> HostResult:
    connection = "winrm" if platform == "windows" else "ssh"
    return HostResult(name, ADDR.get(name, name), connection, platform, tuple(results))


def run(*hosts: HostResult) -> RunResult:
    return RunResult("inventories/prod", "mail.yml", "2024-05-01T02:00:00Z", "x", tuple(hosts))


def healthy(name: str, peers=("mx1", "mx2", "mx3"), **kw) -> HostResult:
    results = [binding(name), ipconfig(name), reach(name, 22), reach(name, 25)]
    for peer in peers:
        if peer != name:
            results += [ping(name, peer), smtp(name, peer)]
    return host(name, *results, **kw)


def kinds(diagnosis) -> list[str]:
    return [f.cause for f in diagnosis.findings]


# --------------------------------------------------------------------------- tests


def test_healthy_fleet_has_no_findings_and_every_pair_is_ok():
    d = diagnose(run(healthy("mx1"), healthy("mx2"), healthy("mx3")))
    assert d.findings == ()
    assert len(d.pairs) == 6
    assert {p.cause for p in d.pairs} == {PAIR_OK}
    assert d.pair("mx1", "mx2").greeting == "220 mx2 ESMTP"


def test_target_nobody_reaches_and_runner_cannot_either_is_host_down():
    mx3 = host(
        "mx3",
        unreachable("mx3", "timed out connecting to port 22", causes.CONNECT_TIMEOUT),
        reach("mx3", 22, False),
    )
    mx1 = healthy("mx1", peers=("mx2",))
    mx2 = healthy("mx2", peers=("mx1",))
    mx1 = host("mx1", *mx1.results, ping("mx1", "mx3", 0), smtp("mx1", "mx3", "timeout"))
    mx2 = host("mx2", *mx2.results, ping("mx2", "mx3", 0), smtp("mx2", "mx3", "unreachable"))
    d = diagnose(run(mx1, mx2, mx3))
    assert kinds(d) == [HOST_DOWN]  # not also "not audited": being down explains that
    (down,) = d.findings
    assert down.hosts == ("mx3",)
    assert any("runner -> mx3: port 22 no answer" in e for e in down.evidence)
    assert d.pair("mx1", "mx3").cause == HOST_DOWN
    assert d.pair("mx2", "mx1").cause == PAIR_OK


def test_target_the_runner_reaches_but_no_peer_does_is_a_network_path_problem():
    mx1 = healthy("mx1", peers=("mx2",))
    mx1 = host("mx1", *mx1.results, ping("mx1", "mx3", 0), smtp("mx1", "mx3", "timeout"))
    mx2 = healthy("mx2", peers=("mx1",))
    mx2 = host("mx2", *mx2.results, ping("mx2", "mx3", 0), smtp("mx2", "mx3", "timeout"))
    mx3 = healthy("mx3", peers=())
    d = diagnose(run(mx1, mx2, mx3))
    assert kinds(d) == [NETWORK_PATH]
    assert "runner reaches it" in d.findings[0].title


def test_apipa_address_is_the_hosts_own_stack_not_its_peers():
    mx2 = host(
        "mx2",
        binding("mx2"),
        ipconfig(
            "mx2",
            Status.FAIL,
            "APIPA address 169.254.7.9: DHCP failed",
            causes.APIPA,
            address="169.254.7.9",
        ),
        ping("mx2", "mx1", 0),
        smtp("mx2", "mx1", "unreachable"),
        platform="windows",
    )
    mx1 = host("mx1", *healthy("mx1", peers=("mx3",)).results, ping("mx1", "mx2", 0))
    mx3 = healthy("mx3", peers=("mx1",))
    d = diagnose(run(mx1, mx2, mx3))
    assert kinds(d) == [LOCAL_STACK]
    (finding,) = d.findings
    assert finding.hosts == ("mx2",)
    assert "ipconfig: APIPA address 169.254.7.9: DHCP failed" in finding.evidence
    assert "ipconfig /renew" in finding.fix
    assert "Get-NetIPConfiguration" in finding.fix
    assert "Enable-NetAdapterBinding" not in finding.fix  # TCP/IP is bound: not the fix
    # what mx2 and its peers fail to do is explained by mx2's stack, not blamed on mx1
    assert d.pair("mx2", "mx1").cause == LOCAL_STACK
    assert d.pair("mx1", "mx2").cause == LOCAL_STACK


def test_tcpip_unbound_on_windows_names_the_adapter_to_rebind():
    bound_off = (("ms_tcpip", False), ("ms_msclient", True))
    mx1 = host(
        "mx1",
        binding("mx1", Status.FAIL, "TCP/IP not bound on Ethernet0", causes.TCPIP_UNBOUND,
                name="Ethernet0", bindings=bound_off),
        platform="windows",
    )  # fmt: skip
    d = diagnose(run(mx1))
    (finding,) = d.findings
    assert finding.cause == LOCAL_STACK
    assert "Enable-NetAdapterBinding -Name 'Ethernet0' -ComponentID ms_tcpip" in finding.fix
    assert "Get-NetAdapterBinding -ComponentID ms_tcpip" in finding.fix


def test_linux_local_stack_fix_uses_iproute2():
    mx1 = host(
        "mx1",
        binding("mx1", Status.FAIL, "no interface up with an IPv4 address", causes.NO_INTERFACE_UP),
    )
    (finding,) = diagnose(run(mx1)).findings
    assert "ip -br addr" in finding.fix and "ip route" in finding.fix
    assert "Enable-NetAdapterBinding" not in finding.fix


def test_off_subnet_peer_without_gateway_is_local_stack():
    mx1 = host(
        "mx1",
        binding("mx1", gateway=""),
        ipconfig("mx1", gateway=""),
        ping("mx1", "198.18.1.20", 0, address="198.18.1.20"),
    )
    (finding,) = diagnose(run(mx1)).findings
    assert finding.cause == LOCAL_STACK
    assert any("no default gateway" in e and "198.18.1.20" in e for e in finding.evidence)


def test_host_that_reaches_none_of_its_peers_while_they_reach_each_other_is_local_stack():
    mx1 = host(
        "mx1",
        binding("mx1"),
        ipconfig("mx1"),
        ping("mx1", "mx2", 0),
        ping("mx1", "mx3", 0),
        smtp("mx1", "mx2", "timeout"),
        smtp("mx1", "mx3", "timeout"),
    )
    mx2 = host("mx2", *healthy("mx2", peers=("mx3",)).results, ping("mx2", "mx1", 0))
    mx3 = host("mx3", *healthy("mx3", peers=("mx2",)).results, ping("mx3", "mx1", 0))
    d = diagnose(run(mx1, mx2, mx3))
    assert kinds(d) == [LOCAL_STACK]
    assert d.findings[0].hosts == ("mx1",)
    assert any("reaches none of its 2 peers" in e for e in d.findings[0].evidence)


def test_every_source_failing_is_not_blamed_on_one_of_them():
    # everyone fails to reach mx3 only: mx3 is the problem, not the sources
    mx1 = host("mx1", binding("mx1"), ping("mx1", "mx3", 0))
    mx2 = host("mx2", binding("mx2"), ping("mx2", "mx3", 0))
    mx3 = host(
        "mx3", unreachable("mx3", "timed out", causes.CONNECT_TIMEOUT), reach("mx3", 22, False)
    )
    assert kinds(diagnose(run(mx1, mx2, mx3))) == [HOST_DOWN]


def test_port_25_refused_on_a_host_that_answers_ping_is_the_mail_service():
    mx1 = host("mx1", ping("mx1", "mx2"), smtp("mx1", "mx2", "refused"))
    mx2 = host("mx2", binding("mx2"), reach("mx2", 25, False))
    d = diagnose(run(mx1, mx2))
    (finding,) = d.findings
    assert finding.cause == MAIL_SERVICE
    assert finding.title == "mx2: port 25 refused (seen from mx1)"
    assert "systemctl status postfix" in finding.fix
    assert "nc -vz mx2 25   # from mx1" in finding.fix
    assert "runner -> mx2: port 25 no answer" in finding.evidence
    assert d.pair("mx1", "mx2").cause == MAIL_SERVICE


def test_bad_greeting_says_which_code():
    mx1 = host("mx1", ping("mx1", "mx2"), smtp("mx1", "mx2", "bad-greeting", "421 4.3.2 busy"))
    (finding,) = diagnose(run(mx1, host("mx2", binding("mx2")))).findings
    assert finding.title == "mx2: greeting 421 instead of 220 (seen from mx1)"
    assert any("421 4.3.2 busy" in e for e in finding.evidence)


def test_silent_port_25_on_a_pinging_host_is_the_mail_service():
    mx1 = host("mx1", ping("mx1", "mx2"), smtp("mx1", "mx2", "timeout"))
    (finding,) = diagnose(run(mx1, host("mx2", binding("mx2"), platform="windows"))).findings
    assert finding.title == "mx2: port 25 silent (seen from mx1)"
    assert "Get-NetTCPConnection -LocalPort 25" in finding.fix


def test_windows_source_is_told_to_use_test_netconnection():
    mx1 = host("mx1", ping("mx1", "mx2"), smtp("mx1", "mx2", "refused"), platform="windows")
    (finding,) = diagnose(run(mx1, host("mx2", binding("mx2")))).findings
    assert "Test-NetConnection mx2 -Port 25" in finding.fix


def test_smtp_works_but_ping_is_filtered_is_no_finding():
    mx1 = host("mx1", ping("mx1", "mx2", 0), smtp("mx1", "mx2"))
    d = diagnose(run(mx1, host("mx2", binding("mx2"))))
    assert d.findings == ()
    assert d.pair("mx1", "mx2").cause == PAIR_PING_BLOCKED


def test_authentication_failure_is_not_audited_not_a_failing_check():
    mx2 = host(
        "mx2",
        unreachable("mx2", "authentication failed for user audit", causes.AUTH_REFUSED),
        reach("mx2", 22),
    )
    d = diagnose(run(healthy("mx1", peers=()), mx2))
    (finding,) = d.findings
    assert finding.cause == NOT_AUDITED
    assert finding.severity is Status.UNREACHABLE
    assert finding.title == "mx2 was not audited: credentials refused"
    assert "mx2 (ssh): authentication failed for user audit" in finding.evidence
    assert "vault" in finding.fix
    assert "runner -> mx2: port 22 open" in finding.evidence


def test_unknown_host_key_fix_compares_fingerprints():
    mx2 = host(
        "mx2",
        unreachable(
            "mx2", "host key for 198.18.0.12 is not in known_hosts", causes.HOST_KEY_UNKNOWN
        ),
    )
    (finding,) = diagnose(run(mx2)).findings
    assert "ssh-keyscan 198.18.0.12" in finding.fix


def test_winrm_refused_fix_enables_remoting():
    mx2 = host(
        "mx2",
        unreachable("mx2", "connection refused on port 5986", causes.CONNECT_REFUSED),
        platform="windows",
    )
    (finding,) = diagnose(run(mx2)).findings
    assert "Enable-PSRemoting" in finding.fix


def test_same_address_on_two_hosts_is_a_duplicate():
    mx1 = host("mx1", ipconfig("mx1", address="198.18.0.50"))
    mx2 = host("mx2", ipconfig("mx2", address="198.18.0.50"))
    mx3 = host("mx3", ipconfig("mx3"))
    (finding,) = diagnose(run(mx1, mx2, mx3)).findings
    assert finding.cause == DUPLICATE_ADDRESS
    assert finding.hosts == ("mx1", "mx2")
    assert finding.key == "duplicate-address:198.18.0.50"
    assert "arping -D" in finding.fix


def test_a_reaches_b_but_b_does_not_reach_a_is_one_sided():
    mx1 = host("mx1", binding("mx1"), ping("mx1", "mx2"), ping("mx1", "mx3"))
    mx2 = host("mx2", binding("mx2"), ping("mx2", "mx1", 0), ping("mx2", "mx3"))
    mx3 = host("mx3", binding("mx3"), ping("mx3", "mx1"), ping("mx3", "mx2"))
    d = diagnose(run(mx1, mx2, mx3))
    assert kinds(d) == [ONE_SIDED]
    assert d.findings[0].title == "mx1 reaches mx2, but mx2 does not reach mx1"
    assert d.findings[0].key == "one-sided:mx2->mx1"
    assert d.pair("mx2", "mx1").cause == ONE_SIDED


def test_target_written_as_an_address_is_matched_to_its_inventory_host():
    mx1 = host("mx1", ping("mx1", "198.18.0.12"), smtp("mx1", "198.18.0.12", "refused"))
    d = diagnose(run(mx1, host("mx2", binding("mx2"))))
    assert d.findings[0].hosts == ("mx2",)
    assert d.pair("mx1", "mx2") is not None


def test_reach_port_read_from_facts_when_target_is_missing():
    mx3 = host(
        "mx3",
        unreachable("mx3", "timed out", causes.CONNECT_TIMEOUT),
        CheckResult("mx3", "reach", Status.OK, "port 25 open", facts={"port": 25, "open": True}),
    )
    mx1 = host("mx1", binding("mx1"), ping("mx1", "mx3", 0), smtp("mx1", "mx3", "timeout"))
    d = diagnose(run(mx1, mx3))
    # port 25 answers the runner: mx3 is up, so this is not "host down"
    assert kinds(d) == [NETWORK_PATH, NOT_AUDITED]


def test_findings_are_grouped_by_cause_in_report_order():
    mx3 = host(
        "mx3", unreachable("mx3", "timed out", causes.CONNECT_TIMEOUT), reach("mx3", 22, False)
    )
    mx1 = host("mx1", ping("mx1", "mx2"), smtp("mx1", "mx2", "refused"), ping("mx1", "mx3", 0))
    mx2 = host("mx2", unreachable("mx2", "authentication failed", causes.AUTH_REFUSED))
    d = diagnose(run(mx1, mx2, mx3))
    assert list(d.by_cause()) == [HOST_DOWN, MAIL_SERVICE, NOT_AUDITED]
    assert [f.cause for f in d.for_host("mx2")] == [MAIL_SERVICE, NOT_AUDITED]


def test_diagnosis_survives_a_json_round_trip():
    r = run(
        healthy("mx1"),
        host("mx2", unreachable("mx2", "authentication failed", causes.AUTH_REFUSED)),
    )
    assert diagnose(RunResult.from_json(r.to_json())) == diagnose(r)


def test_each_host_has_its_own_gateway_not_one_shared_gateway_host():
    a = healthy("mx1", peers=("mx1", "mx2"))
    b = healthy("mx2", peers=("mx1", "mx2"))
    a = host("mx1", *a.results, ping("mx1", "gateway", received=0, address="10.0.1.1"))
    b = host("mx2", *b.results, ping("mx2", "gateway", received=0, address="10.0.2.1"))
    d = diagnose(run(a, b))
    titles = " ".join(f.title for f in d.findings)
    assert "gateway answers nobody" not in titles
    assert {p.target for p in d.pairs} >= {"gateway 10.0.1.1", "gateway 10.0.2.1"}


def test_a_host_out_of_time_is_told_to_look_at_timeouts_not_at_garbage():
    late = host(
        "mx9",
        CheckResult(
            "mx9", "binding", Status.ERROR, "run deadline of 4s reached", cause=causes.DEADLINE
        ),
    )
    [finding] = [f for f in diagnose(run(late)).findings if "mx9" in f.hosts]
    assert "--command-timeout" in finding.fix and "made no sense" not in finding.fix


def test_a_silent_gateway_is_a_warning_with_commands_that_run():
    a = healthy("mx1", peers=("mx1", "mx2"))
    b = healthy("mx2", peers=("mx1", "mx2"))
    a = host("mx1", *a.results, ping("mx1", "gateway", received=0, address="10.0.0.1"))
    b = host("mx2", *b.results, ping("mx2", "gateway", received=0, address="10.0.0.1"))
    [finding] = [f for f in diagnose(run(a, b)).findings if "gateway" in f.title]
    assert finding.severity is Status.WARN and "ICMP filtered" in finding.title
    assert "ping -c 3 10.0.0.1" in finding.fix and "gateway 10.0.0.1 " not in finding.fix
    assert finding.hosts == ("mx1", "mx2")


# --------------------------------------------------------------------------- causes, not words


def reworded(r: RunResult) -> RunResult:
    """The same run, every summary written differently."""
    hosts = tuple(
        replace(h, results=tuple(replace(x, summary=f"something else {i}") for i, x in
                                 enumerate(h.results)))
        for h in r.hosts
    )  # fmt: skip
    return replace(r, hosts=hosts)


def decided(d) -> list:
    """What a finding decides, without the evidence that quotes the hosts' words."""
    return [replace(f, evidence=()) for f in d.findings]


def test_a_reworded_summary_does_not_change_a_finding():
    mx1 = host(
        "mx1",
        binding("mx1"),
        ipconfig("mx1", Status.FAIL, "APIPA 169.254.1.1", causes.APIPA, address="169.254.1.1"),
        ping("mx1", "mx2", 0),
        smtp("mx1", "mx2", "unreachable"),
        platform="windows",
    )
    mx2 = host("mx2", unreachable("mx2", "timed out", causes.LOGIN_TIMEOUT), reach("mx2", 22))
    mx3 = host(
        "mx3",
        binding("mx3"),
        ping("mx3", "mx2"),
        smtp("mx3", "mx2", "bad-greeting", "421 busy"),
        CheckResult("mx3", "ipconfig", Status.ERROR, "abandoned", cause=causes.UNPARSED),
    )
    original = run(mx1, mx2, mx3)
    before, after = diagnose(original), diagnose(reworded(original))
    assert kinds(before) == [LOCAL_STACK, MAIL_SERVICE, NOT_AUDITED, CHECK_ERROR]
    assert decided(after) == decided(before)
    assert after.pairs == before.pairs


@pytest.mark.parametrize(
    ("cause", "platform", "step"),
    [
        (causes.AUTH_REFUSED, "unix", "journalctl -u ssh"),
        (causes.AUTH_REFUSED, "windows", "is the account locked?"),
        (causes.HOST_KEY_UNKNOWN, "unix", "ssh-keyscan 198.18.0.12"),
        (causes.HOST_KEY_CHANGED, "unix", "ssh-keygen -R 198.18.0.12"),
        (causes.CERTIFICATE_REJECTED, "windows", "ansible_winrm_ca_trust_path"),
        (causes.CONNECT_REFUSED, "unix", "systemctl status ssh"),
        (causes.CONNECT_REFUSED, "windows", "Enable-PSRemoting"),
        (causes.CONNECT_TIMEOUT, "unix", "nc -vz 198.18.0.12 22"),
        (causes.HOST_UNREACHABLE, "windows", "Test-NetConnection 198.18.0.12 -Port 5985"),
        (causes.LOGIN_TIMEOUT, "unix", "where does the login stall?"),
        (causes.NAME_UNRESOLVED, "unix", "getent hosts mx2"),
        (causes.PROTOCOL_ERROR, "windows", "ansible_winrm_scheme"),
        (causes.SERVICE_ERROR, "windows", "Microsoft-Windows-WinRM/Operational"),
        (causes.CONFIG_MISSING, "unix", "ansible_ssh_private_key_file"),
    ],
)
def test_login_fix_is_chosen_by_cause(cause, platform, step):
    # the summary says something else entirely: only the cause counts
    mx2 = host("mx2", unreachable("mx2", "authentication failed (401)", cause), platform=platform)
    (finding,) = diagnose(run(mx2)).findings
    assert finding.cause == NOT_AUDITED
    assert step in finding.fix
    assert finding.title == f"mx2 was not audited: {causes.CAUSES[cause]}"


def test_login_that_timed_out_is_not_told_to_check_the_password_whatever_the_summary_says():
    mx2 = host("mx2", unreachable("mx2", "authentication failed", causes.CONNECT_TIMEOUT))
    (finding,) = diagnose(run(mx2)).findings
    assert "vault" not in finding.fix and "ping -c 3 198.18.0.12" in finding.fix


def test_transport_error_that_stops_the_audit_is_not_audited_not_a_check_error():
    mx2 = host(
        "mx2",
        CheckResult("mx2", "binding", Status.ERROR, "WinRM fault", cause=causes.SERVICE_ERROR),
        CheckResult("mx2", "ipconfig", Status.ERROR, "WinRM fault", cause=causes.SERVICE_ERROR),
        platform="windows",
    )
    (finding,) = diagnose(run(mx2)).findings
    assert finding.cause == NOT_AUDITED
    assert "Get-Service WinRM" in finding.fix


@pytest.mark.parametrize(
    ("cause", "step", "not_step"),
    [
        (causes.COMMAND_TIMEOUT, "--command-timeout", "made no sense"),
        (causes.DEADLINE, "--command-timeout", "made no sense"),
        (causes.INTERRUPTED, "the run was stopped", "made no sense"),
        (causes.UNPARSED, "made no sense", "--command-timeout"),
        (causes.OUTPUT_LOST, "made no sense", "--command-timeout"),
        (causes.TOOL_MISSING, "busybox ping needs root", "--command-timeout"),
    ],
)
def test_check_error_fix_is_chosen_by_cause(cause, step, not_step):
    # "deadline" in the summary of an unparsed result, "garbage" in a timed-out one: words lose
    summary = "garbage" if step == "--command-timeout" else "run deadline reached, abandoned"
    mx1 = host(
        "mx1", binding("mx1"), CheckResult("mx1", "ping", Status.ERROR, summary, cause=cause)
    )
    (finding,) = diagnose(run(mx1)).findings
    assert finding.cause == CHECK_ERROR
    assert step in finding.fix and not_step not in finding.fix


def test_smtp_result_without_a_probe_in_its_facts_is_read_by_its_cause():
    refused = CheckResult("mx1", "smtp", Status.FAIL, "nope", target="mx2", cause=causes.REFUSED)
    mx1 = host("mx1", ping("mx1", "mx2"), refused)
    (finding,) = diagnose(run(mx1, host("mx2", binding("mx2")))).findings
    assert finding.title == "mx2: port 25 refused (seen from mx1)"


def test_facts_that_are_not_a_ping_result_fall_back_to_the_status():
    odd = CheckResult("mx1", "ping", Status.OK, "fine", target="mx2", facts={"rtt": "fast"})
    d = diagnose(run(host("mx1", odd), host("mx2", binding("mx2"))))
    assert d.findings == ()
    assert d.pair("mx1", "mx2").ping == "ok"


def test_name_that_does_not_resolve_on_the_host_is_its_own_stack():
    unresolved = CheckResult(
        "mx1", "ping", Status.FAIL, "x", target="mx2", cause=causes.NAME_UNRESOLVED
    )
    (finding,) = diagnose(run(host("mx1", binding("mx1"), unresolved))).findings
    assert finding.cause == LOCAL_STACK
    assert "getent hosts mx2" in finding.fix


def old_report(r: RunResult) -> RunResult:
    """``r`` as fleet wrote it before results carried a cause (report.json schema 1)."""
    data = r.to_dict()
    data["schema_version"] = 1
    for h in data["hosts"]:
        for result in h["results"]:
            del result["cause"]
    return RunResult.from_dict(data)


def test_old_report_without_causes_still_says_who_was_not_audited_with_general_steps():
    mx2 = host("mx2", unreachable("mx2", "authentication failed", causes.AUTH_REFUSED))
    mx3 = host(
        "mx3",
        unreachable("mx3", "Host key verification failed", causes.HOST_KEY_UNKNOWN),
        platform="windows",
    )
    d = diagnose(old_report(run(healthy("mx1", peers=()), mx2, mx3)))
    assert kinds(d) == [NOT_AUDITED, NOT_AUDITED]
    unix, windows = d.findings
    assert unix.title == "mx2 was not audited: could not log in"
    assert "ssh -v 198.18.0.12 true" in unix.fix and "vault" not in unix.fix
    assert "log in by hand" in windows.fix and "Test-WSMan 198.18.0.13" in windows.fix
    assert "mx2 (ssh): authentication failed" in unix.evidence


def test_old_report_keeps_every_finding_that_facts_and_statuses_support():
    mx1 = host("mx1", ping("mx1", "mx2"), smtp("mx1", "mx2", "refused"), ping("mx1", "mx3", 0))
    mx3 = host(
        "mx3", unreachable("mx3", "timed out", causes.CONNECT_TIMEOUT), reach("mx3", 22, False)
    )
    errors = host(
        "mx4", CheckResult("mx4", "binding", Status.ERROR, "run deadline", cause=causes.DEADLINE)
    )
    d = diagnose(old_report(run(mx1, host("mx2", binding("mx2")), mx3, errors)))
    assert kinds(d) == [HOST_DOWN, MAIL_SERVICE, CHECK_ERROR]
    assert "see the evidence" in d.findings[-1].fix


# --------------------------------------------------------------------------- what the runner saw


def test_port_25_that_refuses_the_runner_is_said_refused_not_no_answer():
    refused = CheckResult(
        "mx2", "reach", Status.FAIL, "port 25 refused", target="25", cause=causes.REFUSED
    )
    mx1 = host("mx1", ping("mx1", "mx2"), smtp("mx1", "mx2", "refused"))
    (finding,) = diagnose(run(mx1, host("mx2", binding("mx2"), refused))).findings
    assert "runner -> mx2: port 25 refused" in finding.evidence


def test_target_that_refuses_the_runner_is_up_not_down():
    # a TCP reset is an answer: the host is up, only its peers cannot get there
    mx3 = host(
        "mx3",
        unreachable("mx3", "connection refused", causes.CONNECT_REFUSED),
        CheckResult("mx3", "reach", Status.FAIL, "x", target="22", cause=causes.REFUSED),
    )
    mx1 = host("mx1", binding("mx1"), ping("mx1", "mx3", 0), smtp("mx1", "mx3", "timeout"))
    assert HOST_DOWN not in kinds(diagnose(run(mx1, mx3)))


def test_smtp_that_connected_but_got_no_greeting_is_the_mail_service_not_host_down():
    # ICMP filtered, port 25 took the connection and said nothing: the host is up
    no_greeting = CheckResult(
        "mx1", "smtp", Status.FAIL, "x", target="mx3", cause=causes.GREETING_TIMEOUT
    )
    mx1 = host("mx1", binding("mx1"), ping("mx1", "mx3", 0), no_greeting)
    mx3 = host("mx3", unreachable("mx3", "x", causes.CONNECT_TIMEOUT), reach("mx3", 22, False))
    d = diagnose(run(mx1, mx3))
    assert HOST_DOWN not in kinds(d)
    [mail] = [f for f in d.findings if f.cause == MAIL_SERVICE]
    assert mail.title == "mx3: no greeting on port 25 (seen from mx1)"


@pytest.mark.parametrize("facts", [True, False])
def test_slow_greeting_is_never_down(facts):
    probe = asdict(SmtpProbe("mx3", 25, "ok", greeting_code=220, greeting=("220 mx3",)))
    slow = CheckResult(
        "mx1", "smtp", Status.WARN, "x", target="mx3", cause=causes.SLOW_GREETING,
        facts=probe if facts else {},
    )  # fmt: skip
    mx1 = host("mx1", binding("mx1"), ping("mx1", "mx3", 0), slow)
    mx3 = host("mx3", unreachable("mx3", "x", causes.CONNECT_TIMEOUT), reach("mx3", 22, False))
    d = diagnose(run(mx1, mx3))
    assert HOST_DOWN not in kinds(d) and MAIL_SERVICE not in kinds(d)
    assert d.pair("mx1", "mx3").cause != HOST_DOWN


@pytest.mark.parametrize(
    ("check", "platform", "step"),
    [
        ("smtp", "unix", "install python3"),
        ("ping", "unix", "busybox ping needs root"),
        ("binding", "windows", "winmgmt /verifyrepository"),
        ("ipconfig", "unix", "install iproute2"),
    ],
)
def test_a_check_that_could_not_run_is_told_its_real_cause(check, platform, step):
    missing = CheckResult("mx1", check, Status.ERROR, "garbage", cause=causes.TOOL_MISSING)
    (finding,) = diagnose(run(host("mx1", missing, platform=platform))).findings
    assert step in finding.fix and "made no sense" not in finding.fix


# --------------------------------------------------------------------------- fix commands


def fix_commands(d) -> list[str]:
    """Every line of every fix that a shell would run."""
    return [line for f in d.findings for line in f.fix.splitlines() if not line.startswith("#")]


def test_a_gateway_that_is_not_an_address_never_reaches_a_fix_command():
    evil = "10.7.7.7;touch /tmp/x"
    a = host("mx1", binding("mx1"), ping("mx1", "gateway", received=0, address=evil))
    b = host("mx2", binding("mx2"), ping("mx2", "gateway", received=0, address=evil))
    d = diagnose(run(a, b))
    [finding] = [f for f in d.findings if "gateway" in f.title]
    assert not any("touch" in line for line in fix_commands(d))
    assert any("not a valid address" in e and "touch" in e for e in finding.evidence)


def test_a_duplicate_address_with_shell_syntax_is_evidence_only():
    evil = "198.18.0.50$(reboot)"
    mx1 = host("mx1", ipconfig("mx1", address=evil))
    mx2 = host("mx2", ipconfig("mx2", address=evil))
    (finding,) = diagnose(run(mx1, mx2)).findings
    assert "reboot" not in "\n".join(fix_commands(diagnose(run(mx1, mx2))))
    assert any("not a valid address" in e for e in finding.evidence)


def test_an_adapter_name_is_quoted_for_powershell():
    bound_off = (("ms_tcpip", False),)
    mx1 = host(
        "mx1",
        binding("mx1", Status.FAIL, "x", causes.TCPIP_UNBOUND, name="Eth'; Stop-Computer; '",
                bindings=bound_off),
        platform="windows",
    )  # fmt: skip
    (finding,) = diagnose(run(mx1)).findings
    assert "-Name 'Eth''; Stop-Computer; ''' -ComponentID" in finding.fix


def test_a_gateway_peer_is_pinged_by_its_address():
    mx1 = host(
        "mx1",
        binding("mx1", Status.FAIL, "no interface up", causes.NO_INTERFACE_UP),
        ping("mx1", "gateway", received=0, address="10.9.9.9"),
    )
    (finding,) = diagnose(run(mx1)).findings
    assert "ping -c 3 10.9.9.9" in finding.fix
    assert "gateway 10.9.9.9" not in finding.fix


def test_login_fix_uses_the_hosts_port_and_user():
    mx2 = replace(
        host("mx2", unreachable("mx2", "x", causes.HOST_KEY_CHANGED)), port=2222, user="audit"
    )
    (finding,) = diagnose(run(mx2)).findings
    assert "ssh-keygen -R '[198.18.0.12]:2222'" in finding.fix
    assert "ssh-keyscan -p 2222 198.18.0.12" in finding.fix
    mx2 = replace(mx2, results=(unreachable("mx2", "x", causes.AUTH_REFUSED),))
    (finding,) = diagnose(run(mx2)).findings
    assert "ssh -o BatchMode=yes -p 2222 -l audit 198.18.0.12 true" in finding.fix
    mx2 = replace(mx2, results=(unreachable("mx2", "x", causes.CONNECT_TIMEOUT),))
    assert "nc -vz 198.18.0.12 2222" in diagnose(run(mx2)).findings[0].fix


def test_an_odd_login_user_is_quoted_and_an_odd_address_left_out():
    mx2 = replace(
        host("mx2", unreachable("mx2", "x", causes.AUTH_REFUSED)),
        address="198.18.0.12 -oProxyCommand=sh",
        user="a b",
    )
    (finding,) = diagnose(run(mx2)).findings
    assert "ProxyCommand" not in "\n".join(fix_commands(diagnose(run(mx2))))
    assert any("not a valid host name" in e for e in finding.evidence)
    mx2 = replace(mx2, address="198.18.0.12")
    assert "-l 'a b' 198.18.0.12" in diagnose(run(mx2)).findings[0].fix


def test_the_route_back_is_to_the_peer_not_to_the_target():
    mx1 = host("mx1", binding("mx1"), ping("mx1", "mx3", 0), smtp("mx1", "mx3", "timeout"))
    mx3 = healthy("mx3", peers=())
    (finding,) = diagnose(run(mx1, mx3)).findings
    assert "ip route get 198.18.0.11" in finding.fix  # mx1's address, seen from mx3
    assert "tracepath mx3" in finding.fix


def test_a_host_down_is_pinged_at_its_inventory_address():
    mx3 = host("mx3", unreachable("mx3", "x", causes.CONNECT_TIMEOUT), reach("mx3", 22, False))
    mx1 = host("mx1", binding("mx1"), ping("mx1", "mx3", 0))
    (finding,) = diagnose(run(mx1, mx3)).findings
    assert "ping -c 3 198.18.0.13" in finding.fix
