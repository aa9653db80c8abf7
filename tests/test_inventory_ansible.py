"""fleet reads the fixture inventories exactly as the real Ansible does.

Runs ``ansible-inventory -i X --list [--limit P]`` (groups, their hosts and
children, merged ``_meta.hostvars``) and ``ansible localhost -m debug -a
var=hostvars`` (merged variables plus the magic ones) on each fixture and
compares with fleet's answer.  Skipped only when ansible-core is not installed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from fleet.inventory import load_inventory

HERE = Path(__file__).parent
REPO = HERE.parent
SOURCES = {
    "ini": HERE / "data" / "inventory" / "ini_basic" / "hosts",
    "yaml": HERE / "data" / "inventory" / "yaml_basic" / "inventory.yml",
    "directory": HERE / "data" / "inventory" / "dir_mixed",
    "example": REPO / "inventories" / "example",
    "local": REPO / "inventories" / "local",
    "dashed": HERE / "data" / "inventory" / "dashed_names",
}
LIMITS = {
    "ini": [
        "mail:&europe:!mx0[2-3]*",
        "edge[1:2],~win\\d,2001:db8::25",
        "mail_servers[0]:edge[-1]",
    ],
    "yaml": ["mail:!mail_eu", "backup_mx:&windows", "~^mx", "all:!ungrouped"],
    "directory": ["mail,site_b", "!mail"],
    "example": ["mail:!windows:&unix[1:3]", "smarthosts:mx0*", "mail_windows[-2:]"],
    "local": ["mail"],
    "dashed": [
        "web-servers",
        "all:!web-servers",
        "k8s-cluster:!k8s-master",
        "lamp.stack:&a4d.lamp.db.1",
        "a4d.lamp.db.1,mail-relays",
        "web-servers[1]",
    ],
}

pytestmark = pytest.mark.skipif(
    shutil.which("ansible-inventory") is None, reason="ansible-core is not installed"
)


def _ansible(args: list[str], cwd: Path, **settings: str) -> str:
    # A clean environment: no ANSIBLE_* setting of the caller's may change the rules.
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    config = cwd / "ansible.cfg"  # empty: Ansible's defaults, not a stray /etc/ansible one
    config.touch()
    env.update(ANSIBLE_LOCALHOST_WARNING="False", ANSIBLE_NOCOLOR="1", ANSIBLE_CONFIG=str(config))
    env.update(settings)
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def ansible_inventory_list(source: Path, limit: str | None, cwd: Path, **settings: str) -> dict:
    args = ["ansible-inventory", "-i", str(source.absolute()), "--list"]
    if limit:
        args += ["--limit", limit]
    listed = json.loads(_ansible(args, cwd, **settings))
    listed["_meta"].pop("profile", None)  # ansible-core >= 2.19 names its JSON profile
    return listed


def ansible_hostvars(source: Path, cwd: Path) -> dict:
    out = _ansible(
        ["ansible", "localhost", "-i", str(source.absolute()), "-m", "debug", "-a", "var=hostvars"],
        cwd,
    )
    return json.loads(out[out.index("{") :])["hostvars"]


@pytest.mark.parametrize("name", list(SOURCES))
def test_list_matches_ansible_inventory(name, tmp_path):
    source = SOURCES[name]
    expected = ansible_inventory_list(source, None, tmp_path)
    ours = json.loads(json.dumps(load_inventory(source).to_ansible_list()))
    assert {k: v for k, v in ours.items() if k != "_meta"} == {
        k: v for k, v in expected.items() if k != "_meta"
    }
    assert ours["_meta"]["hostvars"] == expected["_meta"]["hostvars"]


@pytest.mark.parametrize(
    ("name", "limit"), [(name, limit) for name, limits in LIMITS.items() for limit in limits]
)
def test_limit_matches_ansible_inventory(name, limit, tmp_path):
    source = SOURCES[name]
    expected = ansible_inventory_list(source, limit, tmp_path)
    inventory = load_inventory(source)
    assert json.loads(json.dumps(inventory.to_ansible_list(limit))) == expected
    # Every fixture host has some variable, so ansible lists each selected host.
    assert set(inventory.select(limit)) == set(expected["_meta"]["hostvars"])


@pytest.mark.parametrize("name", list(SOURCES))
def test_host_vars_with_magic_variables_match_ansible(name, tmp_path):
    source = SOURCES[name]
    theirs = ansible_hostvars(source, tmp_path)
    inventory = load_inventory(source)
    assert set(theirs) == set(inventory.hosts)
    for host in inventory.hosts:
        ours = json.loads(json.dumps(inventory.host_vars(host)))
        # Ansible renders templates here; fleet leaves that to the plan.
        ours = {k: v for k, v in ours.items() if not (isinstance(v, str) and "{{" in v)}
        assert ours == {key: theirs[host].get(key, "<missing>") for key in ours}, host


@pytest.mark.parametrize("policy", ["always", "silently", "never", "ignore"])
def test_group_name_policy_matches_ansible(policy, tmp_path):
    source = tmp_path / "inv"
    (source / "group_vars").mkdir(parents=True)
    (source / "hosts.ini").write_text("[web-servers]\nweb01\n[db.1]\ndb01\n")
    relays = "all:\n  children:\n    mail-relays:\n      hosts:\n        mx1:\n"
    (source / "more.yml").write_text(relays)
    for group in ("web-servers", "web_servers", "db.1", "db_1", "mail-relays", "mail_relays"):
        (source / "group_vars" / f"{group}.yml").write_text(f"from_{group.replace('-', '_')}: 1\n")
    expected = ansible_inventory_list(
        source, None, tmp_path, ANSIBLE_TRANSFORM_INVALID_GROUP_CHARS=policy
    )
    ours = json.loads(json.dumps(load_inventory(source, group_names=policy).to_ansible_list()))
    assert ours == expected
