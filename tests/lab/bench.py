"""The benchmark: is fleet fast at fleet scale, and never stuck on a bad host?

``python -m tests.lab.bench [--hosts N] [--quick] [--scale]`` (root; ``invoke bench``)
builds an N-host SSH bench lab (``tests.lab.topology.bench``) and measures, side
by side (fleet and the floor run ``--repeat`` times each, taking turns, and
their medians are reported: one run on a shared 2-core VM moves by +-15 %):

* **fleet**: the full default audit, ``python -m fleet audit -i <bench inventory>
  -l bench -q``, as a subprocess: wall time, client CPU (user+sys from
  ``os.wait4``), peak RSS (``ru_maxrss``), and whether every host x check came
  back with a status that is neither ``error`` nor ``unreachable``;
* **the floor**: the plain OpenSSH client fanned out with ``xargs -P <forks>``
  running the very script fleet sends (built by fleet's planner and composer);
* **ansible-playbook** running the same script as a ``raw`` task, same forks, and the
  playbook an Ansible user writes: a ``raw`` task per check, Ansible's SSH defaults
  (skipped with a note when it is not installed).

All three tools pin the same key exchange (curve25519-sha256, paramiko's), so
the comparison is about the tools, not OpenSSH 9's costlier default.  Then
the robustness figures: 10 % silent hosts, hosts that hang (a port that never
speaks SSH, a command that never ends) against the timeouts and ``--deadline``,
probes running side by side on one host, a 10,000-host inventory parsed, and
the WinRM cost per Windows host against the standard lab's simulator.

The figures are printed as tables and written to ``reports/bench/<timestamp>.json``.
Every lab is torn down at the end, also on failure.  All traffic stays in the
lab's namespaces (198.18.0.0/15) and loopback.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml
from tabulate import tabulate

from fleet.checks.base import Platform, Step
from fleet.checks.batch import new_nonce, split_sections
from fleet.plan import HostPlan, RunOptions
from fleet.runner import host_checks, host_script
from tests.lab import control, sshd, topology
from tests.lab.control import Lab

ROOT = Path(__file__).resolve().parents[2]
PLAYBOOK = ROOT / "playbooks" / "mail-connectivity.yml"
KEX = "curve25519-sha256"  # paramiko's choice; OpenSSH 9 would pick sntrup761x25519
FORKS = 50  # fleet's default --forks, used for every tool
BAD = ("error", "unreachable")
# The bench hosts' probes: the gateway (ping's default), the hub and the runner.
BENCH_VARS: Mapping[str, Any] = {
    "fleet_ping_targets": [topology.BENCH_HUB, "runner"],
    "fleet_smtp_targets": [topology.BENCH_HUB],
    # The bench hosts run no SMTP server of their own: reach checks the login port only.
    "fleet_reach_ports": [22],
}


# ---------------------------------------------------------------- measuring


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
        )


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


# ---------------------------------------------------------------- the bench lab


@dataclass(frozen=True)
class BenchLab:
    lab: Lab
    inventory_dir: Path
    servers: tuple[subprocess.Popen, ...] = ()

    @property
    def known_hosts(self) -> Path:
        return self.lab.known_hosts

    def addresses(self, group: str) -> list[str]:
        return [h.address for h in self.lab.hosts if group in h.groups]


def bench_up(n: int, *, silent: int = 0, stuck: bool = False) -> BenchLab:
    """The bench lab with its hub, plus silent and stuck hosts when asked; vars for the probes."""
    lab = control.up(lab_topology=topology.bench(n, hub=True, silent=silent, stuck=stuck))
    inventory_dir = lab.inventory.parent
    group_vars = inventory_dir / "group_vars"
    group_vars.mkdir(exist_ok=True)
    (group_vars / "all.yml").write_text(yaml.safe_dump(dict(BENCH_VARS)))
    servers: list[subprocess.Popen] = []
    if stuck:
        servers.append(_start_mute(lab))
        servers.append(_start_hang(lab))
    return BenchLab(lab, inventory_dir, tuple(servers))


# Accepts TCP on port 22 (the kernel completes the handshake) and never says a word.
MUTE_SERVER = """
import socket, sys, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], 22))
s.listen(128)
while True:
    time.sleep(3600)
"""


def _spawn_in(lab: Lab, host: str, argv: Sequence[str], log: Path) -> subprocess.Popen:
    """A server in ``host``'s namespace; ``control.down()`` kills it with the namespace."""
    namespace = lab.host(host).namespace
    with log.open("ab") as out:
        return subprocess.Popen(
            ["ip", "netns", "exec", namespace, *argv],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _start_mute(lab: Lab) -> subprocess.Popen:
    address = lab.host("mute1").address
    argv = [sys.executable, "-c", MUTE_SERVER, address]
    proc = _spawn_in(lab, "mute1", argv, lab.state_dir / "mute1.log")
    _wait_listening(address, 22, proc)
    return proc


def _start_hang(lab: Lab) -> subprocess.Popen:
    """A real sshd whose every command is ``sleep``: the login works, the audit never ends."""
    host = lab.host("hang1")
    directory = lab.state_dir / "nodes" / host.namespace
    directory.mkdir(parents=True, exist_ok=True)
    key = directory / "ssh_host_ed25519_key"
    public = sshd.keygen(key, host.namespace)
    config = directory / "sshd_config"
    config.write_text(
        sshd.sshd_config(
            listen=[host.address],
            host_key=key,
            pid_file=directory / "sshd.pid",
            authorized_keys=lab.state_dir / "authorized_keys",
        )
        + "ForceCommand sleep 86400\n"
    )
    keytype, blob, *_ = public.split()
    with lab.known_hosts.open("a") as known:
        known.write(f"{host.name},{host.address} {keytype} {blob}\n")
    argv = [str(sshd.SSHD), "-D", "-e", "-f", str(config)]
    proc = _spawn_in(lab, "hang1", argv, directory / "sshd.out")
    _wait_listening(host.address, 22, proc)
    return proc


def _wait_listening(address: str, port: int, proc: subprocess.Popen, limit: float = 10) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server for {address}:{port} exited with {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection((address, port), 0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {address}:{port} after {limit:g}s")


@contextlib.contextmanager
def lab_session() -> Iterator[None]:
    """Whatever happens inside, no lab is left behind."""
    try:
        yield
    finally:
        control.down()
        control._reap()


# ---------------------------------------------------------------- the script fleet sends


def bench_plans(inventory_dir: Path, limit: str) -> list[HostPlan]:
    """The hosts fleet would audit, planned by fleet's own planner."""
    from fleet.inventory import load_inventory
    from fleet.playbook import build_plan, load_playbook

    return build_plan(load_playbook(PLAYBOOK), load_inventory(inventory_dir), limit)


def audit_script(host: HostPlan, command_timeout: float = 120.0) -> tuple[str, str, tuple]:
    """(script, nonce, steps): exactly what the runner sends this host."""
    batch, nonce, script = host_script(host, host_checks(host), command_timeout)
    return script, nonce, batch.steps


def check_scripts(host: HostPlan, command_timeout: float = 120.0) -> list[tuple[str, str, tuple]]:
    """One (script, nonce, steps) per host check: the same steps, as separate commands,
    the way an Ansible playbook runs one task per check."""
    out = []
    for plan_and_check in host_checks(host):
        batch, nonce, script = host_script(host, [plan_and_check], command_timeout)
        out.append((script, nonce, batch.steps))
    return out


def complete(stdout: bytes, nonce: str, steps: Sequence[Step]) -> bool:
    """True when every step's section came back."""
    sections = split_sections(stdout.replace(b"\r\n", b"\n"), nonce, steps)
    return bool(steps) and all(s.exit_status is not None for s in sections.values())


# ---------------------------------------------------------------- the three tools


def fleet_audit(
    bench: BenchLab, limit: str, expected: Sequence[str], *extra: str, timeout: float = 900
) -> tuple[Measured, dict[str, Any]]:
    """``python -m fleet audit`` as ops run it; the report.json it wrote."""
    with tempfile.TemporaryDirectory(prefix="fleet-bench-") as reports:
        argv = [sys.executable, "-m", "fleet", "audit", "-i", str(bench.inventory_dir)]
        argv += ["-l", limit, "-q", "--report-dir", reports, *extra]
        cost = run_measured(argv, timeout=timeout)
        found = sorted(Path(reports).glob("*/*/report.json"))
        report = json.loads(found[0].read_text()) if found else {}
    returned = hosts_returned(report, expected)
    note = "" if found else f"no report.json (exit {cost.exit_status}): {cost.stderr[-300:]}"
    return _measured("fleet", len(expected), cost, returned, note), report


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


def ssh_options(bench: BenchLab) -> list[str]:
    """The OpenSSH client options the floor and ansible share (key exchange pinned)."""
    return [
        "-F",
        "/dev/null",
        "-o",
        "BatchMode=yes",
        "-o",
        f"KexAlgorithms={KEX}",
        "-o",
        f"UserKnownHostsFile={bench.known_hosts}",
        "-o",
        "GlobalKnownHostsFile=/dev/null",
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        "ControlMaster=no",
        "-o",
        "ConnectTimeout=10",
        "-o",
        "IdentitiesOnly=yes",
        "-i",
        str(bench.lab.key_file),
    ]


@contextlib.contextmanager
def _fanout_dir(plans: Sequence[HostPlan], prefix: str) -> Iterator[tuple[Path, Callable[[], int]]]:
    """A work directory with fleet's script (``audit.sh``), the addresses (``hosts``) and
    ``out/`` for each host's stdout; and a count of the hosts whose every section is there."""
    script, nonce, steps = audit_script(plans[0])
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        work = Path(tmp)
        (work / "audit.sh").write_text(script)
        (work / "out").mkdir()
        (work / "hosts").write_text("".join(f"{p.address}\n" for p in plans))
        yield (
            work,
            lambda: sum(complete(_read(work / "out" / p.address), nonce, steps) for p in plans),
        )


def floor_run(bench: BenchLab, plans: Sequence[HostPlan], forks: int) -> Measured:
    """The plain OpenSSH client, ``xargs -P forks``, sending fleet's own script."""
    with _fanout_dir(plans, "fleet-floor-") as (work, returned):
        ssh = " ".join(shlex.quote(o) for o in ["ssh", "-T", *ssh_options(bench)])
        one = f'exec {ssh} {sshd.LAB_USER}@"$1" /bin/sh -s <audit.sh >out/"$1" 2>out/"$1".err'
        argv = ["xargs", "-P", str(forks), "-n", "1", "sh", "-c", one, "sh"]
        cost = run_measured(
            argv, timeout=900, cwd=work, stdin_path=work / "hosts", sample_tree=True
        )
        got = returned()
    return _measured("OpenSSH floor", len(plans), cost, got, f"xargs -P {forks}")


def paramiko_run(bench: BenchLab, plans: Sequence[HostPlan], forks: int) -> Measured:
    """Context, not a target: paramiko alone (``tests.lab.paramiko_fanout``) sending fleet's
    script with the same forks: what the pure-Python SSH library costs by itself, more
    than fleet's whole budget (why ``ssh`` runs on libssh2; ``paramiko`` stays for
    ``ansible_connection=paramiko``)."""
    with _fanout_dir(plans, "fleet-paramiko-") as (work, returned):
        # By path: the fan-out runs in its work directory, where ``tests`` is no package.
        script = Path(__file__).with_name("paramiko_fanout.py")
        argv = [sys.executable, str(script), "--forks", str(forks)]
        argv += ["--key", str(bench.lab.key_file), "--known-hosts", str(bench.known_hosts)]
        argv += ["--user", sshd.LAB_USER, "hosts", "audit.sh", "out"]
        cost = run_measured(argv, timeout=900, cwd=work)
        got = returned()
    note = f"(context) threads, {forks} at once; no plan, parsing or reports"
    if cost.exit_status:
        note += f"; exit {cost.exit_status}: {cost.stderr.strip()[-200:]}"
    return _measured("paramiko alone", len(plans), cost, got, note)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        return b""


ANSIBLE_PLAY = """\
- hosts: bench
  gather_facts: false
  tasks:
"""


def ansible_run(
    bench: BenchLab, plans: Sequence[HostPlan], forks: int, *, per_check: bool = False
) -> Measured:
    """ansible-playbook with the same forks and the same remote work.

    ``per_check=False``: one ``raw`` task running fleet's whole script, SSH options as the
    floor's (no connection sharing) - the strictest comparison.  ``per_check=True``: the
    playbook an Ansible user writes, one ``raw`` task per check, with Ansible's own SSH
    defaults (ControlPersist connection sharing); the key exchange is pinned in both.
    """
    scripts = check_scripts(plans[0]) if per_check else [audit_script(plans[0])]
    with tempfile.TemporaryDirectory(prefix="fleet-ansible-") as tmp:
        work = Path(tmp)
        tasks = []
        for i, (script, _nonce, _steps) in enumerate(scripts):
            (work / f"check{i}.sh").write_text(script)
            tasks.append(f"    - raw: \"{{{{ lookup('file', 'check{i}.sh') }}}}\"\n")
        (work / "play.yml").write_text(ANSIBLE_PLAY + "".join(tasks))
        lines = ["[bench]", *(f"{p.name} ansible_host={p.address}" for p in plans)]
        (work / "hosts.ini").write_text("\n".join(lines) + "\n")
        options = ssh_options(bench)
        if per_check:  # Ansible's default connection sharing instead of the floor's "no"
            at = options.index("ControlMaster=no")
            options[at : at + 1] = ["ControlMaster=auto", "-o", "ControlPersist=60s"]
            options.append("-C")
        env = {
            "ANSIBLE_CONFIG": str(work / "none.cfg"),  # no ansible.cfg from the cwd or ~
            "ANSIBLE_FORKS": str(forks),
            "ANSIBLE_REMOTE_USER": sshd.LAB_USER,
            "ANSIBLE_PRIVATE_KEY_FILE": str(bench.lab.key_file),
            "ANSIBLE_HOST_KEY_CHECKING": "True",
            "ANSIBLE_SSH_ARGS": " ".join(shlex.quote(o) for o in options),
            "ANSIBLE_SSH_CONTROL_PATH_DIR": str(work / "cp"),
            "ANSIBLE_CALLBACKS_ENABLED": "ansible.builtin.tree",
            "ANSIBLE_CALLBACK_TREE_DIR": str(work / "tree"),
            "ANSIBLE_LOCAL_TEMP": str(work / "tmp"),
            "ANSIBLE_NOCOLOR": "1",
        }
        argv = ["ansible-playbook", "-i", "hosts.ini", "play.yml"]
        cost = run_measured(argv, timeout=1800, cwd=work, env=env, sample_tree=True)
        # The tree callback keeps each host's last task: its sections, and the recap's
        # ok= count for the tasks before it.
        _script, nonce, steps = scripts[-1]
        done = _recap_ok(cost.stdout, len(scripts))
        returned = sum(
            p.name in done and _ansible_complete(work / "tree" / p.name, nonce, steps)
            for p in plans
        )
    label = "ansible-playbook, task per check" if per_check else "ansible-playbook"
    how = (
        f"-f {forks}, {len(scripts)} raw tasks, ControlPersist" if per_check else f"-f {forks}, raw"
    )
    note = "" if cost.exit_status == 0 else f"exit {cost.exit_status}: {cost.stdout[-300:]}"
    return _measured(label, len(plans), cost, returned, note or how)


def _recap_ok(stdout: str, tasks: int) -> set[str]:
    """Hosts whose PLAY RECAP line says every task ran, none failed or unreachable."""
    done = set()
    for line in stdout.splitlines():
        name, sep, counts = line.partition(" : ")
        fields = dict(f.split("=", 1) for f in counts.split() if "=" in f)
        if sep and fields.get("ok") == str(tasks) and fields.get("failed") == "0":
            done.add(name.strip())
    return done


def _ansible_complete(path: Path, nonce: str, steps: Sequence[Step]) -> bool:
    try:
        result = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return complete(str(result.get("stdout", "")).encode(), nonce, steps)


def ansible_installed() -> bool:
    try:
        done = subprocess.run(["ansible-playbook", "--version"], capture_output=True, check=False)
    except OSError:
        return False
    return done.returncode == 0


# ---------------------------------------------------------------- robustness figures


@dataclass(frozen=True)
class Bounded:
    """A run that must end within ``bound_s``: did it?"""

    what: str
    wall_s: float
    bound_s: float
    detail: str = ""

    @property
    def holds(self) -> bool:
        return self.wall_s <= self.bound_s


def stuck_runs(bench: BenchLab, healthy: Sequence[str]) -> list[Bounded]:
    """Hung and silent hosts next to healthy ones, against the timeouts, then --deadline."""
    connect, command, deadline = 3.0, 6.0, 4.0
    limit = f"{','.join(healthy[:3])},stuck,silent001"
    names = [*healthy[:3], "mute1", "hang1", "silent001"]
    timeouts = ["--connect-timeout", f"{connect:g}", "--command-timeout", f"{command:g}"]
    m, report = fleet_audit(bench, limit, names, *timeouts, timeout=120)
    # Python start-up and writing the reports come on top of the hosts' time.
    startup = 2.0
    results = [
        Bounded(
            "mute + hang + silent, --connect-timeout 3 --command-timeout 6",
            m.wall_s,
            connect + command + startup,
            _statuses(report, ("mute1", "hang1", "silent001")),
        )
    ]
    m, report = fleet_audit(bench, limit, names, *timeouts, "--deadline", f"{deadline:g}")
    results.append(
        Bounded(
            f"the same with --deadline {deadline:g}",
            m.wall_s,
            deadline + startup,
            _statuses(report, ("hang1",)),
        )
    )
    return results


def _statuses(report: Mapping[str, Any], hosts: Sequence[str]) -> str:
    """'host: status (summary)' for the first result of each host."""
    parts = []
    for host in report.get("hosts", ()):
        if host["host"] in hosts and host.get("results"):
            first = host["results"][-1]
            parts.append(f"{host['host']}: {first['status']} ({first['summary'][:70]})")
    return "; ".join(parts)


@dataclass(frozen=True)
class OnHost:
    targets: int
    seconds: float


def on_host_concurrency(bench: BenchLab, host: HostPlan) -> list[OnHost]:
    """One host pings 1 then 3 targets in one batch: side by side, 3 cost about 1."""
    from fleet.checks import unix
    from fleet.checks.ping import PingCheck
    from fleet.transports.base import open_transport

    options = RunOptions(known_hosts=str(bench.known_hosts))
    figures = []
    for targets in (["gateway"], ["gateway", topology.BENCH_HUB, "runner"]):
        params = PingCheck().validate({"targets": targets, "gateway": False, "count": 2})
        steps = list(PingCheck().steps(Platform.UNIX, params))
        nonce = new_nonce()
        transport = open_transport(host, options)
        try:
            transport.connect()
            result = transport.run(unix.compose(steps, nonce, 30), 60)
        finally:
            transport.close()
        if not complete(result.stdout, nonce, steps):
            raise RuntimeError(f"ping batch on {host.name} came back incomplete")
        figures.append(OnHost(len(targets), result.duration))
    return figures


def inventory_parse_time(hosts: int = 10_000) -> tuple[float, float]:
    """Seconds to load a generated INI inventory of ``hosts`` hosts (ranges + group_vars),
    and to load it and merge every host's variables."""
    from fleet.inventory import load_inventory

    half = hosts // 2
    with tempfile.TemporaryDirectory(prefix="fleet-inv-") as tmp:
        root = Path(tmp)
        (root / "hosts").write_text(
            f"[mail]\nmx[00001:{half:05d}].example.com\n\n"
            f"[exchange]\nex[00001:{hosts - half:05d}].corp.example.com\n\n"
            "[exchange:vars]\nansible_connection=winrm\n\n"
            "[fleet:children]\nmail\nexchange\n"
        )
        (root / "group_vars").mkdir()
        (root / "group_vars" / "all.yml").write_text("ansible_user: audit\nfleet_smtp_port: 25\n")
        (root / "group_vars" / "mail.yml").write_text("fleet_ping_targets: [gw1, gw2]\n")
        (root / "group_vars" / "exchange.yml").write_text("ansible_winrm_transport: kerberos\n")
        started = time.perf_counter()
        inventory = load_inventory(root)
        loaded = time.perf_counter() - started
        # Variables merge lazily per host; an audit needs every host's.
        merged = [inventory.host_vars(name) for name in inventory.hosts]
        with_vars = time.perf_counter() - started
        if len(merged) != hosts or merged[-1].get("ansible_winrm_transport") != "kerberos":
            raise RuntimeError(f"the generated inventory reads wrong: {len(merged)} hosts")
    return loaded, with_vars


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


# ---------------------------------------------------------------- the whole benchmark


@dataclass
class Figures:
    """Everything one benchmark run measured (the JSON report)."""

    machine: dict[str, Any]
    hosts: int
    forks: int
    tools: list[Measured] = field(default_factory=list)
    silent: Measured | None = None
    scale: Measured | None = None
    bounded: list[Bounded] = field(default_factory=list)
    on_host: list[OnHost] = field(default_factory=list)
    inventory_10k_s: float | None = None  # loaded, every host's variables merged
    inventory_10k_load_s: float | None = None  # loaded only (variables merge lazily)
    winrm: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def tool(self, name: str) -> Measured | None:
        return next((m for m in self.tools if m.tool == name), None)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["tools"] = [_with_derived(m) for m in self.tools]
        for key, measured in (("silent", self.silent), ("scale", self.scale)):
            data[key] = _with_derived(measured) if measured else None
        data["targets"] = [list(t) for t in targets(self)]
        return data


def _with_derived(m: Measured) -> dict[str, Any]:
    return {**asdict(m), "cpu_ms_per_host": m.cpu_ms_per_host, "all_returned": m.all_returned}


def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {"nproc": os.cpu_count(), "cpu": model, "python": sys.version.split()[0]}


def _value(m: Measured | None, name: str) -> float | None:
    return None if m is None else float(getattr(m, name))


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def targets(f: Figures) -> list[tuple[str, str, str]]:
    """(target, measured, holds) for each target the brief sets."""
    fleet, floor, ansible = f.tool("fleet"), f.tool("OpenSSH floor"), f.tool("ansible-playbook")
    rows: list[tuple[str, str, str]] = []

    def add(what: str, value: float | None, fmt: str, ok: Callable[[float], bool]) -> None:
        if value is None:
            rows.append((what, "not measured", "-"))
        else:
            rows.append((what, fmt.format(value), "yes" if ok(value) else "NO"))

    fleet_wall = _value(fleet, "wall_s")
    add(
        "fleet/floor wall time <= 1.3",
        _ratio(fleet_wall, _value(floor, "wall_s")),
        "{:.2f}x",
        lambda r: r <= 1.3,
    )
    add(
        "ansible/fleet wall time >= 3, a raw task per check",
        _ratio(_value(f.tool("ansible-playbook, task per check"), "wall_s"), fleet_wall),
        "{:.2f}x",
        lambda r: r >= 3,
    )
    add(
        "ansible/fleet client CPU >= 3, one raw task",
        _ratio(_value(ansible, "cpu_ms_per_host"), _value(fleet, "cpu_ms_per_host")),
        "{:.2f}x",
        lambda r: r >= 3,
    )
    # Context, not a target: Ansible running fleet's whole batched script as ONE raw
    # task, without connection sharing, is not the playbook an Ansible user writes
    # (the "the same checks as raw tasks" is the task-per-check row above).
    wall_one_task = _ratio(_value(ansible, "wall_s"), fleet_wall)
    rows.append(
        (
            "(context) ansible/fleet wall time, one raw task with fleet's script",
            "not measured" if wall_one_task is None else f"{wall_one_task:.2f}x",
            "-",
        )
    )
    add(
        "fleet client CPU <= 8 ms/host",
        _value(fleet, "cpu_ms_per_host"),
        "{:.1f} ms",
        lambda v: v <= 8,
    )
    # Context: the CPU one more host costs, start-up and reports left out (the slope
    # between the N-host run and the --scale run).
    if fleet and f.scale and f.scale.hosts > fleet.hosts:
        slope = 1000 * (f.scale.cpu_s - fleet.cpu_s) / (f.scale.hosts - fleet.hosts)
        rows.append(
            (
                f"(context) fleet client CPU per extra host, {fleet.hosts} -> {f.scale.hosts}",
                f"{slope:.1f} ms",
                "-",
            )
        )
    add(
        f"{f.scale.hosts if f.scale else 1000} hosts: peak RSS < 300 MB",
        _value(f.scale, "peak_rss_mb"),
        "{:.0f} MB",
        lambda v: v < 300,
    )
    add(
        "10,000-host inventory parsed + vars merged < 1 s",
        f.inventory_10k_s,
        "{:.2f} s",
        lambda v: v < 1,
    )
    if f.silent and fleet:
        bound = fleet.wall_s + 10.0  # fleet's default --connect-timeout
        rows.append(
            (
                f"10% silent: <= healthy + connect timeout ({bound:.1f} s)",
                f"{f.silent.wall_s:.1f} s",
                "yes" if f.silent.wall_s <= bound else "NO",
            )
        )
    else:
        rows.append(("10% silent: <= healthy + connect timeout", "not measured", "-"))
    if len(f.on_host) == 2:
        one, three = f.on_host
        rows.append(
            (
                "3 ping targets on one host cost ~1 ping",
                f"{three.seconds:.2f} s vs {one.seconds:.2f} s",
                "yes" if three.seconds < 1.5 * one.seconds else "NO",
            )
        )
    for b in f.bounded:
        rows.append(
            (
                f"ends in bound: {b.what}",
                f"{b.wall_s:.1f} s <= {b.bound_s:.1f} s",
                "yes" if b.holds else "NO",
            )
        )
    # Hosts that logged in (win-badpass is refused before any shell).
    audited = [r for r in f.winrm if r.get("shells") or r.get("commands")]
    if audited:
        one_each = all(r["shells"] == 1 and r["commands"] == 1 for r in audited)
        rows.append(
            (
                "WinRM: 1 shell + 1 PowerShell per host",
                f"{len(audited)} hosts",
                "yes" if one_each else "NO",
            )
        )
    return rows


def tools_table(f: Figures) -> str:
    floor = f.tool("OpenSSH floor")
    rows = []
    for m in [*f.tools, *(x for x in (f.silent, f.scale) if x)]:
        # A ratio only between runs over the same hosts.
        same = floor is not None and floor.hosts == m.hosts and m is not f.silent
        vs_floor = _ratio(m.wall_s, floor.wall_s) if same and floor else None
        rows.append(
            (
                m.tool,
                m.hosts,
                f"{m.wall_s:.2f}",
                f"{vs_floor:.2f}x" if vs_floor else "-",
                f"{m.cpu_ms_per_host:.1f}",
                f"{m.peak_rss_mb:.0f}",
                f"{m.tree_peak_mb:.0f}" if m.tree_peak_mb is not None else "-",
                f"{'yes' if m.all_returned else 'NO'} ({m.returned}/{m.hosts})",
                m.note,
            )
        )
    headers = [
        "tool",
        "hosts",
        "wall s",
        "vs floor",
        "CPU ms/host",
        "max RSS MB",
        "tree RSS MB",
        "all hosts returned",
        "note",
    ]
    return tabulate(rows, headers=headers, disable_numparse=True)


def report(f: Figures) -> str:
    parts = [
        f"machine: {f.machine['nproc']} CPUs, {f.machine['cpu']}, Python {f.machine['python']}",
        f"hosts: {f.hosts}, forks: {f.forks}, key exchange: {KEX}",
        "",
        tools_table(f),
    ]
    if f.on_host:
        parts += [
            "",
            tabulate(
                [(o.targets, f"{o.seconds:.2f}") for o in f.on_host],
                headers=["ping targets on one host", "batch seconds"],
            ),
        ]
    if f.winrm:
        parts += ["", tabulate(f.winrm, headers="keys")]
    parts += ["", tabulate(targets(f), headers=["target", "measured", "holds"])]
    parts += [f"note: {n}" for n in f.notes]
    return "\n".join(parts)


def write_json(f: Figures, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    path = directory / f"{stamp}.json"
    path.write_text(json.dumps(f.to_dict(), indent=1) + "\n")
    return path


def _say(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def run_bench(args: argparse.Namespace) -> Figures:
    """Every phase the options ask for; labs torn down whatever happens."""
    figures = Figures(machine=machine(), hosts=args.hosts, forks=args.forks)
    if not args.quick:
        _say("timing a 10,000-host inventory")
        figures.inventory_10k_load_s, figures.inventory_10k_s = inventory_parse_time()
    with lab_session():
        if not args.quick:
            _say("standard lab: WinRM cost per Windows host")
            figures.winrm = winrm_cost()
        _bench_phase(args, figures)
        if args.scale:
            _scale_phase(args.scale, figures)
    return figures


def _bench_phase(args: argparse.Namespace, figures: Figures) -> None:
    n, quick = args.hosts, args.quick
    silent = 0 if quick else max(1, n // 10)
    _say(f"bench lab: {n} hosts" + ("" if quick else f", {silent} silent, 2 stuck"))
    bench = bench_up(n, silent=silent, stuck=not quick)
    plans = bench_plans(bench.inventory_dir, "bench")
    names = [p.name for p in plans]
    # fleet and the floor take turns, so both meet the same moments of a noisy machine.
    fleets, floors, libraries = [], [], []
    for turn in range(1, args.repeat + 1):
        _say(f"fleet audit ({turn}/{args.repeat})")
        fleets.append(fleet_audit(bench, "bench", names)[0])
        _say(f"OpenSSH floor ({turn}/{args.repeat})")
        floors.append(floor_run(bench, plans, args.forks))
        _say(f"paramiko alone ({turn}/{args.repeat})")
        libraries.append(paramiko_run(bench, plans, args.forks))
    figures.tools += [median_of(fleets), median_of(floors), median_of(libraries)]
    if not quick:
        _ansible_phase(bench, plans, args.forks, figures)
        _say("fleet with 10% silent hosts")
        silent_names = [*names, *(h.name for h in bench.lab.hosts if "silent" in h.groups)]
        m, _ = fleet_audit(bench, "bench:silent", silent_names)
        # Silent hosts cannot return results: count the healthy ones.
        returned = m.returned + len(silent_names) - len(names)
        figures.silent = Measured(
            **{
                **asdict(m),
                "tool": "fleet, 10% silent",
                "returned": returned,
                "note": "silent hosts unreachable",
            }
        )
        _say("hung and silent hosts against the timeouts")
        figures.bounded = stuck_runs(bench, names)
    _say("probes side by side on one host")
    figures.on_host = on_host_concurrency(bench, plans[0])


def _ansible_phase(
    bench: BenchLab, plans: Sequence[HostPlan], forks: int, figures: Figures
) -> None:
    if not ansible_installed():
        figures.notes.append("ansible-playbook is not installed: its row is skipped")
        return
    _say("ansible-playbook")
    figures.tools.append(ansible_run(bench, plans, forks))
    figures.tools.append(ansible_run(bench, plans, forks, per_check=True))


def _scale_phase(n: int, figures: Figures) -> None:
    _say(f"scale: fleet over {n} hosts (peak memory)")
    bench = bench_up(n)
    names = [p.name for p in bench_plans(bench.inventory_dir, "bench")]
    m, _ = fleet_audit(bench, "bench", names, timeout=1800)
    figures.scale = Measured(**{**asdict(m), "tool": f"fleet at scale ({n})"})


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.lab.bench", description=__doc__)
    parser.add_argument("--hosts", type=int, default=200, help="bench hosts (200)")
    parser.add_argument("--forks", type=int, default=FORKS, help="for every tool (50)")
    parser.add_argument(
        "--quick", action="store_true", help="fleet and the floor only (no ansible, WinRM...)"
    )
    parser.add_argument(
        "--scale",
        type=int,
        nargs="?",
        const=1000,
        default=0,
        metavar="N",
        help="also audit N hosts (1000) for the peak-memory figure",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        metavar="R",
        help="run fleet and the floor R times each, taking turns; report medians (3)",
    )
    parser.add_argument("--out", type=Path, default=Path("reports/bench"), help="JSON goes here")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    control.require_root()
    compile_bytecode()
    figures = run_bench(args)
    print(report(figures))
    print(f"\nfigures: {write_json(figures, args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
