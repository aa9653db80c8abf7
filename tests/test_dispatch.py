"""Zones (fleet.dispatch) without a broker: the zones, the task, the worker's checks, the
coordinator's waiting over a fake queue, and a single runner that needs no Celery.

The same over a real Celery and Redis, in the lab's two zones: tests/test_zones_lab.py.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from fleet import causes
from fleet.dispatch import coordinator
from fleet.dispatch.coordinator import zone_runs
from fleet.dispatch.worker import ZoneWorker
from fleet.dispatch.zones import ZoneTask, source_digest, zones_of
from fleet.errors import ConfigError
from fleet.model import CheckResult, HostResult, RunResult, Status
from fleet.plan import CheckPlan, HostPlan
from tests.helpers import ROOT

CHECKS = (CheckPlan("reach"), CheckPlan("ping"))


def host(name: str, zone: str | None = "a", **more: Any) -> HostPlan:
    variables = {"fleet_zone": zone, **more} if zone is not None else dict(more)
    return HostPlan(name, "ssh", f"198.18.4.{len(name)}", None, "audit", variables, CHECKS)


def run_of(hosts: Sequence[HostPlan], inventory: str = "w", playbook: str = "p") -> RunResult:
    results = tuple(
        HostResult(
            h.name,
            h.address,
            "ssh",
            "unix",
            tuple(CheckResult(h.name, c.name, Status.OK, "ok") for c in h.checks),
        )
        for h in hosts
    )
    return RunResult(inventory, playbook, "2026-12-05T00:00:00+00:00", "x", results)


# -- zones and the task --------------------------------------------------------------


def test_a_host_without_a_zone_is_refused_by_name() -> None:
    with pytest.raises(ConfigError, match="host mx9 has no fleet_zone"):
        zones_of([host("mx1"), host("mx9", zone=None)])


def test_a_zone_name_unfit_for_a_queue_is_refused() -> None:
    with pytest.raises(ConfigError, match="not a zone name"):
        zones_of([host("mx1", zone="dmz east")])


def test_zones_group_hosts_in_plan_order() -> None:
    zones = zones_of([host("b1", "b"), host("a1"), host("b2", "b")])
    assert {z: [h.name for h in hs] for z, hs in zones.items()} == {"a": ["a1"], "b": ["b1", "b2"]}


def test_the_task_carries_references_and_timings_never_secrets() -> None:
    task = ZoneTask(
        "a",
        "prod",
        "sha256:1",
        "mail.yml",
        "sha256:2",
        ("mx1",),
        {"forks": 5, "ansible_password": "hunter2", "known_hosts": "/root/kh"},
        30.0,
    )
    sent = json.dumps(task.to_dict())
    assert "hunter2" not in sent and "known_hosts" not in sent
    assert ZoneTask.from_dict(json.loads(sent)) == ZoneTask(
        "a", "prod", "sha256:1", "mail.yml", "sha256:2", ("mx1",), {"forks": 5}, 30.0
    )


def test_a_message_that_is_not_a_task_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="not a fleet zone task"):
        ZoneTask.from_dict({"zone": "a"})


def test_the_digest_is_the_same_for_two_copies_and_changes_with_any_vars_file(
    tmp_path: Path,
) -> None:
    one = tmp_path / "one"
    (one / "group_vars").mkdir(parents=True)
    (one / "hosts").write_text("[mail]\nmx1\n")
    (one / "group_vars" / "mail.yml").write_text("fleet_zone: a\n")
    (one / ".lab").mkdir()
    (one / ".lab" / "lab_key").write_text("this copy's own key\n")
    two = tmp_path / "two"
    shutil.copytree(one, two)
    (two / ".lab" / "lab_key").write_text("another key: hidden files are not the inventory\n")
    assert source_digest(one) == source_digest(two)
    assert source_digest(one / "hosts") == source_digest(two / "hosts")
    (two / "group_vars" / "mail.yml").write_text("fleet_zone: b\n")
    assert source_digest(one) != source_digest(two)
    assert source_digest(one / "hosts") != source_digest(two / "hosts")


# -- the worker ------------------------------------------------------------------------


def _worker(tmp_path: Path, hosts: Sequence[HostPlan], zone: str = "a") -> ZoneWorker:
    inventory, playbook = tmp_path / "hosts", tmp_path / "play.yml"
    inventory.write_text("[mail]\nmx1\n")
    playbook.write_text("- hosts: all\n")

    def audit(overrides: Mapping[str, Any], check: Any) -> RunResult:
        chosen = [h for h in hosts if h.name in overrides["limit"].split(":")]
        check(chosen)
        return run_of(chosen)

    return ZoneWorker(zone, inventory, playbook, audit)


def _task(worker: ZoneWorker, hosts: Sequence[str], **changed: Any) -> dict[str, Any]:
    task = ZoneTask(
        "a", "prod", source_digest(worker.inventory), "mail.yml", source_digest(worker.playbook),
        tuple(hosts), {"forks": 3}, 20.0,
    )  # fmt: skip
    return {**task.to_dict(), **changed}


def test_a_worker_audits_its_hosts_under_the_coordinators_labels(tmp_path: Path) -> None:
    worker = _worker(tmp_path, [host("mx1"), host("mx2")])
    reply = worker(_task(worker, ["mx1", "mx2"]))
    run = RunResult.from_dict(reply["run"])
    assert (run.inventory, run.playbook) == ("prod", "mail.yml")
    assert [h.host for h in run.hosts] == ["mx1", "mx2"]


def test_a_worker_refuses_another_copy_of_the_inventory(tmp_path: Path) -> None:
    worker = _worker(tmp_path, [host("mx1")])
    reply = worker(_task(worker, ["mx1"], inventory_digest="sha256:0000"))
    assert "inventory" in reply["refused"] and "differs" in reply["refused"]


def test_a_worker_refuses_a_task_for_another_zone(tmp_path: Path) -> None:
    worker = _worker(tmp_path, [host("mx1")], zone="b")
    assert "zone 'a'" in worker(_task(worker, ["mx1"]))["refused"]


def test_a_worker_refuses_hosts_it_plans_in_another_zone(tmp_path: Path) -> None:
    worker = _worker(tmp_path, [host("mx1"), host("mx2", "b")])
    assert "outside zone 'a'" in worker(_task(worker, ["mx1", "mx2"]))["refused"]


# -- the coordinator over a fake queue ----------------------------------------------


class FakePending:
    def __init__(self, reply: Mapping[str, Any] | None, worker: str | None, after: float) -> None:
        self.reply, self.who, self.ready_at = reply, worker, time.monotonic() + after
        self.cancelled = False

    def outcome(self, wait: float) -> Mapping[str, Any] | None:
        time.sleep(max(0.0, min(wait, self.ready_at - time.monotonic())))
        return self.reply if time.monotonic() >= self.ready_at else None

    def worker(self) -> str | None:
        return self.who

    def cancel(self) -> None:
        self.cancelled = True


class FakeQueue:
    """Workers by queue; ``replies`` by zone: (reply or None for never, seconds)."""

    def __init__(self, workers: dict[str, set[str]], replies: dict[str, Any]) -> None:
        self.workers, self.replies = workers, replies
        self.sent: dict[str, FakePending] = {}
        self.sent_tasks: dict[str, Mapping[str, Any]] = {}

    def consumers(self) -> Mapping[str, set[str]]:
        return {q: set(w) for q, w in self.workers.items()}

    def send(self, zone: str, task: Mapping[str, Any], expires: float) -> FakePending:
        reply, after = self.replies[zone]
        self.sent_tasks[zone] = task
        if callable(reply):
            reply = reply(task)
        worker = next(iter(sorted(self.workers.get(f"fleet.{zone}", ()))), None)
        self.sent[zone] = FakePending(reply, worker, after)
        return self.sent[zone]


def _task_for(zone: str, members: Sequence[HostPlan], seconds: float) -> ZoneTask:
    return ZoneTask(zone, "prod", "d1", "mail.yml", "d2", tuple(h.name for h in members))


def _audited(task: Mapping[str, Any]) -> dict[str, Any]:
    return {"run": run_of([host(name) for name in task["hosts"]]).to_dict()}


def _by_host(runs: Sequence[RunResult]) -> dict[str, set[tuple[str, str]]]:
    return {
        h.host: {(r.status.value, r.cause) for r in h.results} for run in runs for h in run.hosts
    }


HOSTS = [host("a1"), host("a2"), host("b1", "b")]


def test_a_zone_without_a_worker_is_not_audited_at_once_and_nothing_is_sent() -> None:
    queue = FakeQueue({"fleet.a": {"a.1@x"}}, {"a": (_audited, 0.0)})
    began = time.monotonic()
    runs = zone_runs(HOSTS, queue, _task_for, wait=30.0)
    assert time.monotonic() - began < 2.0
    assert set(queue.sent) == {"a"}
    seen = _by_host(runs)
    assert seen["a1"] == {("ok", "")}
    assert seen["b1"] == {("error", causes.ZONE_UNAVAILABLE)}
    b1 = next(h for run in runs for h in run.hosts if h.host == "b1")
    assert all(
        r.summary.startswith("not audited (zone worker unavailable): zone b: no worker consumes")
        for r in b1.results
    )


def test_a_zone_whose_worker_dies_mid_run_is_given_up_long_before_the_deadline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(coordinator, "POLL", 0.1)
    workers = {"fleet.a": {"a.1@x"}, "fleet.b": {"b.1@x"}}
    queue = FakeQueue(workers, {"a": (_audited, 0.2), "b": (None, 0.0)})
    began = time.monotonic()
    runs = []

    def kill_b_soon() -> None:
        time.sleep(0.3)
        workers["fleet.b"] = set()

    import threading

    threading.Thread(target=kill_b_soon, daemon=True).start()
    runs = zone_runs(HOSTS, queue, _task_for, wait=30.0)
    assert time.monotonic() - began < 3.0
    seen = _by_host(runs)
    assert seen["a1"] == seen["a2"] == {("ok", "")}
    assert seen["b1"] == {("error", causes.ZONE_UNAVAILABLE)}
    assert queue.sent["b"].cancelled


def test_a_zone_that_does_not_answer_by_the_deadline_is_not_audited_then() -> None:
    queue = FakeQueue({"fleet.a": {"a.1@x"}}, {"a": (None, 0.0)})
    began = time.monotonic()
    runs = zone_runs(HOSTS[:2], queue, _task_for, wait=1.5)
    assert 1.4 < time.monotonic() - began < 3.0
    assert _by_host(runs)["a1"] == {("error", causes.ZONE_UNAVAILABLE)}
    assert runs[0].deadline_hit


def test_a_refusal_is_the_zones_reason_in_its_hosts_results() -> None:
    queue = FakeQueue({"fleet.a": {"a.1@x"}}, {"a": ({"refused": "inventory differs"}, 0.0)})
    runs = zone_runs(HOSTS[:2], queue, _task_for, wait=10.0)
    summary = runs[0].hosts[0].results[0].summary
    assert "the worker refused the task: inventory differs" in summary


def test_a_broker_that_is_down_leaves_every_zone_not_audited_saying_why() -> None:
    queue = FakeQueue({}, {})
    runs = zone_runs(HOSTS, queue, _task_for, wait=10.0, down="the broker does not answer")
    assert {r.cause for run in runs for r in run.results} == {causes.ZONE_UNAVAILABLE}
    assert "the broker does not answer" in runs[0].hosts[0].results[0].summary


# -- the command line ---------------------------------------------------------------

# Runs fleet's console script with celery (and kombu, redis) unimportable.
_BLOCKED = (
    "import sys\n"
    "for name in ('celery', 'kombu', 'redis'):\n"
    "    sys.modules[name] = None\n"
    "from fleet.cli import main\n"
    "code = main(sys.argv[1:])\n"
    "assert not any(sys.modules.get(n) for n in ('celery', 'kombu')), 'celery was imported'\n"
    "sys.exit(code)\n"
)


def _fleet_without_celery(*args: str, env: Mapping[str, str] = {}) -> subprocess.CompletedProcess:
    environ = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    return subprocess.run(
        [sys.executable, "-c", _BLOCKED, *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env=environ,
        check=False,
    )


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_single_runner_audits_with_celery_absent(tmp_path: Path) -> None:
    inventory = tmp_path / "hosts"
    inventory.write_text(f"[mail]\ndead ansible_host=127.0.0.1 ansible_port={_closed_port()}\n")
    done = _fleet_without_celery(
        "audit", "-i", str(inventory), "--report-dir", str(tmp_path / "r"), "-q", "--no-history"
    )
    assert done.returncode == 4, done.stderr  # unreachable: audited, not refused
    assert list((tmp_path / "r").glob("*/*/report.json"))


def test_dispatch_without_celery_says_which_extra_to_install(tmp_path: Path) -> None:
    inventory = tmp_path / "hosts"
    inventory.write_text("[mail]\nmx1 ansible_host=198.18.4.11 fleet_zone=a\n")
    done = _fleet_without_celery(
        "audit", "--dispatch", "-i", str(inventory), "--report-dir", str(tmp_path / "r"),
        env={"FLEET_BROKER_URL": "redis://198.18.0.90:6379/0"},
    )  # fmt: skip
    assert done.returncode == 5
    assert "pip install 'fleet[zones]'" in done.stderr


def test_dispatch_refuses_a_host_without_a_zone_before_any_broker(tmp_path: Path) -> None:
    inventory = tmp_path / "hosts"
    inventory.write_text("[mail]\nmx1 ansible_host=198.18.4.11 fleet_zone=a\nmx2\n")
    done = _fleet_without_celery(
        "audit", "--dispatch", "-i", str(inventory), "--report-dir", str(tmp_path / "r")
    )
    assert done.returncode == 5
    assert "host mx2 has no fleet_zone" in done.stderr


def test_the_coordinator_merges_the_zones_runs_into_one_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fleet import app
    from fleet.dispatch import celeryq

    inventory = tmp_path / "hosts"
    inventory.write_text(
        "[za]\na1 ansible_host=198.18.4.11\na2 ansible_host=198.18.4.12\n[za:vars]\nfleet_zone=a\n"
        "[zb]\nb1 ansible_host=198.18.5.11 fleet_zone=b\n"
    )
    queue = FakeQueue({"fleet.a": {"a.1@x"}}, {"a": (_audited, 0.0)})
    monkeypatch.setattr(celeryq, "coordinator_queue", lambda: (queue, ""))
    request = app.AuditRequest(
        inventory=str(inventory),
        dispatch=True,
        report_dir=str(tmp_path / "r"),
        quiet=True,
        history=False,
        deadline=10.0,
        formats=("json",),
    )
    assert app.audit(request) == 2  # zone b's host could not be audited: an error
    sent = ZoneTask.from_dict(queue.sent_tasks["a"])
    assert sent.hosts == ("a1", "a2") and sent.deadline is not None and sent.deadline < 10
    assert sent.inventory_digest == source_digest(inventory)
    (written,) = (tmp_path / "r").glob("*/latest/report.json")
    run = RunResult.from_json(written.read_text())
    assert [h.host for h in run.hosts] == ["a1", "a2", "b1"]
    assert _by_host([run])["b1"] == {("error", causes.ZONE_UNAVAILABLE)}
    assert run.inventory == app.inventory_name(str(inventory))


def test_a_host_of_a_zone_without_a_worker_shows_as_not_audited_with_the_worker_fix() -> None:
    from fleet.diagnose import diagnose
    from fleet.render.console import host_rows

    queue = FakeQueue({"fleet.a": {"a.1@x"}}, {"a": (_audited, 0.0)})
    runs = zone_runs(HOSTS, queue, _task_for, wait=30.0)
    b1 = next(h for run in runs for h in run.hosts if h.host == "b1")
    assert b1.stopped == causes.ZONE_UNAVAILABLE
    [row] = host_rows(b1)
    assert row[:3] == ["b1", "all", "not audited (zone worker unavailable)"]
    merged = RunResult("w", "p", "", "", (b1,))
    [found] = [f for f in diagnose(merged).findings if f.hosts == ("b1",)]
    assert "zone worker unavailable" in found.title
    assert "fleet worker --zone" in found.fix


class _BrokerGone(FakePending):
    def outcome(self, wait: float) -> Mapping[str, Any] | None:
        raise ConnectionError("Connection closed by server.")


def test_a_broker_lost_mid_run_gives_up_that_zone_and_keeps_the_others() -> None:
    workers = {"fleet.a": {"a.1@x"}, "fleet.b": {"b.1@x"}}
    queue = FakeQueue(workers, {"a": (_audited, 0.0), "b": (None, 0.0)})
    sent = queue.send

    def send(zone: str, task: Mapping[str, Any], expires: float) -> FakePending:
        pending = sent(zone, task, expires)
        return _BrokerGone(None, "b.1@x", 0.0) if zone == "b" else pending

    queue.send = send  # type: ignore[method-assign]
    seen = _by_host(zone_runs(HOSTS, queue, _task_for, wait=30.0))
    assert seen["a1"] == {("ok", "")} and seen["b1"] == {("error", causes.ZONE_UNAVAILABLE)}


def test_a_broker_lost_while_sending_gives_up_that_zone() -> None:
    queue = FakeQueue({"fleet.a": {"a.1@x"}, "fleet.b": {"b.1@x"}}, {"a": (_audited, 0.0)})
    # zone b's reply is missing from the fake: sending it raises, as a dropped broker does
    seen = _by_host(zone_runs(HOSTS, queue, _task_for, wait=30.0))
    assert seen["a1"] == {("ok", "")} and seen["b1"] == {("error", causes.ZONE_UNAVAILABLE)}
