"""Bring the lab up, tear it down, say how it is.

``up()`` turns this machine (as root) into a fleet of mail servers in
network namespaces: it wires the topology, starts a real sshd and aiosmtpd
(or a real postfix, ``tests.lab.postfix``, or exim, ``tests.lab.exim``) per host, and the Windows
simulators when ``tests.lab.winhost`` exists.
``down()`` removes everything any lab left, found by name, so it also cleans
after a crash.  Used by tests, benchmarks and demos, never by an audit.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.lab import dropbear, exim, inventory, netns, postfix, sshd, topology
from tests.lab.netns import LabError
from tests.lab.topology import LabHost, Node, Smtp, Topology

# Where down() finds what the last up() made; fixed, because down() takes no arguments.
RECORD = Path("/run/fleet-lab.json")
DEFAULT_STATE_DIR = Path("/run/fleet-lab")
REPO_INVENTORY = Path(__file__).resolve().parents[2] / "inventories" / "lab"
STATE_MARKER = "lab.json"
READY_TIMEOUT = 20.0


@dataclass(frozen=True)
class Lab:
    """A running lab: what it is and where its files are."""

    topology: Topology
    state_dir: Path
    inventory: Path  # the hosts.yml to audit the lab with
    key_file: Path  # the client private key (also ``lab_key`` next to the inventory)
    known_hosts: Path
    notes: tuple[str, ...] = ()  # what is not as the topology says (e.g. no Windows servers)

    @property
    def hosts(self) -> tuple[LabHost, ...]:
        return self.topology.hosts

    def host(self, name: str) -> LabHost:
        return self.topology.host(name)


def up(
    state_dir: Path | None = None,
    *,
    lab_topology: Topology | None = None,
    inventory_dir: Path | None = None,
) -> Lab:
    """Build the lab (the standard one unless told), after removing any previous lab."""
    require_root()
    down()
    topo = lab_topology or topology.standard()
    state = _claim_state_dir(state_dir or DEFAULT_STATE_DIR)
    record: dict[str, Any] = {"state_dir": str(state), "files": [], "pids": []}
    _save(record)
    try:
        return _build(topo, state, inventory_dir, record)
    except BaseException:
        down()
        raise


def down() -> None:
    """Remove every lab: processes, namespaces, veths, bridge, /etc/netns dirs, user, files."""
    require_root()
    record = _load()
    pids = set(record.get("pids", []))
    for namespace in netns.lab_namespaces():
        pids.update(netns.namespace_pids(namespace))
    _stop(pids)
    netns.unwire()
    for name in record.get("files", []):
        Path(name).unlink(missing_ok=True)
    state = record.get("state_dir")
    if state and (Path(state) / STATE_MARKER).exists():
        shutil.rmtree(state, ignore_errors=True)
    if record.get("privsep_created"):
        shutil.rmtree(sshd.PRIVSEP_DIR, ignore_errors=True)
    sshd.remove_user()
    exim.remove_user()
    RECORD.unlink(missing_ok=True)


def status() -> dict[str, Any]:
    """What is up now: namespaces, links, live processes, the record of the last up()."""
    record = _load()
    alive = [pid for pid in record.get("pids", []) if _alive(pid)]
    return {
        "namespaces": netns.lab_namespaces(),
        "links": netns.lab_links(),
        "processes": alive,
        "state_dir": record.get("state_dir"),
        "inventory": record.get("inventory"),
        "notes": record.get("notes", []),
    }


def require_root() -> None:
    if os.geteuid() != 0:
        raise LabError("the lab needs root (network namespaces, a bridge, sshd on port 22)")


# -- building -----------------------------------------------------------------


def _build(topo: Topology, state: Path, inventory_dir: Path | None, record: dict) -> Lab:
    if any(node.smtp in postfix.MODES for node in topo.nodes):
        postfix.require()  # before anything is built: one line naming the package
    if any(node.smtp is Smtp.EXIM_SLOW for node in topo.nodes):
        exim.fetch()  # likewise: downloaded now, or one line saying why not
    if any(node.dropbear for node in topo.nodes):
        dropbear.require()
    record["privsep_created"] = sshd.ensure_privsep_dir()
    sshd.ensure_user()
    _save(record)
    keys = _make_keys(topo, state)
    netns.build(topo)
    inv_dir = inventory_dir or _inventory_dir(topo, state)
    written = inventory.write_credentials(inv_dir, keys.client, _known_hosts(topo, keys))
    record["files"] = [str(p) for p in written]
    hosts_yml = inv_dir / inventory.HOSTS_FILE
    if inv_dir != REPO_INVENTORY:
        hosts_yml.write_text(inventory.inventory_yaml(topo))
        record["files"].append(str(hosts_yml))
    record["inventory"] = str(hosts_yml)
    _save(record)

    started = _start_services(topo, state, keys)
    record["pids"] = [item.proc.pid for item in started]
    _save(record)
    notes = _start_windows(topo, state, record)
    _wait_ready(started, time.monotonic() + READY_TIMEOUT)
    record["notes"] = notes
    _save(record)
    return Lab(topo, state, hosts_yml, keys.client, inv_dir / inventory.KNOWN_HOSTS, tuple(notes))


def _claim_state_dir(state: Path) -> Path:
    """The state dir must be new, empty or an old lab's: down() deletes it whole."""
    state = state.resolve()
    if state.exists() and any(state.iterdir()) and not (state / STATE_MARKER).exists():
        raise LabError(f"{state} is not empty and not a lab state dir: choose another")
    closed = [p for p in state.parents if p.exists() and not p.stat().st_mode & 0o001]
    if closed:
        # sshd reads authorized_keys as the lab user, who must get through every parent.
        raise LabError(f"the lab user cannot enter {closed[0]}: choose a state dir outside it")
    shutil.rmtree(state, ignore_errors=True)
    state.mkdir(parents=True, mode=0o755)
    (state / STATE_MARKER).write_text("{}\n")
    return state


def _inventory_dir(topo: Topology, state: Path) -> Path:
    """The committed inventory for the standard lab; a generated one for any other."""
    if topo == topology.standard() and (REPO_INVENTORY / inventory.HOSTS_FILE).is_file():
        return REPO_INVENTORY
    return state / "inventory"


@dataclass(frozen=True)
class _Keys:
    client: Path
    host_public: dict[str, str]  # namespace -> public key line
    wrong_public: str  # what known_hosts says for hosts marked wrong_host_key


def _make_keys(topo: Topology, state: Path) -> _Keys:
    keydir = state / "keys"
    keydir.mkdir()
    ssh_nodes = [node for node in topo.nodes if node.sshd]
    jobs = [(keydir / "lab_key", "fleet-lab-client"), (keydir / "wrong_host_key", "not-the-host")]
    jobs += [(_node_dir(state, n) / "ssh_host_ed25519_key", n.namespace) for n in ssh_nodes]
    for node in ssh_nodes:
        _node_dir(state, node).mkdir(parents=True, exist_ok=True)
    client_pub, wrong_pub, *host_pubs = sshd.keygen_many(jobs)
    (state / "authorized_keys").write_text(client_pub + "\n")
    host_public = {n.namespace: pub for n, pub in zip(ssh_nodes, host_pubs, strict=True)}
    return _Keys(keydir / "lab_key", host_public, wrong_pub)


def _known_hosts(topo: Topology, keys: _Keys) -> str:
    served = [h for h in topo.hosts if h.namespace in keys.host_public]
    by_host = {
        h.name: keys.wrong_public if h.wrong_host_key else keys.host_public[h.namespace]
        for h in served
    }
    return inventory.known_hosts_lines(tuple(served), by_host)


def _node_dir(state: Path, node: Node) -> Path:
    directory = state / "nodes" / node.namespace
    directory.mkdir(parents=True, exist_ok=True)
    return directory


@dataclass(frozen=True)
class _Started:
    """A server process and the socket that says it is ready."""

    what: str
    listen: tuple[str, int]
    proc: subprocess.Popen
    log: Path


# The servers this process started: polled so that they do not linger as zombies.
_CHILDREN: dict[int, subprocess.Popen] = {}


def _start_services(topo: Topology, state: Path, keys: _Keys) -> list[_Started]:
    """Start every sshd and SMTP server at once; readiness is awaited later, together."""
    started: list[_Started] = []
    for node in topo.nodes:
        directory = _node_dir(state, node)
        if node.sshd and node.dropbear:
            started.append(_start_dropbear(topo, node, directory, state))
        elif node.sshd:
            started.append(_start_sshd(node, directory, state))
        if node.smtp is not None:
            started.append(_start_smtp(topo, node, node.smtp, directory))
    return started


def _start_sshd(node: Node, directory: Path, state: Path) -> _Started:
    # sshd has at most 16 listening sockets: a node with more addresses listens on all.
    many = len(node.addresses) > 8 or bool(node.served_blocks)
    listen = ["0.0.0.0"] if many else list(node.addresses)
    config = directory / "sshd_config"
    config.write_text(
        sshd.sshd_config(
            listen=listen,
            host_key=directory / "ssh_host_ed25519_key",
            pid_file=directory / "sshd.pid",
            authorized_keys=state / "authorized_keys",
        )
    )
    argv = [str(sshd.SSHD), "-D", "-e", "-f", str(config)]  # -e: log to sshd.out
    log = directory / "sshd.out"
    return _Started(f"sshd in {node.namespace}", (listen[0], 22), _spawn(node, argv, log), log)


def _start_dropbear(topo: Topology, node: Node, directory: Path, state: Path) -> _Started:
    root = dropbear.make_root(
        directory / "root",
        user=sshd.LAB_USER,
        authorized_keys=(state / "authorized_keys").read_text(),
        hosts=netns.hosts_file(topo),
        resolv_conf=netns.RESOLV_CONF,
    )
    key = dropbear.host_key(directory / "ssh_host_ed25519_key", root)
    argv = dropbear.argv(root, node.addresses[0], key)
    log = directory / "dropbear.out"
    listen = (node.addresses[0], 22)
    return _Started(f"dropbear in {node.namespace}", listen, _spawn(node, argv, log), log)


def _start_smtp(topo: Topology, node: Node, greeting: Smtp, directory: Path) -> _Started:
    name = topo.hosts_of(node.namespace)[0].name
    address = node.addresses[0]
    if greeting in postfix.MODES:
        argv = postfix.configure(directory, name, address, greeting)
    elif greeting is Smtp.EXIM_SLOW:
        argv = exim.configure(directory, name, address)
    else:
        argv = [sys.executable, "-m", "tests.lab.smtpd", "--address", address, "--name", name]
        argv += ["--greeting", greeting.value]
    log = directory / "smtp.out"
    return _Started(f"SMTP server of {name}", (address, 25), _spawn(node, argv, log), log)


def _spawn(node: Node, argv: list[str], log_path: Path) -> subprocess.Popen:
    env = dict(os.environ)
    # The servers import fleet from this checkout, whatever the caller's cwd.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [_package_root(), env.get("PYTHONPATH")]))
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            ["ip", "netns", "exec", node.namespace, *argv],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # outlives `python -m tests.lab up`; not hit by ^C
        )
    _CHILDREN[proc.pid] = proc
    return proc


def _package_root() -> str:
    return str(Path(__file__).resolve().parents[2])


def _start_windows(topo: Topology, state: Path, record: dict) -> list[str]:
    """Start tests.lab.winhost for each Windows node, in parallel; notes on what did not start."""
    nodes = [node for node in topo.nodes if node.windows_profile]
    if not nodes:
        return []
    if importlib.util.find_spec("tests.lab.winhost") is None:
        return ["Windows hosts have a namespace but no server: tests.lab.winhost does not exist"]
    try:
        start: Callable[..., subprocess.Popen] = importlib.import_module("tests.lab.winhost").start
    except Exception as exc:
        return [f"Windows hosts have no server: importing tests.lab.winhost failed: {exc!r}"]

    def one(node: Node) -> subprocess.Popen | str:
        try:
            return start(node.namespace, node.addresses[0], node.windows_profile, state)
        except Exception as exc:
            return f"{node.namespace}: tests.lab.winhost.start failed: {exc!r}"

    with ThreadPoolExecutor(max_workers=len(nodes)) as pool:
        outcomes = list(pool.map(one, nodes))
    for outcome in outcomes:
        if isinstance(outcome, subprocess.Popen):
            _CHILDREN[outcome.pid] = outcome
            record["pids"].append(outcome.pid)
    _save(record)
    return [o for o in outcomes if isinstance(o, str)]


# -- readiness ----------------------------------------------------------------


def _wait_ready(started: list[_Started], deadline: float) -> None:
    """Wait until every server listens, reading its namespace's /proc/<pid>/net/tcp.

    That works for the host that drops all traffic too, and sends no packet.
    """
    waiting = list(started)
    while waiting:
        for item in list(waiting):
            if item.proc.poll() is not None:
                raise LabError(f"{item.what} exited with {item.proc.returncode}: {_tail(item.log)}")
            if item.listen in _listening(item.proc.pid):
                waiting.remove(item)
        if waiting and time.monotonic() > deadline:
            names = ", ".join(item.what for item in waiting)
            raise LabError(f"not listening after {READY_TIMEOUT:g}s: {names}")
        if waiting:
            time.sleep(0.02)


def _listening(pid: int) -> set[tuple[str, int]]:
    """(address, port) of the TCP listeners in the network namespace of ``pid``."""
    try:
        table = Path(f"/proc/{pid}/net/tcp").read_text()
    except OSError:
        return set()
    found = set()
    for line in table.splitlines()[1:]:
        fields = line.split()
        if fields[3] != "0A":  # TCP_LISTEN
            continue
        hex_address, hex_port = fields[1].split(":")
        address = socket.inet_ntoa(struct.pack("=I", int(hex_address, 16)))
        found.add((address, int(hex_port, 16)))
    return found


def _tail(log: Path, lines: int = 5) -> str:
    try:
        return " | ".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


# -- stopping -----------------------------------------------------------------


def _stop(pids: Iterable[int], grace: float = 3.0) -> None:
    """SIGTERM the lab's processes, then SIGKILL what is left after ``grace`` seconds."""
    pending = {pid for pid in pids if _alive(pid)}
    for pid in pending:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while pending and time.monotonic() < deadline:
        _reap()
        pending = {pid for pid in pending if _alive(pid)}
        if pending:
            time.sleep(0.02)
    for pid in pending:
        _signal(pid, signal.SIGKILL)
    _reap()


def _signal(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)


def _alive(pid: int) -> bool:
    """True for a running process; a zombie counts as gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _reap() -> None:
    """Collect the servers this process started that have exited (never anyone else's)."""
    for pid, proc in list(_CHILDREN.items()):
        if proc.poll() is not None:
            del _CHILDREN[pid]


# -- the record ---------------------------------------------------------------


def _save(record: dict) -> None:
    RECORD.write_text(json.dumps(record, indent=2) + "\n")


def _load() -> dict:
    try:
        return dict(json.loads(RECORD.read_text()))
    except (OSError, ValueError):
        return {}
