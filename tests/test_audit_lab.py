"""End-to-end: audit the whole lab (Unix over real SSH, Windows over real WinRM) and check
that every broken host fails the right check for its real reason, and the healthy ones pass.

One audit per module (about 7 s); the lab fixture is in conftest.py.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleet.diagnose import diagnose
from fleet.inventory import load_inventory
from fleet.model import CheckResult, RunResult, Status
from fleet.plan import RunOptions
from fleet.playbook import build_plan, load_playbook
from fleet.runner import run_audit
from tests.sshd_fixture import free_port

pytestmark = pytest.mark.lab
ROOT = Path(__file__).resolve().parent.parent
PLAYBOOK = ROOT / "playbooks" / "mail-connectivity.yml"


def audit_lab(lab, limit: str | None = None) -> RunResult:
    inventory = load_inventory(lab.inventory.parent)
    hosts = build_plan(load_playbook(PLAYBOOK), inventory, limit)
    return run_audit(hosts, RunOptions(forks=20, connect_timeout=3), inventory="lab")


@pytest.fixture(scope="module")
def run(lab) -> RunResult:
    return audit_lab(lab)


def results(run: RunResult, host: str, check: str) -> list[CheckResult]:
    found = [r for r in run.host(host).results if r.check == check]
    assert found, f"{host} has no {check} result"
    return found


def one(run: RunResult, host: str, check: str, target: str | None = None) -> CheckResult:
    [found] = [r for r in results(run, host, check) if target is None or r.target == target]
    return found


HEALTHY_WINDOWS = ["win-ok", "win-2008", "win-dag", "win-team", "win-hyperv"]


@pytest.mark.parametrize("host", ["mx1", "mx2", "mx3", *HEALTHY_WINDOWS])
def test_healthy_hosts_pass_every_check(run: RunResult, host: str) -> None:
    bad = [(r.check, r.target, r.summary) for r in run.host(host).results if r.status != Status.OK]
    assert bad == []


def test_healthy_hosts_probed_their_peers_and_gateway(run: RunResult) -> None:
    assert {r.target for r in results(run, "mx1", "smtp")} == {"mx2", "mx3"}
    assert {r.target for r in results(run, "mx1", "ping")} == {"gateway", "mx2", "mx3"}
    multi_line = one(run, "mx1", "smtp", "mx3").facts
    assert len(multi_line["greeting"]) > 1 and multi_line["greeting_code"] == 220


def test_smtp_service_down_fails_reach_on_port_25_only(run: RunResult) -> None:
    port25 = one(run, "mx-smtpdown", "reach", "25")
    assert port25.status is Status.FAIL and "refused" in port25.summary
    assert one(run, "mx-smtpdown", "reach", "22").status is Status.OK
    assert one(run, "mon1", "smtp", "mx-smtpdown").facts["outcome"] == "refused"


def test_silent_host_is_unreachable_and_times_out_for_its_peers(run: RunResult) -> None:
    assert "timed out" in one(run, "mx-down", "reach", "22").summary
    assert all(r.status is Status.UNREACHABLE for r in results(run, "mx-down", "binding"))
    assert one(run, "mon1", "smtp", "mx-down").facts["outcome"] == "timeout"
    ping = one(run, "mon1", "ping", "mx-down")
    assert ping.status is Status.FAIL and ping.facts["received"] == 0


def test_missing_gateway_fails_ipconfig(run: RunResult) -> None:
    for host in ("mx-nogw", "win-nogw"):
        ipconfig = one(run, host, "ipconfig")
        assert ipconfig.status is Status.FAIL and "no default gateway" in ipconfig.summary
        assert one(run, host, "binding").status is Status.OK


def test_changed_host_key_is_refused_not_audited(run: RunResult) -> None:
    for r in run.host("mx-badkey").results:
        if r.check != "reach":
            assert r.status is Status.UNREACHABLE and "does not match known_hosts" in r.summary


def test_not_ready_greeting_fails_smtp_with_the_code(run: RunResult) -> None:
    probe = one(run, "mon1", "smtp", "mx-421")
    assert probe.status is Status.FAIL and "421" in probe.summary
    assert probe.facts["outcome"] == "bad-greeting"


def test_tcpip_unbound_fails_binding(run: RunResult) -> None:
    binding = one(run, "win-unbound", "binding")
    assert binding.status is Status.FAIL and "TCP/IP not bound" in binding.summary


def test_apipa_address_fails_ipconfig(run: RunResult) -> None:
    ipconfig = one(run, "win-apipa", "ipconfig")
    assert ipconfig.status is Status.FAIL and "APIPA address 169.254." in ipconfig.summary


def test_duplicate_address_fails_ipconfig_as_an_address_conflict(run: RunResult) -> None:
    ipconfig = one(run, "win-dupaddr", "ipconfig")
    assert (ipconfig.status, ipconfig.cause) == (Status.FAIL, "address-conflict")
    assert ipconfig.summary.startswith("address 198.18.0.200 on Ethernet0 is Duplicate")
    stack = [f for f in diagnose(run).findings if f.hosts == ("win-dupaddr",)]
    assert [f.cause for f in stack] == ["local-stack"]
    assert any("is Duplicate" in line for line in stack[0].evidence)


def test_cluster_team_and_hyper_v_adapters_are_listed_not_judged(run: RunResult) -> None:
    dag = one(run, "win-dag", "ipconfig").facts["interfaces"]
    assert [i["internal"] for i in dag if i["internal"]] == ["failover cluster adapter (NetFT)"]
    team = one(run, "win-team", "ipconfig").facts
    assert team["default_gateways"] == ("198.18.0.1",) or team["default_gateways"] == ["198.18.0.1"]
    assert one(run, "win-team", "ping", "gateway").facts["address"] == "198.18.0.1"
    uplinks = one(run, "win-hyperv", "binding").facts["interfaces"]
    assert {i["name"]: i["internal"] for i in uplinks}["Ethernet0"] == "Hyper-V switch uplink"


def test_server_2008_is_audited_through_the_powershell_2_fallback(run: RunResult) -> None:
    source = one(run, "win-2008", "ipconfig").facts["source"]
    assert "Win32_NetworkAdapterConfiguration" in source or "WMI" in source


def test_wrong_windows_password_is_unreachable_without_showing_it(run: RunResult) -> None:
    for r in run.host("win-badpass").results:
        if r.check != "reach":
            assert r.status is Status.UNREACHABLE and "authentication refused" in r.summary
    assert "Not-The-Lab-Passw0rd" not in run.to_json()
    assert "Lab-Passw0rd" not in run.to_json()


def test_diagnosis_names_each_broken_host_with_its_cause(run: RunResult) -> None:
    causes = {(f.cause, h) for f in diagnose(run).findings for h in f.hosts}
    assert {
        ("host-down", "mx-down"),
        ("mail-service", "mx-smtpdown"),
        ("mail-service", "mx-421"),
        ("local-stack", "mx-nogw"),
        ("local-stack", "win-nogw"),
        ("local-stack", "win-unbound"),
        ("local-stack", "win-apipa"),
        ("local-stack", "win-dupaddr"),
        ("not-audited", "mx-badkey"),
        ("not-audited", "win-badpass"),
        ("local-stack", "rt-nocarrier"),
    } <= causes
    healthy = {"mx1", "mx2", "mx3", "mon1", *HEALTHY_WINDOWS, "rt-onlink", "rt-policy", "rt-twogw"}
    assert not {h for _, h in causes} & healthy


# -- default routes as the kernel sees them ------------------------------------------------


@pytest.mark.parametrize("host", ["rt-onlink", "rt-policy", "rt-twogw"])
def test_healthy_default_routes_pass_ipconfig(run: RunResult, host: str) -> None:
    ipconfig = one(run, host, "ipconfig")
    assert ipconfig.status is Status.OK, ipconfig.summary
    assert one(run, host, "binding").status is Status.OK


def test_on_link_default_route_has_no_gateway_to_ping(run: RunResult) -> None:
    assert "gateway on-link via dev eth0" in one(run, "rt-onlink", "ipconfig").summary
    ping = one(run, "rt-onlink", "ping", "gateway")
    assert (ping.status, ping.summary) == (
        Status.SKIPPED,
        "gateway: default route has no gateway (on-link via dev eth0): nothing to ping",
    )


@pytest.mark.parametrize("host", ["rt-policy", "rt-twogw"])
def test_the_gateway_pinged_is_the_one_the_kernel_uses(run: RunResult, host: str) -> None:
    ping = one(run, host, "ping", "gateway")
    assert ping.status is Status.OK and ping.facts["address"] == "198.18.0.1", ping.summary


def test_default_routes_are_listed_with_their_metrics_or_their_table(run: RunResult) -> None:
    assert "gateway 198.18.0.1 (metric 100), 198.18.0.54 (metric 200)" in (
        one(run, "rt-twogw", "ipconfig").summary
    )
    assert "gateway 198.18.0.1 (table 100)" in one(run, "rt-policy", "ipconfig").summary


def test_default_route_on_an_uplink_without_carrier_fails_as_no_carrier(run: RunResult) -> None:
    ipconfig = one(run, "rt-nocarrier", "ipconfig")
    assert (ipconfig.status, ipconfig.cause) == (Status.FAIL, "no-carrier")
    assert ipconfig.summary == "default route 198.18.0.58: uplink0 has no carrier (NO-CARRIER)"


# -- real postfix: postscreen, STARTTLS ---------------------------------------------------


def test_postscreen_slow_greeting_is_ok_or_warn_never_down(run: RunResult) -> None:
    for source in ("pf-plain", "pf-badtls"):
        probe = one(run, source, "smtp", "pf-postscreen")
        assert probe.status in (Status.OK, Status.WARN), probe.summary
        assert probe.cause in ("", "slow-greeting"), probe.summary
        greeting = probe.facts["greeting"]
        # postscreen's pre-greeting is kept, then smtpd's greeting after the greet wait.
        assert greeting[0].startswith("220-pf-postscreen.lab") and greeting[-1].startswith("220 ")
        assert probe.facts["greeting_ms"] > 5000
    findings = {(f.cause, h) for f in diagnose(run).findings for h in f.hosts}
    assert not {c for c, h in findings if h == "pf-postscreen"} & {"host-down", "mail-service"}


def test_postfix_starttls_with_a_broken_certificate_fails_require_starttls(run: RunResult) -> None:
    for source in ("pf-plain", "pf-postscreen"):
        probe = one(run, source, "smtp", "pf-badtls")
        assert (probe.status, probe.cause) == (Status.FAIL, "starttls-failed"), probe.summary
        assert probe.facts["starttls"] is True and probe.facts["tls_checked"] is True
        assert probe.facts["tls_error"].startswith("454 ")


def test_plain_postfix_is_ok_with_starttls_facts(run: RunResult) -> None:
    probe = one(run, "pf-badtls", "smtp", "pf-plain")
    assert probe.status is Status.OK, probe.summary
    facts = probe.facts
    assert facts["tls_protocol"].startswith("TLSv1.")
    assert facts["cert_subject"] == "CN=pf-plain.lab"
    assert facts["cert_verified"] is None  # not checked unless verify_cert is set
    assert facts["cert_not_after"] > "2026"
    assert "STARTTLS TLSv1." in probe.summary


def test_exim_banner_delay_is_a_slow_greeting_warning_never_down(run: RunResult) -> None:
    for source in ("pf-plain", "pf-postscreen", "pf-badtls"):
        probe = one(run, source, "smtp", "exim-slow")
        assert (probe.status, probe.cause) == (Status.WARN, "slow-greeting"), probe.summary
        assert list(probe.facts["greeting"]) == ["220 exim-slow.lab ESMTP fleet lab (exim)"]
        assert probe.facts["greeting_ms"] > 7500  # the connect ACL's "delay = 8s"
        said = re.search(r"slow greeting: (\d+\.\d) s after connecting", probe.summary)
        assert said and abs(float(said[1]) * 1000 - probe.facts["greeting_ms"]) < 100
        assert probe.facts["tls_protocol"].startswith("TLSv1.")  # exim's STARTTLS works too
    own = run.host("exim-slow").results  # exim-slow itself is healthy: it probes mx1-mx3
    assert [(r.check, r.target, r.summary) for r in own if r.status != Status.OK] == []
    findings = {(f.cause, h) for f in diagnose(run).findings for h in f.hosts}
    assert not {c for c, h in findings if h == "exim-slow"}


# -- the CLI on the lab: exit code, reports, mail, history ---------------------------------


@pytest.fixture
def relay() -> Iterator[tuple[int, list]]:
    from aiosmtpd.controller import Controller

    received: list = []

    class Keep:
        async def handle_DATA(self, server, session, envelope):
            received.append(envelope)
            return "250 OK"

    port = free_port()
    controller = Controller(Keep(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield port, received
    finally:
        controller.stop()


def fleet_audit(lab, report_dir: Path, *extra: str, env: dict | None = None):
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "fleet",
            "audit",
            "-i",
            str(lab.inventory.parent),
            "-q",
            "--report-dir",
            str(report_dir),
            *extra,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
    )


def test_cli_audit_mails_the_report_and_exits_4(lab, tmp_path: Path, relay) -> None:
    port, received = relay
    env = {
        "FLEET_SMTP_HOST": "127.0.0.1",
        "FLEET_SMTP_PORT": str(port),
        "FLEET_SMTP_STARTTLS": "no",
        "FLEET_MAIL_FROM": "fleet@lab.invalid",
    }
    done = fleet_audit(lab, tmp_path, "--mail-to", "ops@lab.invalid", env=env)
    assert done.returncode == 4, done.stderr  # unreachable hosts win over failures
    assert "mx-down" in done.stdout and "win-badpass" in done.stdout
    latest = tmp_path / "lab" / "latest"
    html = (latest / "report.html").read_text()
    assert "mx-smtpdown" in html and "Enable-NetAdapterBinding" in html
    [mail] = received
    message = mail.content.decode()
    assert "Subject: fleet lab:" in message and "unreachable" in message
    assert "report.csv" in message and "report.json" in message
    assert "Lab-Passw0rd" not in message


def test_a_repaired_host_is_reported_resolved_on_the_next_run(lab, tmp_path: Path) -> None:
    first = fleet_audit(lab, tmp_path, "--limit", "mx-smtpdown", "--format", "json")
    assert first.returncode == 2, first.stderr
    namespace = lab.host("mx-smtpdown").namespace
    smtpd = subprocess.Popen(
        [
            "ip",
            "netns",
            "exec",
            namespace,
            sys.executable,
            "-m",
            "tests.lab.smtpd",
            "--address",
            lab.host("mx-smtpdown").address,
            "--name",
            "mx-smtpdown",
            "--greeting",
            "ready",
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(50):  # until it listens
            listening = subprocess.run(
                ["ip", "netns", "exec", namespace, "ss", "-Hltn", "sport = :25"],
                capture_output=True,
                text=True,
            ).stdout
            if listening.strip():
                break
            subprocess.run(["sleep", "0.1"])
        second = fleet_audit(lab, tmp_path, "--limit", "mx-smtpdown", "--format", "json,html")
    finally:
        smtpd.terminate()
        smtpd.wait()
    assert second.returncode == 0, second.stdout + second.stderr
    html = (tmp_path / "lab" / "latest" / "report.html").read_text()
    assert "resolved" in html.lower()
    runs = sorted(p for p in (tmp_path / "lab").iterdir() if p.name[0].isdigit())
    before, after = (json.loads((r / "report.json").read_text()) for r in runs[-2:])
    diff = subprocess.run(
        [
            sys.executable,
            "-m",
            "fleet",
            "diff",
            str(runs[-2] / "report.json"),
            str(runs[-1] / "report.json"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert "resolved" in diff.stdout.lower() and "mx-smtpdown" in diff.stdout
    assert before["counts"]["fail"] > 0 and after["counts"]["fail"] == 0


def test_console_prints_findings_by_cause_first_and_the_full_table_only_when_verbose(
    lab, tmp_path: Path
) -> None:
    first = fleet_audit(lab, tmp_path, "--format", "html")
    assert first.returncode == 4, first.stderr
    lines = first.stdout.splitlines()
    table = lines.index(next(line for line in lines if line.startswith("host ")))
    causes = [
        lines.index(c) for c in lines[:table] if c.startswith(("Host down (", "Mail service ("))
    ]
    assert len(causes) == 2  # the causes, each once, before any table
    down = lines.index(next(line for line in lines if "mx-down answers nobody" in line))
    assert down == causes[0] + 1 and "fix: ping -c 3 " in " ".join(lines[down : down + 2])
    rows = [line.split()[0] for line in lines[table + 2 :] if line and not line[0].isdigit()]
    assert "mx1" not in rows and rows.count("mx-down") == 1  # problems only; down: one row
    assert any("ok on every check" in line and "mx1" in line for line in lines)
    assert max(map(len, lines)) <= 100 and "\x1b" not in first.stdout  # a log: no colour

    second = fleet_audit(lab, tmp_path, "--format", "html", "--verbose")
    full = second.stdout.splitlines()
    start = full.index(next(line for line in full if line.startswith("host ")))
    [mx1] = [line for line in full[start:] if line.startswith("mx1 ")]
    assert mx1.split()[1:3] == ["all", "ok"]  # the full table: healthy hosts too
    assert len([line for line in full[start:] if line.startswith("mx-down ")]) > 1  # per check
    html = (tmp_path / "lab" / "latest" / "report.html").read_text()
    headings = re.findall(r"<h2>([^<]+)</h2>", html)
    assert headings[0] == "Findings" and headings[1].startswith("Since the previous run (")
    assert "still open, oldest since " in html and "New (0)" in html
