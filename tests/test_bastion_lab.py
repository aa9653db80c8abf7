"""The lab's bastion (tests.lab.bastion): mail hosts on 198.18.2.0/24 that the runner
cannot reach, audited through bast1 with both SSH transports.

Run under the lab lock: ``flock /tmp/fleet-lab.lock python3 -m pytest tests/test_bastion_lab.py``.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from fleet import causes
from fleet.diagnose import diagnose
from fleet.diagnose.model import HOST_DOWN
from fleet.inventory import load_inventory
from fleet.model import RunResult, Status
from fleet.plan import RunOptions
from fleet.playbook import build_plan, load_playbook
from fleet.runner import run_audit
from tests.lab import bastion
from tests.lab.sshd import LAB_USER

pytestmark = pytest.mark.lab
PLAYBOOK = Path(__file__).resolve().parent.parent / "playbooks" / "mail-connectivity.yml"


@pytest.fixture(scope="module")
def bast(lab) -> Iterator[bastion.BastionLab]:
    try:
        yield bastion.add(lab)
    finally:
        bastion.remove()


def inventory_dir(
    lab, bast: bastion.BastionLab, tmp: Path, connection: str, how: str, bad_key: bool = False
) -> Path:
    """An inventory of the hosts behind bast1, reached through ssh_config's ProxyJump
    (``how="ssh_config"``) or ``ansible_ssh_common_args: -J`` (``how="-J"``)."""
    known = tmp / "known_hosts"
    bastion_key = bast.host_keys["dmz1"] if bad_key else bast.host_keys["bast1"]
    lines = [f"bast1,{bast.bastion} {bastion_key}"]
    lines += [f"{name},{address} {bast.host_keys[name]}" for name, address in bast.hosts]
    known.write_text("\n".join(lines) + "\n")
    config = tmp / "ssh_config"
    config.write_text(
        f"Host bast1\n  HostName {bast.bastion}\n  User {LAB_USER}\n"
        "Host 198.18.2.*\n  ProxyJump bast1\n"
    )
    variables = {
        "ansible_connection": connection,
        "ansible_user": LAB_USER,
        "ansible_ssh_private_key_file": str(lab.key_file),
        "fleet_known_hosts": str(known),
        "fleet_ssh_config": str(config) if how == "ssh_config" else "none",
        "fleet_mail_group": "dmz",
    }
    if how == "-J":
        variables["ansible_ssh_common_args"] = f"-J {LAB_USER}@{bast.bastion}"
    hosts = {name: {"ansible_host": address} for name, address in bast.hosts}
    data = {"all": {"children": {"dmz": {"hosts": hosts, "vars": variables}}}}
    (tmp / "hosts.yml").write_text(yaml.safe_dump(data))
    return tmp


def audit(directory: Path) -> RunResult:
    inventory = load_inventory(directory)
    hosts = build_plan(load_playbook(PLAYBOOK), inventory, None)
    return run_audit(hosts, RunOptions(forks=10, connect_timeout=5), inventory="dmz")


def test_the_runner_has_no_route_to_the_private_network(bast: bastion.BastionLab) -> None:
    addresses = subprocess.run(["ip", "-o", "addr"], capture_output=True, text=True).stdout
    assert "198.18.2." not in addresses
    route = subprocess.run(
        ["ip", "route", "get", "198.18.2.11"], capture_output=True, text=True
    ).stdout
    # Not through the lab: at most the machine's own default route, away from the lab.
    assert "fleetbr0" not in route and "198.18.0." not in route
    assert not any(route.startswith(prefix) for prefix in ("198.18.2.0/24", "local"))


@pytest.mark.parametrize("connection", ["ssh", "paramiko"])
@pytest.mark.parametrize("how", ["ssh_config", "-J"])
def test_hosts_behind_the_bastion_are_audited_through_one_login(
    lab, bast: bastion.BastionLab, tmp_path: Path, connection: str, how: str
) -> None:
    before = bast.logins()
    run = audit(inventory_dir(lab, bast, tmp_path, connection, how))
    for host in run.hosts:
        reach = [r for r in host.results if r.check == "reach"]
        assert {r.cause for r in reach} == {causes.BEHIND_BASTION}, host.host
        audited = [r for r in host.results if r.check != "reach"]
        bad = [(r.check, r.summary) for r in audited if r.status is not Status.OK]
        assert audited and bad == [], host.host
    assert bast.logins() - before == 1  # both hosts through one login on bast1
    report = diagnose(run)
    assert [f.title for f in report.findings if f.cause == HOST_DOWN] == []


@pytest.mark.parametrize("connection", ["ssh", "paramiko"])
def test_a_bastion_whose_host_key_changed_is_refused_naming_it(
    lab, bast: bastion.BastionLab, tmp_path: Path, connection: str
) -> None:
    run = audit(inventory_dir(lab, bast, tmp_path, connection, "ssh_config", bad_key=True))
    for host in run.hosts:
        failed = [r for r in host.results if r.check != "reach"]
        assert {r.status for r in failed} == {Status.UNREACHABLE}
        assert {r.cause for r in failed} == {causes.HOST_KEY_CHANGED}
        assert failed[0].summary.startswith("bastion bast1: host key for 198.18.0.70:22")
        assert "ssh-keygen -R 198.18.0.70" in failed[0].summary
    findings = {f.hosts: f for f in diagnose(run).findings}
    for name, address in bast.hosts:
        found = findings[(name,)]
        assert found.title == f"{name} was not audited: bastion bast1: host key changed"
        assert "198.18.0.70" in found.fix and address not in found.fix
