"""Two network zones beside the lab, for ``fleet audit --dispatch`` (fleet.dispatch).

Zone a is 198.18.4.0/24, zone b 198.18.5.0/24: each is a bridge inside its own
gateway namespace (``fleet-za-gw``, address .1), so nothing in the root namespace
has a link there, and the root namespace routes both blocks ``unreachable``: the
coordinator cannot reach a zone host (and nothing leaks out by the default route).
In each zone: Unix hosts (real sshd and SMTP, as the lab's), and a runner
namespace (``fleet-za-run``, .10) whose second leg is on the lab's bridge, where
the zones' Redis (``fleet-zbroker``, 198.18.0.90) is; the Celery worker of the zone
runs there.  ``fleet-zall`` has a leg in both zones: the single runner that reaches
everything, to compare with.  Needs the standard lab up (its bridge, its login user
and key); ``tests.lab.down()`` removes this too (``fleet-*`` namespaces).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from tests.lab import control, inventory, netns, sshd
from tests.lab.control import Lab
from tests.lab.topology import Kind, LabHost, Node, Smtp, Topology

BROKER = "198.18.0.90"
BROKER_URL = f"redis://{BROKER}:6379/0"
BROKER_NS = "fleet-zbroker"
ALL_NS = "fleet-zall"  # a runner with a leg in every zone
NETWORKS = {"a": "198.18.4", "b": "198.18.5"}
RUNNER_LINK = {"a": "198.18.0.91", "b": "198.18.0.92"}  # the zone runners' leg on the bridge
RUNNER_OCTET, ALL_OCTET = 10, 9
READY = 30.0


@dataclass(frozen=True)
class ZoneHost:
    name: str
    zone: str
    octet: int
    smtp: Smtp | None = Smtp.READY
    blackhole: bool = False  # drops every reply: looks powered off
    mail: bool = True  # in its zone's mail group (probes and is probed by its peers)

    @property
    def address(self) -> str:
        return f"{NETWORKS[self.zone]}.{self.octet}"

    @property
    def namespace(self) -> str:
        return f"fleet-{self.name}"


HOSTS = (
    ZoneHost("za1", "a", 11),
    ZoneHost("za2", "a", 12, Smtp.MULTILINE),
    ZoneHost("zb1", "b", 11),
    ZoneHost("zb-smtpdown", "b", 12, smtp=None),
    ZoneHost("zb-down", "b", 13, blackhole=True, mail=False),
)


def gateway_ns(zone: str) -> str:
    return f"fleet-z{zone}-gw"


def runner_ns(zone: str) -> str:
    return f"fleet-z{zone}-run"


def zone_link(zone: str) -> str:
    """The name of a runner's interface into a zone (the inventory's fleet_route_via)."""
    return f"fleetz{zone}"


def namespaces() -> list[str]:
    zones = sorted(NETWORKS)
    return [
        *(gateway_ns(z) for z in zones),
        *(h.namespace for h in HOSTS),
        *(runner_ns(z) for z in zones),
        ALL_NS,
        BROKER_NS,
    ]


@dataclass
class Zones:
    """The zones built beside a lab: the inventory, the broker, the workers started."""

    state: Path
    inventory: Path
    pids: list[int] = field(default_factory=list)
    workers: dict[str, subprocess.Popen] = field(default_factory=dict)

    def start_worker(self, zone: str) -> subprocess.Popen:
        """The zone's Celery worker (``fleet worker``) in its runner namespace, once ready."""
        log = self.state / f"worker-{zone}.log"
        argv = [sys.executable, "-m", "fleet", "worker", "--zone", zone, "-i", str(self.inventory)]
        with log.open("ab") as out:
            proc = subprocess.Popen(
                ["ip", "netns", "exec", runner_ns(zone), *argv],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=fleet_env(),
                cwd=self.state,
                start_new_session=True,
            )
        self.workers[zone] = proc
        deadline = time.monotonic() + READY
        while b" ready." not in log.read_bytes():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise netns.LabError(f"worker of zone {zone} not ready: {control._tail(log)}")
            time.sleep(0.05)
        return proc

    def stop_worker(self, zone: str, signum: int = signal.SIGTERM) -> None:
        proc = self.workers.pop(zone, None)
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signum)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)

    def worker_log(self, zone: str) -> str:
        return (self.state / f"worker-{zone}.log").read_text(errors="replace")


def fleet_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [control._package_root(), env.get("PYTHONPATH")])
    )
    env["FLEET_BROKER_URL"] = BROKER_URL
    return env


# -- wiring ------------------------------------------------------------------------------


def root_commands() -> list[str]:
    lines = [f"netns add {ns}" for ns in namespaces()]
    for zone in sorted(NETWORKS):
        lines += [
            f"link add fleetvz{zone} type veth peer name eth1 netns {runner_ns(zone)}",
            f"link set fleetvz{zone} master fleetbr0",
            f"link set fleetvz{zone} up",
            f"route add unreachable {NETWORKS[zone]}.0/24",
        ]
    return [
        *lines,
        f"link add fleetvzr type veth peer name eth0 netns {BROKER_NS}",
        "link set fleetvzr master fleetbr0",
        "link set fleetvzr up",
    ]


def gateway_commands(zone: str) -> list[str]:
    """The zone's bridge (and gateway address) inside its gateway namespace, a port per member."""
    members = [(h.namespace, "eth0") for h in HOSTS if h.zone == zone]
    members += [(runner_ns(zone), zone_link(zone)), (ALL_NS, zone_link(zone))]
    lines = [
        "link set lo up",
        "link add br0 type bridge",
        f"addr add {NETWORKS[zone]}.1/24 dev br0",
        "link set br0 up",
    ]
    for index, (namespace, name) in enumerate(members):
        lines += [
            f"link add p{index} type veth peer name {name} netns {namespace}",
            f"link set p{index} master br0",
            f"link set p{index} up",
        ]
    return lines


def host_commands(host: ZoneHost) -> list[str]:
    network = NETWORKS[host.zone]
    lines = [
        "link set lo up",
        "link set eth0 up",
        f"addr add {host.address}/24 dev eth0",
        f"route add default via {network}.1",
    ]
    if host.blackhole:
        lines += [f"route add blackhole {network}.0/25", f"route add blackhole {network}.128/25"]
    return lines


def runner_commands(zone: str) -> list[str]:
    link = zone_link(zone)
    return [
        "link set lo up",
        f"link set {link} up",
        f"addr add {NETWORKS[zone]}.{RUNNER_OCTET}/24 dev {link}",
        "link set eth1 up",
        f"addr add {RUNNER_LINK[zone]}/24 dev eth1",
    ]


def all_commands() -> list[str]:
    lines = ["link set lo up"]
    for zone in sorted(NETWORKS):
        link = zone_link(zone)
        lines += [f"link set {link} up", f"addr add {NETWORKS[zone]}.{ALL_OCTET}/24 dev {link}"]
    return lines


def _etc() -> None:
    names = [("localhost", "127.0.0.1"), *((h.name, h.address) for h in HOSTS)]
    hosts = "# fleet lab zones\n" + "".join(f"{a}\t{n}\n" for n, a in names)
    for namespace in namespaces():
        etc = netns.NETNS_ETC / namespace
        etc.mkdir(parents=True, exist_ok=True)
        (etc / "hosts").write_text(hosts)
        (etc / "resolv.conf").write_text(netns.RESOLV_CONF)


def _wire() -> None:
    _etc()
    netns.ip_batch(root_commands())
    for zone in sorted(NETWORKS):
        netns.ip_batch(gateway_commands(zone), namespace=gateway_ns(zone))
        netns.ip_batch(runner_commands(zone), namespace=runner_ns(zone))
    for host in HOSTS:
        netns.ip_batch(host_commands(host), namespace=host.namespace)
    netns.ip_batch(all_commands(), namespace=ALL_NS)
    netns.ip_batch(
        ["link set lo up", "link set eth0 up", f"addr add {BROKER}/24 dev eth0"], BROKER_NS
    )
    for namespace in (*(runner_ns(z) for z in NETWORKS), ALL_NS):  # runners, not routers
        netns.run(["ip", "netns", "exec", namespace, "sysctl", "-qw", "net.ipv4.ip_forward=0"])


# -- the inventory --------------------------------------------------------------------------


def inventory_data() -> dict:
    groups: dict[str, dict] = {}
    for host in HOSTS:
        group = f"zone_{host.zone}" if host.mail else f"zone_{host.zone}_alone"
        entry = groups.setdefault(
            group,
            {
                "hosts": {},
                "vars": {
                    "fleet_zone": host.zone,
                    "fleet_mail_group": group,
                    "fleet_route_via": zone_link(host.zone),
                },
            },
        )
        entry["hosts"][host.name] = {"ansible_host": host.address}
    return {"all": {"vars": dict(inventory.UNIX_VARS), "children": groups}}


# -- up and down ---------------------------------------------------------------------------


def up(lab: Lab) -> Zones:
    """Build the zones beside a running lab (tearing down any zones left), Redis started."""
    down()
    state = lab.state_dir / "zones"
    state.mkdir(parents=True, exist_ok=True)
    _wire()
    nodes = [
        Node(h.namespace, (h.address,), sshd=True, smtp=h.smtp, blackhole=h.blackhole)
        for h in HOSTS
    ]
    topo = Topology(
        network="198.18.4.0/23",
        bridge_address="",
        gateway="",
        nodes=tuple(nodes),
        hosts=tuple(LabHost(h.name, h.address, h.namespace, Kind.UNIX, "zone host") for h in HOSTS),
    )
    directories = {n.namespace: state / "nodes" / n.namespace for n in nodes}
    for directory in directories.values():
        directory.mkdir(parents=True, exist_ok=True)
    keys = sshd.keygen_many(
        (directories[n.namespace] / "ssh_host_ed25519_key", n.namespace) for n in nodes
    )
    started = [control._start_sshd(n, directories[n.namespace], lab.state_dir) for n in nodes]
    started += [
        control._start_smtp(topo, n, n.smtp, directories[n.namespace])
        for n in nodes
        if n.smtp is not None
    ]
    broker_log = state / "redis.log"
    redis = ["redis-server", "--bind", BROKER, "--port", "6379", "--save", "", "--appendonly"]
    redis += ["no", "--protected-mode", "no", "--dir", str(state)]
    broker = Node(BROKER_NS, (BROKER,))
    started.append(
        control._Started(
            "redis", (BROKER, 6379), control._spawn(broker, redis, broker_log), broker_log
        )
    )
    control._wait_ready(started, time.monotonic() + READY)
    inv_dir = state / "inventory"
    inv_dir.mkdir(exist_ok=True)
    by_host = {h.name: key for h, key in zip(HOSTS, keys, strict=True)}
    known = inventory.known_hosts_lines(topo.hosts, by_host)
    inventory.write_credentials(inv_dir, lab.key_file, known)
    hosts_yml = inv_dir / inventory.HOSTS_FILE
    hosts_yml.write_text(yaml.safe_dump(inventory_data(), sort_keys=False))
    return Zones(state, hosts_yml, [s.proc.pid for s in started])


def down() -> None:
    """Remove the zones: their processes, namespaces, links, routes and /etc/netns files."""
    present = set(netns.lab_namespaces())
    pids = {pid for ns in namespaces() if ns in present for pid in netns.namespace_pids(ns)}
    control._stop(pids)
    for namespace in namespaces():
        if namespace in present:
            netns.run(["ip", "netns", "del", namespace])
        etc = netns.NETNS_ETC / namespace
        if etc.is_dir():
            for item in etc.iterdir():
                item.unlink()
            etc.rmdir()
    for link in ("fleetvza", "fleetvzb", "fleetvzr"):
        subprocess.run(["ip", "link", "del", link], capture_output=True, check=False)
    for network in NETWORKS.values():
        subprocess.run(
            ["ip", "route", "del", "unreachable", f"{network}.0/24"],
            capture_output=True,
            check=False,
        )
