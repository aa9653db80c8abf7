"""Hostile or broken input: one line naming what is wrong and where, exit 5,
in bounded time and memory.

Each case runs ``fleet`` in a subprocess whose address space is capped
(MEMORY_CAP) and whose run is timed out (TIME_CAP): before these limits,
most of them hung, took gigabytes, crashed in C or ran a command.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from fleet.app.request import mail_addresses
from fleet.errors import ConfigError, InventoryError
from fleet.inventory import load_inventory
from fleet.inventory.hostnames import address_problem, expand_ranges
from fleet.inventory.limits import MAX_FILE_BYTES

MEMORY_CAP = 512 * 1024 * 1024
TIME_CAP = 60  # seconds: generous for a loaded machine; each case takes well under one
ROOT = Path(__file__).resolve().parent.parent

PLAYBOOK = "- hosts: all\n  checks:\n    - binding: {}\n"
OK_INVENTORY = "[mail]\nh1 ansible_connection=local\n"


def _capped() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))


def fleet(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("FLEET_DEBUG", None)
    return subprocess.run(
        [sys.executable, "-m", "fleet", *map(str, args)],
        cwd=cwd,
        env=env,
        preexec_fn=_capped,
        capture_output=True,
        text=True,
        timeout=TIME_CAP,
    )


def refused(result: subprocess.CompletedProcess[str], *words: str) -> str:
    """The one line of a clean refusal (exit 5), which names ``words``."""
    assert result.returncode == 5, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for word in words:
        assert word in lines[0]
    return lines[0]


def audit(tmp_path: Path, *args: str | Path) -> subprocess.CompletedProcess[str]:
    return fleet("audit", "-q", "--no-history", "--report-dir", tmp_path / "reports", *args,
                 cwd=tmp_path)  # fmt: skip


def listed(tmp_path: Path, inventory: Path) -> subprocess.CompletedProcess[str]:
    return fleet("inventory", "-i", inventory, "--list", cwd=tmp_path)


def _alias_bomb(indent: str = "") -> str:
    """Nine levels of nine aliases: 9**9 (387 million) strings once expanded."""
    lines = [f'{indent}a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for level in range(1, 10):
        items = ", ".join([f"*a{level - 1}"] * 9)
        lines.append(f"{indent}a{level}: &a{level} [{items}]")
    return "\n".join(lines) + "\n"


# -- YAML -----------------------------------------------------------------------


def test_a_yaml_alias_bomb_in_an_inventory_is_refused(tmp_path: Path) -> None:
    inventory = tmp_path / "hosts.yml"
    inventory.write_text("all:\n  hosts:\n    h1:\n  vars:\n" + _alias_bomb("    "))
    refused(listed(tmp_path, inventory), "hosts.yml:", "MAX_YAML_NODES")


def test_a_yaml_alias_bomb_in_group_vars_is_refused(tmp_path: Path) -> None:
    (tmp_path / "hosts").write_text(OK_INVENTORY)
    (tmp_path / "group_vars").mkdir()
    (tmp_path / "group_vars" / "all.yml").write_text(_alias_bomb())
    refused(listed(tmp_path, tmp_path / "hosts"), "all.yml:", "MAX_YAML_NODES")


def test_a_yaml_alias_bomb_in_a_playbook_is_refused(tmp_path: Path) -> None:
    (tmp_path / "hosts").write_text(OK_INVENTORY)
    playbook = tmp_path / "play.yml"
    playbook.write_text(PLAYBOOK + "  vars:\n" + _alias_bomb("    "))
    refused(audit(tmp_path, "-i", tmp_path / "hosts", "-p", playbook), "play.yml:", "alias")


def test_yaml_nested_100000_deep_is_refused_not_a_crash(tmp_path: Path) -> None:
    # libyaml composes recursively in C: this used to end in a segmentation fault.
    inventory = tmp_path / "hosts.yml"
    inventory.write_text("all:\n  vars:\n    a: " + "[" * 100_000 + "]" * 100_000 + "\n")
    refused(listed(tmp_path, inventory), "hosts.yml:3:", "MAX_YAML_DEPTH")


def test_an_alias_inside_its_own_anchor_is_refused(tmp_path: Path) -> None:
    inventory = tmp_path / "hosts.yml"
    inventory.write_text("all:\n  vars:\n    a: &a [1, *a]\n")
    refused(listed(tmp_path, inventory), "hosts.yml:3:", "loop")


def test_ordinary_anchors_and_merge_keys_still_load(tmp_path: Path) -> None:
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(
        "all:\n  vars:\n    base: &base {ansible_user: ops, fleet_smtp_port: 25}\n"
        "  hosts:\n    mx1: {<<: *base, ansible_port: 2222}\n    mx2: *base\n"
    )
    loaded = load_inventory(inventory)
    assert loaded.host_vars("mx1")["ansible_user"] == "ops"
    assert loaded.host_vars("mx2")["fleet_smtp_port"] == 25


# -- hosts and groups --------------------------------------------------------------


def test_a_host_range_of_a_billion_hosts_is_refused(tmp_path: Path) -> None:
    inventory = tmp_path / "hosts"
    inventory.write_text("[mail]\nh[0:999999999]\n")
    refused(listed(tmp_path, inventory), "hosts:2:", "h[0:999999999]", "MAX_HOSTS_PER_RANGE")


def test_ranges_that_multiply_past_the_limit_are_refused_before_expanding() -> None:
    with pytest.raises(ValueError, match="MAX_HOSTS_PER_RANGE"):
        expand_ranges("h[0:999][0:999]")
    assert len(expand_ranges("h[0:99][0:99]")) == 10_000


def test_a_5000_level_children_chain_is_refused(tmp_path: Path) -> None:
    sections = [f"[g{i}:children]\ng{i + 1}\n[g{i + 1}]" for i in range(5000)]
    inventory = tmp_path / "hosts"
    inventory.write_text("[g0]\nh1\n" + "\n".join(sections) + "\n")
    refused(listed(tmp_path, inventory), "hosts:", "MAX_GROUP_DEPTH")


def test_a_children_chain_written_bottom_up_is_refused(tmp_path: Path) -> None:
    sections = [f"[g{i}:children]\ng{i + 1}" for i in reversed(range(5000))]
    inventory = tmp_path / "hosts"
    inventory.write_text("[g5000]\nh1\n" + "\n".join(sections) + "\n")
    refused(listed(tmp_path, inventory), "hosts:", "MAX_GROUP_DEPTH")


def test_a_group_with_many_parents_is_not_deep(tmp_path: Path) -> None:
    parents = "".join(f"[p{i}:children]\nweb\n" for i in range(300))
    inventory = tmp_path / "hosts"
    inventory.write_text("[web]\nh1\n" + parents)
    assert len(load_inventory(inventory).groups["web"].parents) == 300


# -- files -------------------------------------------------------------------------


def test_a_binary_playbook_is_refused(tmp_path: Path) -> None:
    (tmp_path / "hosts").write_text(OK_INVENTORY)
    playbook = tmp_path / "play.yml"
    playbook.write_bytes(bytes(range(256)) * 64)
    refused(audit(tmp_path, "-i", tmp_path / "hosts", "-p", playbook), "play.yml", "not a text")


def test_a_latin1_inventory_is_refused_naming_the_byte(tmp_path: Path) -> None:
    inventory = tmp_path / "hosts"
    inventory.write_bytes("[mail]\nh1 owner=Müller\n".encode("latin-1"))
    refused(listed(tmp_path, inventory), "hosts", "not UTF-8")


def test_a_100_mb_inventory_is_refused_by_size_within_the_memory_cap(tmp_path: Path) -> None:
    inventory = tmp_path / "hosts"
    with inventory.open("wb") as file:
        file.truncate(100 * 1024 * 1024)  # sparse: costs no disk
    assert inventory.stat().st_size > MAX_FILE_BYTES
    refused(listed(tmp_path, inventory), "hosts", "MAX_FILE_BYTES")


# -- options and connection values ---------------------------------------------------


def test_a_malformed_mail_to_is_refused(tmp_path: Path) -> None:
    (tmp_path / "hosts").write_text(OK_INVENTORY)
    result = audit(tmp_path, "-i", tmp_path / "hosts", "--mail-to", "ops@example.com,a b@@x")
    assert result.returncode == 5
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and "'a b@@x' is not a mail address" in lines[0]


@pytest.mark.parametrize(
    "text",
    ["a b@@x", "<>", "ops@", "@example.com", "ops@example.com>", "ops@[mail]", "ops@a..b", " , "],
)
def test_mail_addresses_refuses_what_is_not_an_address(text: str) -> None:
    with pytest.raises(ConfigError):
        mail_addresses(text)


def test_mail_addresses_takes_ordinary_addresses() -> None:
    given = "ops@example.com, o.p+s@mx-1.example.com,root@localhost,x@[198.18.0.1]"
    assert mail_addresses(given) == (
        "ops@example.com",
        "o.p+s@mx-1.example.com",
        "root@localhost",
        "x@[198.18.0.1]",
    )


@pytest.mark.parametrize(
    ("address", "words"),
    [
        ("a" * 64 + ".example.com", ("label", "64 characters", "63")),
        (".".join(["a" * 60] * 5), ("304 characters", "253")),
    ],
)
def test_an_over_long_dns_name_in_ansible_host_is_refused(
    tmp_path: Path, address: str, words: tuple[str, ...]
) -> None:
    (tmp_path / "hosts").write_text(f"[mail]\nh1 ansible_host={address}\n")
    (tmp_path / "play.yml").write_text(PLAYBOOK)
    result = audit(tmp_path, "-i", tmp_path / "hosts", "-p", tmp_path / "play.yml")
    refused(result, "hosts:", "host h1: ansible_host", *words)


@pytest.mark.parametrize(
    "address", ["mx01", "mx01.example.com.", "198.18.0.1", "2001:db8::1", "münchen.example", "_x"]
)
def test_ordinary_host_names_and_addresses_are_accepted(address: str) -> None:
    assert address_problem(address) is None


def test_an_invalid_limit_regex_is_refused_not_cut_to_every_host(tmp_path: Path) -> None:
    (tmp_path / "hosts").write_text(OK_INVENTORY + "h2 ansible_connection=local\n")
    (tmp_path / "play.yml").write_text(PLAYBOOK)
    result = audit(tmp_path, "-i", tmp_path / "hosts", "-p", tmp_path / "play.yml", "-l", "~[")
    refused(result, "'~['")


def test_an_unclosed_bracket_in_a_limit_is_an_inventory_error(tmp_path: Path) -> None:
    inventory = tmp_path / "hosts"
    inventory.write_text(OK_INVENTORY)
    with pytest.raises(InventoryError, match="unmatched"):
        load_inventory(inventory).select("mail:~[")
