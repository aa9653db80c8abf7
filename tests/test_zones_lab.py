"""Zones for real: the lab's two zones audited through Celery workers and Redis.

The coordinator runs in the root namespace, which cannot reach a zone host; a
worker runs inside each zone (tests.lab.zones).  The merged run equals a single
runner's that reaches both zones, and a zone whose worker is killed mid-run, or
missing, comes back "not audited (zone worker unavailable)" within the deadline.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleet import causes
from fleet.diagnose import diagnose
from fleet.model import RunResult, Status
from tests.lab import Lab
from tests.lab import zones as lab_zones

pytestmark = pytest.mark.lab

DEADLINE = 60
COMMON = ("--no-history", "-q", "--connect-timeout", "3", "--format", "json")


@pytest.fixture(scope="module")
def zones(lab: Lab) -> Iterator[lab_zones.Zones]:
    built = lab_zones.up(lab)
    try:
        yield built
    finally:
        for zone in list(built.workers):
            built.stop_worker(zone)
        lab_zones.down()


def _with_workers(zones: lab_zones.Zones, *wanted: str) -> None:
    for zone in sorted(lab_zones.NETWORKS):
        running = zones.workers.get(zone)
        if zone in wanted and (running is None or running.poll() is not None):
            zones.start_worker(zone)
        if zone not in wanted:
            zones.stop_worker(zone)


def _fleet(namespace: str | None, *args: str) -> list[str]:
    inside = ["ip", "netns", "exec", namespace] if namespace else []
    return [*inside, sys.executable, "-m", "fleet", *args]


def _audit(
    zones: lab_zones.Zones, where: Path, namespace: str | None = None, *more: str
) -> subprocess.CompletedProcess[str]:
    argv = _fleet(namespace, "audit", "-i", str(zones.inventory), "--report-dir", str(where))
    return subprocess.run(
        [*argv, *COMMON, *more],
        capture_output=True,
        text=True,
        timeout=DEADLINE + 60,
        env=lab_zones.fleet_env(),
        check=False,
    )


def _report(where: Path) -> RunResult:
    (found,) = where.glob("*/latest/report.json")
    return RunResult.from_json(found.read_text())


def _seen(run: RunResult) -> dict[tuple[str, str, str], tuple[str, str]]:
    return {(r.host, r.check, r.target or ""): (r.status.value, r.cause) for r in run.results}


def _findings(run: RunResult) -> set[tuple[str, tuple[str, ...], str]]:
    return {(f.cause, tuple(f.hosts), f.title) for f in diagnose(run).findings}


def test_the_coordinator_cannot_reach_a_zone_host_and_each_zones_runner_reaches_its_own(
    zones: lab_zones.Zones,
) -> None:
    for host in lab_zones.HOSTS:
        with pytest.raises(OSError), socket.create_connection((host.address, 22), timeout=2):
            pass
    probe = "import socket,sys; socket.create_connection((sys.argv[1], 22), timeout=2)"
    for runner, reached, not_reached in (("a", "za1", "zb1"), ("b", "zb1", "za1")):
        addresses = {h.name: h.address for h in lab_zones.HOSTS}
        inside = ["ip", "netns", "exec", lab_zones.runner_ns(runner), sys.executable, "-c", probe]
        ok = subprocess.run([*inside, addresses[reached]], capture_output=True, check=False)
        assert ok.returncode == 0, ok.stderr
        cut = subprocess.run([*inside, addresses[not_reached]], capture_output=True, check=False)
        assert cut.returncode != 0


def test_two_zones_through_celery_workers_equal_a_single_runner_reaching_both(
    zones: lab_zones.Zones, tmp_path: Path
) -> None:
    _with_workers(zones, "a", "b")
    single = _audit(zones, tmp_path / "single", lab_zones.ALL_NS)
    dispatched = _audit(zones, tmp_path / "zones", None, "--dispatch", "--deadline", str(DEADLINE))
    assert dispatched.returncode == single.returncode == 4, dispatched.stderr + single.stderr
    one, merged = _report(tmp_path / "single"), _report(tmp_path / "zones")
    assert [h.host for h in merged.hosts] == [h.host for h in one.hosts]
    assert _seen(merged) == _seen(one)
    assert _findings(merged) == _findings(one)
    # Not a vacuous equality: healthy hosts, a mail service down, a host down.
    seen = _seen(merged)
    assert seen[("za1", "smtp", "za2")] == ("ok", "")
    assert seen[("zb1", "smtp", "zb-smtpdown")][0] == "fail"
    assert merged.host("zb-down").unreachable
    assert not any(r.cause == causes.ZONE_UNAVAILABLE for r in merged.results)
    for zone in ("a", "b"):
        assert "fleet.audit_zone" in zones.worker_log(zone)


def _received(zones: lab_zones.Zones, zone: str, before: int, until: float) -> bool:
    while time.monotonic() < until:
        if (
            zones.worker_log(zone).count("fleet.audit_zone[") > before
            and " received" in (zones.worker_log(zone)[-2000:])
        ):
            return True
        time.sleep(0.02)
    return False


def _not_audited(run: RunResult, host: str) -> list[str]:
    results = run.host(host).results
    assert all(r.status is Status.ERROR and r.cause == causes.ZONE_UNAVAILABLE for r in results)
    return [r.summary for r in results]


def test_a_zone_worker_killed_mid_run_leaves_its_hosts_not_audited_within_the_deadline(
    zones: lab_zones.Zones, tmp_path: Path
) -> None:
    _with_workers(zones, "a", "b")
    before = zones.worker_log("b").count("fleet.audit_zone[")
    argv = _fleet(None, "audit", "-i", str(zones.inventory), "--report-dir", str(tmp_path))
    argv += [*COMMON, "--dispatch", "--deadline", str(DEADLINE)]
    began = time.monotonic()
    coordinator = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=lab_zones.fleet_env()
    )
    assert _received(zones, "b", before, began + 30), zones.worker_log("b")[-2000:]
    zones.stop_worker("b", signal.SIGKILL)
    out, err = coordinator.communicate(timeout=DEADLINE + 30)
    took = time.monotonic() - began
    assert took < DEADLINE / 2, (took, err)  # the death is seen, not waited out
    run = _report(tmp_path)
    for name in ("zb1", "zb-smtpdown", "zb-down"):
        summaries = _not_audited(run, name)
        assert all(s.startswith("not audited (zone worker unavailable)") for s in summaries)
        assert any("stopped answering" in s for s in summaries)
    assert run.host("za1").status is Status.OK and run.host("za2").status is Status.OK
    assert "not audited (zone worker unavailable)" in out
    assert json.loads((next(tmp_path.glob("*/latest/report.json"))).read_text())["hosts"]


def test_a_missing_zone_worker_leaves_its_hosts_not_audited_at_once(
    zones: lab_zones.Zones, tmp_path: Path
) -> None:
    _with_workers(zones, "a")
    began = time.monotonic()
    done = _audit(zones, tmp_path, None, "--dispatch", "--deadline", str(DEADLINE))
    took = time.monotonic() - began
    assert done.returncode == 2, done.stderr  # zone a ok, zone b's hosts errors
    assert took < 15, took
    run = _report(tmp_path)
    assert any("no worker consumes queue fleet.b" in s for s in _not_audited(run, "zb1"))
    assert run.host("za1").status is Status.OK
