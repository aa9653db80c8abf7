"""WinRM: the standard lab's cost per Windows host, and the Windows hosts at scale."""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import urllib.request
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from fleet.plan import HostPlan
from tests.lab import control, inventory, topology
from tests.lab.bench.labs import BenchLab, audit_script, bench_plans
from tests.lab.bench.measure import Measured, _measured, _say, median_of, run_measured
from tests.lab.bench.tools import ansible_installed, ansible_playbook, fleet_audit


def winrm_cost() -> list[dict[str, Any]]:
    """Audit the standard lab's Windows hosts; per host what its WS-Management server counted."""
    lab = control.up()
    windows = [h for h in lab.hosts if h.kind is topology.Kind.WINDOWS]
    before = {h.name: _wsman_stats(h.address) for h in windows}
    argv = [sys.executable, "-m", "fleet", "audit", "-i", str(lab.inventory.parent)]
    with tempfile.TemporaryDirectory(prefix="fleet-bench-") as reports:
        argv += ["-l", "windows", "-q", "--report-dir", reports]
        cost = run_measured(argv, timeout=300)
    runner = lab.topology.bridge_address
    rows = []
    for host in windows:
        after = _wsman_stats(host.address).get(runner, {})
        was = before[host.name].get(runner, {})
        counts = {k: after.get(k, 0) - was.get(k, 0) for k in ("requests", "shells", "commands")}
        rows.append({"host": host.name, "role": host.role, **counts})
    rows.append({"host": "(audit wall time)", "role": f"{cost.wall_s:.1f} s"})
    return rows


def _wsman_stats(address: str) -> dict[str, dict[str, int]]:
    with urllib.request.urlopen(f"http://{address}:5985/stats", timeout=5) as reply:
        return dict(json.loads(reply.read()))


# ---------------------------------------------------------------- Windows hosts at scale

WINDOWS_GROUP = "winbench"


@dataclass
class WindowsFigures:
    """The Windows hosts at scale: fleet (and Ansible) over WinRM, and where fleet's CPU goes."""

    hosts: int
    simulators: int  # processes serving them
    fleet: Measured | None = None
    ansible: Measured | None = None
    # Per host, from the simulators' counters over fleet's first run.
    requests_per_host: float | None = None
    one_shell_one_command: int = 0  # hosts with exactly one shell and one command
    profile: list[tuple[str, float]] = field(default_factory=list)  # (where, % of samples)
    hot: list[tuple[str, float]] = field(default_factory=list)  # (function, % self)
    notes: list[str] = field(default_factory=list)


def windows_phase(
    bench: BenchLab, forks: int, repeat: int, *, profile_dir: Path | None
) -> WindowsFigures:
    """fleet over the bench's Windows hosts (``repeat`` runs, the median), the WS-Management
    counters of the first run, Ansible's ``raw`` over the same WinRM, and a profile (its
    raw stacks kept in ``profile_dir``; none without it)."""
    plans = bench_plans(bench.inventory_dir, WINDOWS_GROUP)
    names = [p.name for p in plans]
    hosts = [h for h in bench.lab.hosts if WINDOWS_GROUP in h.groups]
    out = WindowsFigures(len(hosts), len({h.namespace for h in hosts}))
    runner = bench.lab.topology.bridge_address
    before = {h.address: _wsman_stats(h.address).get(runner, {}) for h in hosts}
    runs = []
    for turn in range(1, repeat + 1):
        _say(f"fleet over {len(hosts)} Windows hosts ({turn}/{repeat})")
        runs.append(fleet_audit(bench, WINDOWS_GROUP, names)[0])
        if turn == 1:
            counts = [
                _delta(_wsman_stats(h.address).get(runner, {}), before[h.address]) for h in hosts
            ]
            out.requests_per_host = sum(c["requests"] for c in counts) / max(1, len(counts))
            out.one_shell_one_command = sum(c["shells"] == 1 and c["commands"] == 1 for c in counts)
    out.fleet = replace(median_of(runs), tool=f"fleet, WinRM ({out.simulators} simulators)")
    if ansible_installed():
        _say("ansible-playbook over WinRM")
        out.ansible = ansible_winrm_run(plans, forks)
    else:
        out.notes.append("ansible-playbook is not installed: its WinRM row is skipped")
    if profile_dir is not None:
        _say("fleet over WinRM under py-spy")
        found, note = profile_winrm(bench, profile_dir)
        if found:
            out.profile, out.hot = found.parts, found.hot
        out.notes.append(note)
    return out


def _delta(after: Mapping[str, int], before: Mapping[str, int]) -> dict[str, int]:
    return {k: after.get(k, 0) - before.get(k, 0) for k in ("requests", "shells", "commands")}


def ansible_winrm_run(plans: Sequence[HostPlan], forks: int) -> Measured:
    """ansible-playbook, one ``raw`` task running fleet's script over the same WinRM
    (pywinrm, NTLM with message encryption over HTTP), the same forks.  The simulator
    takes the script as Ansible's PowerShell plugin reshapes it (``winsim.ansible_form``)."""
    group_vars = [f"{name}={value}" for name, value in inventory.WINDOWS_VARS.items()]
    group_vars.append("ansible_winrm_message_encryption=auto")  # sealed, as fleet's
    env = {"NO_PROXY": "*", "no_proxy": "*"}  # requests must not send lab traffic to a proxy
    cost, returned = ansible_playbook(
        WINDOWS_GROUP, plans, [audit_script(plans[0])], forks, env, group_vars
    )
    note = f"-f {forks}, raw over WinRM (NTLM, sealed)"
    if cost.exit_status:
        note = f"exit {cost.exit_status}: {cost.stdout[-300:]}"
    return _measured("ansible-playbook, WinRM raw", len(plans), cost, returned, note)


# Where a sample's time goes: the first library found from the leaf up.  py-spy samples
# only the thread holding the GIL (``--gil``): Python's own CPU; the system calls (the
# socket's send and receive) release it and show as the run's system time instead.
PROFILE_PARTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("import and start-up", ("<frozen importlib", "<frozen site")),
    ("pyspnego (NTLM: auth, seal/sign, RC4 + HMAC-MD5)", ("spnego/",)),
    ("cryptography", ("cryptography/",)),
    ("requests-ntlm", ("requests_ntlm/",)),
    ("pywinrm (SOAP, encryption framing)", ("winrm/",)),
    ("xmltodict / xml", ("xmltodict", "xml/")),
    ("requests + urllib3 + http.client", ("requests/", "urllib3/", "http/client.py")),
    ("fleet", ("fleet/",)),
    ("ssl / socket", ("ssl.py", "socket.py", "selectors.py")),
)
PROFILE_RATE = 250  # samples a second


@dataclass(frozen=True)
class Profile:
    parts: list[tuple[str, float]]  # (part, % of samples)
    hot: list[tuple[str, float]]  # (function, % self)
    samples: int


def profile_winrm(bench: BenchLab, out: Path) -> tuple[Profile | None, str]:
    """fleet over the Windows hosts under py-spy (when installed), its raw stacks kept in
    ``out``: the share of samples by part and the top functions by self time; a note."""
    spy = shutil.which("py-spy")
    if spy is None:
        return None, "py-spy is not installed: no WinRM profile (pip install '.[bench]')"
    out.mkdir(parents=True, exist_ok=True)
    raw = out / f"winrm-{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}.pyspy.txt"
    with tempfile.TemporaryDirectory(prefix="fleet-spy-") as tmp:
        argv = [spy, "record", "--gil", "--rate", str(PROFILE_RATE), "--format", "raw"]
        argv += ["--output", str(raw), "--"]
        argv += [sys.executable, "-m", "fleet", "audit", "-i", str(bench.inventory_dir)]
        argv += ["-l", WINDOWS_GROUP, "-q", "--report-dir", tmp]
        done = run_measured(argv, timeout=900)
    text = raw.read_text() if raw.exists() else ""
    if not text:
        return None, f"py-spy wrote no profile (exit {done.exit_status}): {done.stderr[-200:]}"
    profile = summarise_profile(text)
    held = profile.samples / PROFILE_RATE
    cpu = f"{done.cpu_s - done.sys_s:.2f} s user + {done.sys_s:.2f} s system CPU"
    return profile, (
        f"WinRM profile: {profile.samples} samples holding the GIL at {PROFILE_RATE}/s "
        f"(~{held:.2f} s) against {cpu} for the run (py-spy's included); raw stacks: {raw}"
    )


def summarise_profile(raw: str, top: int = 8) -> Profile:
    """py-spy's raw (collapsed) stacks as (part, % of samples) and (function, % self)."""
    by_part: Counter[str] = Counter()
    by_leaf: Counter[str] = Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        samples = int(count)
        total += samples
        by_leaf[frames[-1]] += samples
        by_part[_part(frames)] += samples
    if not total:
        return Profile([], [], 0)
    parts = [(part, 100 * n / total) for part, n in by_part.most_common()]
    hot = [(leaf, 100 * n / total) for leaf, n in by_leaf.most_common(top)]
    return Profile(parts, hot, total)


def _part(frames: Sequence[str]) -> str:
    for frame in reversed(frames):
        for part, marks in PROFILE_PARTS:
            if any(mark in frame for mark in marks):
                return part
    return "other (stdlib, threads, the interpreter)"
