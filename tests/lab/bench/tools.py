"""The tools side by side: fleet, the OpenSSH floor, paramiko alone, ansible-playbook."""

from __future__ import annotations

import contextlib
import json
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from fleet.checks.base import Step
from fleet.plan import HostPlan
from tests.lab import sshd
from tests.lab.bench.labs import (
    BenchLab,
    audit_script,
    check_scripts,
    complete,
)
from tests.lab.bench.measure import (
    KEX,
    ROOT,
    Measured,
    ProcessCost,
    _measured,
    hosts_returned,
    run_measured,
)


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
        script = Path(__file__).parents[1] / "paramiko_fanout.py"
        argv = [sys.executable, str(script), "--forks", str(forks)]
        argv += ["--key", str(bench.lab.key_file), "--known-hosts", str(bench.known_hosts)]
        argv += ["--user", sshd.LAB_USER, "hosts", "audit.sh", "out"]
        # It imports fleet's known_hosts reader: from this checkout, installed or not.
        env = {"PYTHONPATH": str(ROOT)}
        cost = run_measured(argv, timeout=900, cwd=work, env=env)
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
- hosts: {group}
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
    options = ssh_options(bench)
    if per_check:  # Ansible's default connection sharing instead of the floor's "no"
        at = options.index("ControlMaster=no")
        options[at : at + 1] = ["ControlMaster=auto", "-o", "ControlPersist=60s"]
        options.append("-C")
    env = {
        "ANSIBLE_REMOTE_USER": sshd.LAB_USER,
        "ANSIBLE_PRIVATE_KEY_FILE": str(bench.lab.key_file),
        "ANSIBLE_HOST_KEY_CHECKING": "True",
        "ANSIBLE_SSH_ARGS": " ".join(shlex.quote(o) for o in options),
    }
    cost, returned = ansible_playbook("bench", plans, scripts, forks, env)
    label = "ansible-playbook, task per check" if per_check else "ansible-playbook"
    how = (
        f"-f {forks}, {len(scripts)} raw tasks, ControlPersist" if per_check else f"-f {forks}, raw"
    )
    note = "" if cost.exit_status == 0 else f"exit {cost.exit_status}: {cost.stdout[-300:]}"
    return _measured(label, len(plans), cost, returned, note or how)


def ansible_playbook(
    group: str,
    plans: Sequence[HostPlan],
    scripts: Sequence[tuple[str, str, tuple]],
    forks: int,
    env: Mapping[str, str],
    group_vars: Sequence[str] = (),
) -> tuple[ProcessCost, int]:
    """ansible-playbook running ``scripts`` as ``raw`` tasks on ``plans`` (the inventory
    group ``group``, ``group_vars`` its INI vars lines); its cost and the hosts whose every
    task ran and whose last task's sections all came back."""
    with tempfile.TemporaryDirectory(prefix="fleet-ansible-") as tmp:
        work = Path(tmp)
        tasks = []
        for i, (script, _nonce, _steps) in enumerate(scripts):
            (work / f"check{i}.sh").write_text(script)
            tasks.append(f"    - raw: \"{{{{ lookup('file', 'check{i}.sh') }}}}\"\n")
        (work / "play.yml").write_text(ANSIBLE_PLAY.format(group=group) + "".join(tasks))
        lines = [f"[{group}]", *(f"{p.name} ansible_host={p.address}" for p in plans)]
        if group_vars:
            lines += [f"[{group}:vars]", *group_vars]
        (work / "hosts.ini").write_text("\n".join(lines) + "\n")
        env = {
            "ANSIBLE_CONFIG": str(work / "none.cfg"),  # no ansible.cfg from the cwd or ~
            "ANSIBLE_FORKS": str(forks),
            "ANSIBLE_SSH_CONTROL_PATH_DIR": str(work / "cp"),
            "ANSIBLE_CALLBACKS_ENABLED": "ansible.builtin.tree",
            "ANSIBLE_CALLBACK_TREE_DIR": str(work / "tree"),
            "ANSIBLE_LOCAL_TEMP": str(work / "tmp"),
            "ANSIBLE_NOCOLOR": "1",
            **env,
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
    return cost, returned


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
