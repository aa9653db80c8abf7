"""The busybox-only host of the lab (bb-dropbear): dropbear, BusyBox, no python3, bash or iproute2.

Audited over both SSH transports with the default playbook; each check must run
with what BusyBox has and its facts must say which tool it used.  BusyBox's
ping needs root (a raw socket) there, so ping fails for that reason, with the
fix; every other check is ok.
"""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from pathlib import Path

import pytest

from fleet import causes
from fleet.checks.net.unix import NET_SCRIPT, parse_net
from fleet.inventory import load_inventory
from fleet.model import CheckResult, RunResult, Status
from fleet.plan import RunOptions
from fleet.playbook import build_plan, load_playbook
from fleet.runner import run_audit

PLAYBOOK = Path(__file__).resolve().parent.parent / "playbooks" / "mail-connectivity.yml"
HOST = "bb-dropbear"


@pytest.mark.skipif(not shutil.which("busybox"), reason="needs busybox")
def test_net_step_under_busybox_says_busybox_read_the_interfaces(tmp_path: Path) -> None:
    # Only BusyBox's applets on PATH, as on the appliance: its `ip` has no -j.
    busybox = shutil.which("busybox") or ""
    applets = subprocess.run([busybox, "--list"], capture_output=True, text=True, check=True)
    for name in applets.stdout.split():
        (tmp_path / name).symlink_to(busybox)
    env = {"PATH": str(tmp_path)}
    done = subprocess.run(
        [str(tmp_path / "sh"), "-c", NET_SCRIPT], env=env, capture_output=True, text=True
    )
    config = parse_net(done.stdout)
    assert config.source.startswith("BusyBox + ip addr + ip route"), config.source
    assert config.interfaces


@pytest.fixture(scope="module", params=["ssh", "paramiko"])
def run(request, lab) -> RunResult:
    inventory = load_inventory(lab.inventory.parent)
    plans = build_plan(load_playbook(PLAYBOOK), inventory, HOST)
    plans = [dataclasses.replace(p, connection=request.param) for p in plans]
    return run_audit(plans, RunOptions(forks=4, connect_timeout=3), inventory="lab")


def checks(run: RunResult, name: str) -> list[CheckResult]:
    found = [r for r in run.host(HOST).results if r.check == name]
    assert found, f"{HOST} has no {name} result"
    return found


@pytest.mark.lab
def test_dropbear_host_is_audited_with_its_key_in_known_hosts(run: RunResult) -> None:
    # Logged in (strict host key checking against the lab's known_hosts) and ran checks.
    assert all(r.status is not Status.UNREACHABLE for r in run.host(HOST).results)
    assert [r.status for r in checks(run, "reach")] == [Status.OK]


@pytest.mark.lab
def test_binding_and_ipconfig_read_busybox_ip(run: RunResult) -> None:
    for name in ("binding", "ipconfig"):
        [result] = checks(run, name)
        assert result.status is Status.OK, (name, result.summary)
        assert result.facts["source"].startswith("BusyBox + ip addr"), result.facts["source"]
    [ipconfig] = checks(run, "ipconfig")
    assert "198.18.0.60" in str(ipconfig.facts)


@pytest.mark.lab
def test_busybox_ping_without_root_says_so_and_how_to_fix_it(run: RunResult) -> None:
    for result in checks(run, "ping"):
        assert (result.status, result.cause) == (Status.ERROR, causes.TOOL_MISSING), result.summary
        assert "ping needs root here" in result.summary and "ping_group_range" in result.summary


@pytest.mark.lab
def test_smtp_talks_through_busybox_nc(run: RunResult) -> None:
    results = {r.target: r for r in checks(run, "smtp")}
    assert set(results) == {"mx1", "pf-plain"}
    for result in results.values():
        assert result.status is Status.OK, result.summary
        assert result.facts["probe"] == "nc"
    # BusyBox has no openssl: STARTTLS is reported as offered, the handshake not tried.
    assert "handshake not tried" in results["pf-plain"].summary


@pytest.mark.lab
def test_nothing_else_fails(run: RunResult) -> None:
    bad = {
        (r.check, r.cause)
        for r in run.host(HOST).results
        if r.status is not Status.OK and r.check != "ping"
    }
    assert bad == set()
