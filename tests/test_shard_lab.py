"""End-to-end: the lab audited as two shards (``--shard 1/2``, ``--shard 2/2``) and merged
(``fleet merge``) makes the report of one whole audit: the same hosts with the same check
results, and the same findings from a diagnosis made across both shards.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fleet import causes
from fleet.diagnose import diagnose
from fleet.model import RunResult

pytestmark = pytest.mark.lab
ROOT = Path(__file__).resolve().parent.parent


def _fleet(*argv: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "fleet", *argv],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def _done(process: subprocess.Popen[str]) -> tuple[int, str]:
    _, stderr = process.communicate(timeout=180)
    return process.returncode, stderr


# What timing alone decides, in any two audits of the lab: postscreen greets at once a
# client it let through before (slow-greeting comes and goes), and a ping over a link
# without carrier ends "unreachable" or with no reply as the neighbour lookup times out.
_BY_TIMING = {
    causes.SLOW_GREETING: "ok-or-slow",
    causes.NO_REPLY: "lost",
    causes.UNREACHABLE: "lost",
}


def _checks(run: RunResult) -> dict[str, list[tuple]]:
    """Each host's results without timings (nor the outcomes timing alone decides)."""

    def seen(r) -> tuple:
        if r.cause == causes.SLOW_GREETING:
            return (r.check, r.target, "ok-or-slow")
        if r.check == "ping" and r.cause in _BY_TIMING:
            return (r.check, r.target, r.status.value, _BY_TIMING[r.cause])
        return (r.check, r.target, r.status.value, r.cause)

    return {h.host: sorted((seen(r) for r in h.results), key=repr) for h in run.hosts}


def _findings(run: RunResult) -> set[tuple]:
    return {
        (f.cause, f.key, f.hosts, f.severity)
        for f in diagnose(run).findings
        if f.cause != causes.SLOW_GREETING and "slow" not in f.key
    }


def test_two_shards_of_the_lab_merged_equal_one_whole_audit(lab, tmp_path: Path) -> None:
    inventory = str(lab.inventory.parent)
    common = ("audit", "-i", inventory, "-q", "--format", "html")
    # The shards and the whole audit side by side: the lab's hosts are judged by their
    # faults, not by who else probes them at the time.
    shards = [
        _fleet(*common, "--shard", f"{k}/2", "--report-dir", str(tmp_path / f"shard{k}"))
        for k in (1, 2)
    ]
    whole = _fleet(*common, "--no-history", "--report-dir", str(tmp_path / "whole"))
    ended = [_done(p) for p in (*shards, whole)]
    for code, stderr in ended:
        assert code in (2, 4), stderr
    assert all("selected hosts" in stderr for _, stderr in ended[:2])

    merged = _fleet("merge", str(tmp_path / "shard1"), str(tmp_path / "shard2"),
                    "--report-dir", str(tmp_path / "merged"), "--format", "html,csv")  # fmt: skip
    code, stderr = _done(merged)
    assert code == ended[2][0], stderr

    one = RunResult.from_json((tmp_path / "whole" / "lab" / "latest" / "report.json").read_bytes())
    result = tmp_path / "merged" / "lab" / "latest" / "report.json"
    both = RunResult.from_json(result.read_bytes())
    parts = [
        RunResult.from_json(
            (tmp_path / f"shard{k}" / "lab" / "latest" / "report.json").read_bytes()
        )
        for k in (1, 2)
    ]
    assert all(0 < len(p.hosts) < len(one.hosts) for p in parts)
    assert [h.host for h in both.hosts] == [h.host for h in one.hosts]
    assert {h.host: h.status for h in both.hosts} == {h.host: h.status for h in one.hosts}
    assert _checks(both) == _checks(one)
    assert _findings(both) == _findings(one)
    # mx-down is "host down" in the merge: judged on the sources of both shards.
    assert any(f.key == "host-down:mx-down" for f in diagnose(both).findings)
    assert (tmp_path / "merged" / "lab" / "history.sqlite").is_file()
    assert not (tmp_path / "shard1" / "lab" / "history.sqlite").exists()
    assert json.loads(result.read_text())["selection"]["host_count"] == len(one.hosts)
