"""The lab's bastion: a jump host and the mail hosts only it can reach (issue 13).

Built on a running lab (``add(lab)``), apart from the standard topology so
that the other tests' view of the lab is unchanged.  ``bast1`` (198.18.0.70)
sits on the lab's bridge and has a second leg: a bridge inside its own
namespace, 198.18.2.1/24, where ``dmz1`` and ``dmz2`` (198.18.2.11-12) run a
real sshd and an SMTP server.  Nothing in the root namespace (the runner)
has an address or a route on 198.18.2.0/24, and the bastion does not
forward: the mail hosts are reached through the bastion's sshd or not at all.
Its namespaces and links carry the lab's names, so ``control.down()`` removes
them with the rest.
"""

from __future__ import annotations

import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tests.lab import control, netns, sshd
from tests.lab.topology import Node, Smtp

BASTION = ("bast1", "198.18.0.70")
PRIVATE_NETWORK = "198.18.2.0/24"
PRIVATE_GATEWAY = "198.18.2.1"
MAIL_HOSTS = (("dmz1", "198.18.2.11"), ("dmz2", "198.18.2.12"))
ROOT_LINK = f"{netns.VETH_PREFIX}b70"  # the bastion's leg on the lab's bridge


@dataclass(frozen=True)
class BastionLab:
    bastion: str  # its address
    hosts: tuple[tuple[str, str], ...]  # (name, address) behind it
    host_keys: dict[str, str]  # name -> "type key"
    log: Path  # the bastion's sshd log (one "Accepted publickey" line per login)

    def logins(self) -> int:
        return self.log.read_text(errors="replace").count("Accepted publickey")


def namespace(name: str) -> str:
    return f"fleet-{name}"


def add(lab: control.Lab) -> BastionLab:
    """Wire the bastion and its private network into the running ``lab``; start servers."""
    name, address = BASTION
    bast = namespace(name)
    netns.run(["ip", "netns", "add", bast])
    netns.ip_batch(
        [
            f"link add {ROOT_LINK} type veth peer name eth0 netns {bast}",
            f"link set {ROOT_LINK} master {lab.topology.bridge}",
            f"link set {ROOT_LINK} up",
        ]
    )
    commands = ["link set lo up", "link set eth0 up", f"addr add {address}/24 dev eth0"]
    commands += ["link add br2 type bridge", f"addr add {PRIVATE_GATEWAY}/24 dev br2"]
    commands += ["link set br2 up", f"route add default via {lab.topology.gateway}"]
    for index, (host, _) in enumerate(MAIL_HOSTS):
        netns.run(["ip", "netns", "add", namespace(host)])
        commands += [
            f"link add dmz{index} type veth peer name eth0 netns {namespace(host)}",
            f"link set dmz{index} master br2",
            f"link set dmz{index} up",
        ]
    netns.ip_batch(commands, namespace=bast)
    netns.run(["ip", "netns", "exec", bast, "sysctl", "-qw", "net.ipv4.ip_forward=0"])
    names = "".join(f"{a}\t{n}\n" for n, a in MAIL_HOSTS) + f"{PRIVATE_GATEWAY}\tgw\n"
    for host, host_address in MAIL_HOSTS:
        etc = netns.NETNS_ETC / namespace(host)
        etc.mkdir(parents=True, exist_ok=True)
        (etc / "hosts").write_text("# fleet lab, behind bast1\n" + names)
        (etc / "resolv.conf").write_text(netns.RESOLV_CONF)
        netns.ip_batch(
            [
                "link set lo up",
                "link set eth0 up",
                f"addr add {host_address}/24 dev eth0",
                f"route add default via {PRIVATE_GATEWAY}",
            ],
            namespace=namespace(host),
        )
    nodes = [(name, address), *MAIL_HOSTS]
    directories = {n: lab.state_dir / "nodes" / namespace(n) for n, _ in nodes}
    for directory in directories.values():
        directory.mkdir(parents=True, exist_ok=True)
    publics = sshd.keygen_many(
        [(directories[n] / "ssh_host_ed25519_key", namespace(n)) for n, _ in nodes]
    )
    started = []
    for host, host_address in nodes:
        node = Node(namespace(host), (host_address,), sshd=True)
        directory = directories[host]
        config = directory / "sshd_config"
        config.write_text(
            sshd.sshd_config(
                listen=[host_address],
                host_key=directory / "ssh_host_ed25519_key",
                pid_file=directory / "sshd.pid",
                authorized_keys=lab.state_dir / "authorized_keys",
            )
        )
        argv = [str(sshd.SSHD), "-D", "-e", "-f", str(config)]
        log = directory / "sshd.out"
        proc = control._spawn(node, argv, log)
        started.append(control._Started(f"sshd of {host}", (host_address, 22), proc, log))
        if host != name:
            smtp = [sys.executable, "-m", "tests.lab.smtpd", "--address", host_address]
            smtp += ["--name", host, "--greeting", Smtp.READY.value]
            log = directory / "smtp.out"
            proc = control._spawn(node, smtp, log)
            started.append(control._Started(f"SMTP of {host}", (host_address, 25), proc, log))
    control._wait_ready(started, time.monotonic() + control.READY_TIMEOUT)
    keys = {n: " ".join(pub.split()[:2]) for (n, _), pub in zip(nodes, publics, strict=True)}
    return BastionLab(address, MAIL_HOSTS, keys, directories[name] / "sshd.out")


def remove() -> None:
    """Stop the bastion's machines and unwire them (``control.down()`` would too)."""
    for host in (BASTION[0], *(h for h, _ in MAIL_HOSTS)):
        ns = namespace(host)
        control._stop(netns.namespace_pids(ns))
        if ns in netns.lab_namespaces():
            netns.run(["ip", "netns", "del", ns])  # its veths go with it
        shutil.rmtree(netns.NETNS_ETC / ns, ignore_errors=True)
    if ROOT_LINK in netns.lab_links():
        netns.run(["ip", "link", "del", ROOT_LINK])
