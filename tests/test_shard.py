"""--shard K/N and fleet merge: stable, balanced parts of the selected hosts, merged back."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from fleet.app.shard import AUTO, resolve_shard, shard_hosts, shard_option
from fleet.errors import ConfigError
from fleet.model import Shard
from fleet.plan import HostPlan
from tests.helpers import run_module


def _plans(names: list[str]) -> list[HostPlan]:
    return [HostPlan(name, "ssh", name, None, None) for name in names]


def _names(count: int, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    return [f"mx{n:05}.site{rng.randrange(40)}.example.com" for n in range(count)]


def _partition(names: list[str], total: int) -> list[list[str]]:
    hosts = _plans(names)
    return [[h.name for h in shard_hosts(hosts, Shard(k, total))] for k in range(1, total + 1)]


@pytest.mark.parametrize("count", [1_000, 10_000])
@pytest.mark.parametrize("total", [2, 3, 7, 16])
def test_shards_hold_every_host_once_and_differ_by_at_most_one(count: int, total: int) -> None:
    parts = _partition(_names(count), total)
    assert sorted(n for part in parts for n in part) == sorted(_names(count))
    sizes = [len(part) for part in parts]
    assert max(sizes) - min(sizes) <= 1


def test_a_shard_holds_the_same_hosts_whatever_order_the_inventory_lists_them() -> None:
    names = _names(1_000)
    shuffled = names[:]
    random.Random(1).shuffle(shuffled)
    assert [sorted(p) for p in _partition(names, 4)] == [sorted(p) for p in _partition(shuffled, 4)]


def test_a_shard_keeps_the_inventory_order_of_its_hosts() -> None:
    names = _names(100)
    for part in _partition(names, 3):
        assert part == [n for n in names if n in part]


def test_a_host_added_to_the_inventory_moves_at_most_n_minus_1_others() -> None:
    names = _names(1_000)
    before = {n: k for k, part in enumerate(_partition(names, 4)) for n in part}
    after = {
        n: k for k, part in enumerate(_partition([*names, "mx-new.example.com"], 4)) for n in part
    }
    assert sum(before[n] != after[n] for n in names) <= 3


def test_more_shards_than_hosts_leaves_some_empty() -> None:
    assert sorted(map(len, _partition(["a", "b"], 3))) == [0, 1, 1]


@pytest.mark.parametrize(
    ("text", "words"),
    [("0/2", "K must be from 1 to N"), ("3/2", "K must be from 1 to N"), ("1-2", "K/N")],
)
def test_a_bad_shard_is_refused(text: str, words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        shard_option(text)


def test_shard_option_reads_k_of_n_and_auto() -> None:
    assert shard_option(" 2/5 ") == Shard(2, 5)
    assert shard_option("AUTO") == AUTO


def test_auto_reads_gitlabs_parallel_variables() -> None:
    shard, source = resolve_shard(AUTO, {"CI_NODE_INDEX": "3", "CI_NODE_TOTAL": "4"})
    assert shard == Shard(3, 4)
    assert source == "GitLab (CI_NODE_INDEX='3', CI_NODE_TOTAL='4')"


def test_auto_reads_a_kubernetes_indexed_jobs_zero_based_index() -> None:
    env = {"JOB_COMPLETION_INDEX": "0", "FLEET_SHARD_TOTAL": "3"}
    shard, source = resolve_shard(AUTO, env)
    assert shard == Shard(1, 3)
    assert source.startswith("Kubernetes Indexed Job (JOB_COMPLETION_INDEX='0'")


@pytest.mark.parametrize(
    ("env", "words"),
    [
        ({}, "no shard in the environment"),
        ({"CI_NODE_INDEX": "5", "CI_NODE_TOTAL": "4"}, "is not a shard K of N"),
        ({"CI_NODE_INDEX": "1"}, "is not a shard K of N"),
        ({"JOB_COMPLETION_INDEX": "2"}, "set FLEET_SHARD_TOTAL"),
        ({"JOB_COMPLETION_INDEX": "3", "FLEET_SHARD_TOTAL": "3"}, "is not a shard K of N"),
        ({"JOB_COMPLETION_INDEX": "x", "FLEET_SHARD_TOTAL": "3"}, "not a whole number"),
    ],
)
def test_auto_refuses_missing_or_bad_variables_in_one_line(env: dict, words: str) -> None:
    with pytest.raises(ConfigError, match=words) as raised:
        resolve_shard(AUTO, env)
    assert "\n" not in str(raised.value)


# -- fleet audit --shard and fleet merge, on this machine -------------------------------

PLAYBOOK = "- hosts: all\n  checks:\n    - binding: {}\n    - ipconfig: {}\n"


@pytest.fixture()
def local_fleet(tmp_path: Path) -> tuple[Path, Path]:
    inventory = tmp_path / "prod"
    inventory.write_text("[mail]\n" + "".join(f"h{n} ansible_connection=local\n" for n in range(5)))
    playbook = tmp_path / "audit.yml"
    playbook.write_text(PLAYBOOK)
    return inventory, playbook


def _audit(fleet: tuple[Path, Path], reports: Path, *args: str, env: dict | None = None):
    inventory, playbook = fleet
    argv = ["audit", "-i", str(inventory), "-p", str(playbook), "--report-dir", str(reports)]
    return run_module("fleet", *argv, "-q", *args, env=env)


def _statuses(report: Path) -> dict:
    data = json.loads(report.read_text())
    return {h["host"]: [(r["check"], r["status"]) for r in h["results"]] for h in data["hosts"]}


def test_two_shards_merged_equal_the_whole_audit(local_fleet, tmp_path: Path) -> None:
    whole = _audit(local_fleet, tmp_path / "whole", "--no-history")
    assert whole.returncode in (0, 2), whole.stderr
    for k in (1, 2):
        part = _audit(local_fleet, tmp_path / f"shard{k}", "--shard", f"{k}/2")
        assert part.returncode in (0, 2), part.stderr
        assert f"fleet: shard {k}/2 (from --shard): " in part.stderr
        assert not (tmp_path / f"shard{k}" / "prod" / "history.sqlite").exists()
    merged = run_module("fleet", "merge", str(tmp_path / "shard1"), str(tmp_path / "shard2"),
                        "--report-dir", str(tmp_path / "merged"))  # fmt: skip
    assert merged.returncode == whole.returncode, merged.stderr
    result = tmp_path / "merged" / "prod" / "latest" / "report.json"
    assert _statuses(result) == _statuses(tmp_path / "whole" / "prod" / "latest" / "report.json")
    assert list(_statuses(result)) == [f"h{n}" for n in range(5)]
    assert (tmp_path / "merged" / "prod" / "history.sqlite").is_file()
    assert {"report.html", "report.csv", "report.xml"} <= {p.name for p in result.parent.iterdir()}


def test_one_report_given_three_ways_counts_once_and_a_missing_shard_exits_7(
    local_fleet, tmp_path: Path
) -> None:
    _audit(local_fleet, tmp_path / "s1", "--shard", "1/2")
    report = tmp_path / "s1" / "prod" / "latest" / "report.json"
    done = run_module("fleet", "merge", str(report), str(tmp_path / "s1" / "prod" / "latest"),
                      str(report.resolve()), "--report-dir", str(tmp_path / "m"))  # fmt: skip
    assert done.returncode == 7
    assert done.stderr.strip() == "fleet: missing shards: 2/2 (have 1/2)"


def test_auto_shard_from_gitlab_says_which_it_used(local_fleet, tmp_path: Path) -> None:
    env = {"CI_NODE_INDEX": "2", "CI_NODE_TOTAL": "2"}
    done = _audit(local_fleet, tmp_path / "r", "--shard", "auto", env=env)
    assert done.returncode in (0, 2), done.stderr
    assert "fleet: shard 2/2 (from GitLab (CI_NODE_INDEX='2', CI_NODE_TOTAL='2'))" in done.stderr


def test_auto_shard_without_ci_variables_exits_5_in_one_line(local_fleet, tmp_path: Path) -> None:
    env = {"CI_NODE_INDEX": "", "CI_NODE_TOTAL": "", "JOB_COMPLETION_INDEX": ""}
    done = _audit(local_fleet, tmp_path / "r", "--shard", "auto", env=env)
    assert done.returncode == 5
    assert done.stderr.strip().startswith("fleet: --shard auto: no shard in the environment")


def test_a_shard_refuses_to_mail(local_fleet, tmp_path: Path) -> None:
    done = _audit(local_fleet, tmp_path / "r", "--shard", "1/2", "--mail-to", "ops@example.com")
    assert done.returncode == 5
    assert "a shard does not mail its part" in done.stderr


def test_the_selection_digest_ignores_order_and_sees_a_moved_address(tmp_path: Path) -> None:
    from dataclasses import replace

    from fleet.app.shard import selection_of

    playbook = tmp_path / "p.yml"
    playbook.write_text(PLAYBOOK)
    hosts = _plans(_names(50))
    same = selection_of(list(reversed(hosts)), playbook)
    assert selection_of(hosts, playbook) == same
    moved = selection_of([replace(hosts[0], address="198.18.0.99"), *hosts[1:]], playbook)
    assert moved.inventory_digest != same.inventory_digest
    playbook.write_text(PLAYBOOK + "# changed\n")
    assert selection_of(hosts, playbook).playbook_digest != same.playbook_digest


def test_a_shard_records_every_selected_name_a_whole_run_only_the_count(tmp_path: Path) -> None:
    from fleet.app.shard import selection_of

    playbook = tmp_path / "p.yml"
    playbook.write_text(PLAYBOOK)
    hosts = _plans(["b", "a", "c"])
    assert selection_of(hosts, playbook, Shard(1, 2)).hosts == ("b", "a", "c")
    assert selection_of(hosts, playbook).hosts == ()
    assert selection_of(hosts, playbook).host_count == 3


def test_invoke_merge_runs_fleet_merge(tmp_path: Path) -> None:
    done = run_module("invoke", "merge", str(tmp_path / "nothing"), "--no-history")
    assert done.returncode == 5
    assert done.stderr.strip() == f"fleet: {tmp_path / 'nothing'}: no such file or directory"


def test_an_empty_shard_writes_an_empty_part(local_fleet, tmp_path: Path) -> None:
    done = _audit(local_fleet, tmp_path / "r", "--shard", "1/6")  # 5 hosts, 6 shards
    assert done.returncode == 0, done.stderr
    assert "fleet: shard 1/6 (from --shard): 0 of 5 selected hosts" in done.stderr
    assert _statuses(tmp_path / "r" / "prod" / "latest" / "report.json") == {}


def test_a_shard_cannot_also_be_dispatched_to_zones(local_fleet, tmp_path: Path) -> None:
    done = _audit(local_fleet, tmp_path / "r", "--shard", "1/2", "--dispatch")
    assert done.returncode == 5
    assert "--shard with --dispatch" in done.stderr and "Traceback" not in done.stderr
