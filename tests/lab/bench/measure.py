"""Measuring a tool's run: wall time, client CPU (rusage), peak memory, medians."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[3]


PLAYBOOK = ROOT / "playbooks" / "mail-connectivity.yml"


KEX = "curve25519-sha256"  # paramiko's choice; OpenSSH 9 would pick sntrup761x25519


FORKS = 50  # fleet's default --forks, used for every tool


BAD = ("error", "unreachable")


@dataclass(frozen=True)
class Measured:
    """One tool's run: what it cost the client and whether every host came back."""

    tool: str
    hosts: int
    wall_s: float
    cpu_s: float  # user+sys of the process and every child it waited for
    peak_rss_mb: float  # ru_maxrss: the largest single process
    returned: int  # hosts whose every result came back
    tree_peak_mb: float | None = None  # sampled sum over the process tree
    exit_status: int = 0
    note: str = ""
    # Every run behind a median (``median_of``): (wall s, CPU ms/host) each.
    runs: tuple[tuple[float, float], ...] = ()

    @property
    def cpu_ms_per_host(self) -> float:
        return 1000 * self.cpu_s / max(1, self.hosts)

    @property
    def all_returned(self) -> bool:
        return self.returned == self.hosts


@dataclass(frozen=True)
class ProcessCost:
    wall_s: float
    cpu_s: float
    peak_rss_mb: float
    exit_status: int
    tree_peak_mb: float | None
    stdout: str
    stderr: str
    sys_s: float = 0.0  # the kernel's part of cpu_s


def _descendants(root: int) -> list[int]:
    """``root`` and every process below it, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            stat = Path(entry.path, "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, ()))
    return found


def tree_rss_mb(root: int) -> float:
    """Resident memory of ``root`` and its descendants together, in MB."""
    page = os.sysconf("SC_PAGE_SIZE")
    total = 0
    for pid in _descendants(root):
        with contextlib.suppress(OSError, IndexError, ValueError):
            total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * page
    return total / 2**20


class _TreeSampler(threading.Thread):
    """Samples a process tree's total RSS (a tool made of many processes has no ru_maxrss)."""

    def __init__(self, pid: int, interval: float = 0.5) -> None:
        super().__init__(daemon=True, name="bench-rss")
        self.pid, self.interval, self.peak = pid, interval, 0.0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(self.interval):
            self.peak = max(self.peak, tree_rss_mb(self.pid))


def run_measured(
    argv: Sequence[str],
    *,
    timeout: float,
    env: Mapping[str, str] | None = None,
    cwd: Path = ROOT,
    stdin_path: Path | None = None,
    sample_tree: bool = False,
) -> ProcessCost:
    """Run ``argv``; its wall time, rusage (os.wait4) and output.  Killed at ``timeout``."""
    with contextlib.ExitStack() as stack:
        out = stack.enter_context(tempfile.TemporaryFile())
        err = stack.enter_context(tempfile.TemporaryFile())
        stdin = stack.enter_context(stdin_path.open("rb")) if stdin_path else subprocess.DEVNULL
        started = time.monotonic()
        proc = subprocess.Popen(
            list(argv),
            stdin=stdin,
            stdout=out,
            stderr=err,
            cwd=cwd,
            env={**os.environ, **(env or {})},
            start_new_session=True,  # the timer can kill the whole group
        )
        sampler = _TreeSampler(proc.pid) if sample_tree else None
        if sampler:
            sampler.start()
        timer = threading.Timer(timeout, _kill_group, (proc.pid,))
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
            if sampler:
                sampler.stop.set()
        wall = time.monotonic() - started
        proc.returncode = os.waitstatus_to_exitcode(status)  # Popen must not wait again
        out.seek(0)
        err.seek(0)
        return ProcessCost(
            wall_s=wall,
            cpu_s=usage.ru_utime + usage.ru_stime,
            peak_rss_mb=usage.ru_maxrss / 1024,
            exit_status=proc.returncode,
            tree_peak_mb=sampler.peak if sampler else None,
            stdout=out.read().decode("utf-8", "replace"),
            stderr=err.read().decode("utf-8", "replace"),
            sys_s=usage.ru_stime,
        )


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def median_of(runs: Sequence[Measured]) -> Measured:
    """Several runs of one tool over the same hosts as one row: the median wall time
    and the median client CPU (each on its own), the largest peak memory, and the
    fewest hosts returned; every run is kept in ``runs`` and its spread in the note."""
    if len(runs) == 1:
        return runs[0]
    walls = sorted(m.wall_s for m in runs)
    cpus = sorted(m.cpu_s for m in runs)
    mid = len(runs) // 2
    per_host = [1000 * c / max(1, runs[0].hosts) for c in cpus]
    spread = (
        f"median of {len(runs)} runs (CPU {per_host[0]:.1f}-{per_host[-1]:.1f} ms/host, "
        f"wall {walls[0]:.2f}-{walls[-1]:.2f} s)"
    )
    trees = [m.tree_peak_mb for m in runs if m.tree_peak_mb is not None]
    return Measured(
        tool=runs[0].tool,
        hosts=runs[0].hosts,
        wall_s=walls[mid] if len(runs) % 2 else (walls[mid - 1] + walls[mid]) / 2,
        cpu_s=cpus[mid] if len(runs) % 2 else (cpus[mid - 1] + cpus[mid]) / 2,
        peak_rss_mb=max(m.peak_rss_mb for m in runs),
        returned=min(m.returned for m in runs),
        tree_peak_mb=max(trees) if trees else None,
        exit_status=next((m.exit_status for m in runs if m.exit_status), 0),
        note="; ".join(dict.fromkeys(n for n in (*(m.note for m in runs), spread) if n)),
        runs=tuple((m.wall_s, m.cpu_ms_per_host) for m in runs),
    )


def compile_bytecode() -> None:
    """Compile fleet's modules to bytecode once, as ``pip install`` does for an installed
    fleet: where PYTHONDONTWRITEBYTECODE is set (CI images, this sandbox) an editable
    checkout would otherwise recompile every module on every run, ~30 ms of CPU a run
    that no installed fleet pays."""
    import compileall

    compileall.compile_dir(str(ROOT / "fleet"), quiet=1)


def hosts_returned(report: Mapping[str, Any], expected: Sequence[str]) -> int:
    """Hosts whose every check has results, none of them error or unreachable."""
    by_host = {h["host"]: h for h in report.get("hosts", ())}
    count = 0
    for name in expected:
        results = by_host.get(name, {}).get("results", ())
        if results and all(r.get("status") not in BAD for r in results):
            count += 1
    return count


def _measured(tool: str, hosts: int, cost: ProcessCost, returned: int, note: str) -> Measured:
    return Measured(
        tool=tool,
        hosts=hosts,
        wall_s=cost.wall_s,
        cpu_s=cost.cpu_s,
        peak_rss_mb=cost.peak_rss_mb,
        returned=returned,
        tree_peak_mb=cost.tree_peak_mb,
        exit_status=cost.exit_status,
        note=note,
    )


def _say(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)
