"""The bench lab: built, its stuck servers started, its plans and the script fleet sends."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from fleet.checks.base import Step
from fleet.checks.batch import split_sections
from fleet.plan import HostPlan
from fleet.runner import host_checks, host_script
from tests.lab import control, sshd, topology
from tests.lab.bench.measure import (
    PLAYBOOK,
)
from tests.lab.control import Lab

# The bench hosts' probes: the gateway (ping's default), the hub and the runner.
BENCH_VARS: Mapping[str, Any] = {
    "fleet_ping_targets": [topology.BENCH_HUB, "runner"],
    "fleet_smtp_targets": [topology.BENCH_HUB],
    # The bench hosts run no SMTP server of their own: reach checks the login port only.
    "fleet_reach_ports": [22],
}
# The bench's Windows hosts (group winbench): WinRM is their login port.
WINDOWS_BENCH_VARS: Mapping[str, Any] = {"fleet_reach_ports": [5985]}
WINDOWS_PROFILE = "ok"  # tests.lab.winsim's healthy Windows Server 2019


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


def bench_up(n: int, *, silent: int = 0, stuck: bool = False, windows: int = 0) -> BenchLab:
    """The bench lab with its hub, plus silent, stuck and Windows hosts when asked; vars for
    the probes."""
    shape = topology.bench(n, hub=True, silent=silent, stuck=stuck, windows=windows)
    lab = control.up(lab_topology=shape)
    inventory_dir = lab.inventory.parent
    group_vars = inventory_dir / "group_vars"
    group_vars.mkdir(exist_ok=True)
    (group_vars / "all.yml").write_text(yaml.safe_dump(dict(BENCH_VARS)))
    (group_vars / "winbench.yml").write_text(yaml.safe_dump(dict(WINDOWS_BENCH_VARS)))
    servers: list[subprocess.Popen] = []
    if stuck:
        servers.append(_start_mute(lab))
        servers.append(_start_hang(lab))
    if windows:
        servers += _start_windows(lab)
    return BenchLab(lab, inventory_dir, tuple(servers))


def _start_windows(lab: Lab) -> list[subprocess.Popen]:
    """One simulator per Windows node, serving every host of its block (winhost --block)."""
    from tests.lab import winhost

    namespaces = dict.fromkeys(h.namespace for h in lab.hosts if "winbench" in h.groups)
    nodes = [lab.topology.node(ns) for ns in namespaces]

    def start(node: topology.Node) -> subprocess.Popen:
        return winhost.start(
            node.namespace,
            node.addresses[0],
            WINDOWS_PROFILE,
            lab.state_dir / "winbench",
            blocks=node.served_blocks,
            gateway=lab.topology.gateway,
        )

    with ThreadPoolExecutor(max_workers=len(nodes)) as pool:
        return list(pool.map(start, nodes))


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
