"""The lab's wiring: network namespaces, veth pairs, the bridge, routes, /etc/netns files.

Every change goes through ``ip -batch`` (one exec for the root namespace, one
per node) because bring-up must take seconds.  Teardown finds the lab by its
names (``fleet-*`` namespaces, ``fleetv*`` links, the bridge) rather than by a
state file, so it also removes what a crashed run left behind.
"""

from __future__ import annotations

import ipaddress
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path

from tests.lab.topology import BACKUP_GATEWAY, NAMESPACE_PREFIX, UPLINK, Node, Routes, Topology

NETNS_ETC = Path("/etc/netns")
NETNS_RUN = Path("/run/netns")
VETH_PREFIX = "fleetv"  # root-side ends: fleetv0, fleetv1, ... (IFNAMSIZ is 16)
BRIDGES = ("fleetbr0",)


class LabError(RuntimeError):
    """The lab could not be built or torn down."""


def run(argv: list[str], stdin: str | None = None, timeout: float = 30.0) -> str:
    """Run a system command; a failure is a LabError quoting its stderr."""
    done = subprocess.run(
        argv, input=stdin, capture_output=True, text=True, timeout=timeout, check=False
    )
    if done.returncode != 0:
        raise LabError(f"{' '.join(argv)}: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout


def ip_batch(lines: Iterable[str], namespace: str | None = None) -> None:
    """Run ``ip`` commands (without the leading ``ip``) in one exec."""
    script = "\n".join(lines) + "\n"
    where = ["-n", namespace] if namespace else []
    run(["ip", *where, "-batch", "-"], stdin=script)


def gateway_node(topology: Topology) -> Node:
    """The router: answers ping, has no other link and no route out of the lab."""
    return Node(topology.gateway_namespace, (topology.gateway,), default_route=False)


def all_nodes(topology: Topology) -> tuple[Node, ...]:
    return (gateway_node(topology), *topology.nodes)


def root_commands(topology: Topology) -> list[str]:
    """The bridge, one veth pair per node (the inner end created inside it), block routes."""
    nodes = all_nodes(topology)
    lines = [f"netns add {node.namespace}" for node in nodes]
    bridge = topology.bridge
    lines += [
        f"link add {bridge} type bridge",
        f"addr add {topology.bridge_address}/{topology.prefix} dev {bridge}",
        f"link set {bridge} up",
    ]
    for index, node in enumerate(nodes):
        veth = f"{VETH_PREFIX}{index}"
        lines += [
            f"link add {veth} type veth peer name eth0 netns {node.namespace}",
            f"link set {veth} master {bridge}",
            f"link set {veth} up",
        ]
    for node in nodes:
        lines += [f"route add {block} via {node.addresses[0]}" for block in node.served_blocks]
    return lines


def node_commands(topology: Topology, node: Node) -> list[str]:
    """Inside one node: loopback, its addresses, its routes."""
    lines = ["link set lo up", "link set eth0 up"]
    lines += [f"addr add {a}/{topology.prefix} dev eth0" for a in node.addresses]
    # A local route makes the node answer for every address of the block
    # without adding each one (AnyIP).
    lines += [f"route add local {block} dev lo" for block in node.served_blocks]
    if node.routes is not None:
        lines += route_commands(topology, node.routes)
    elif node.default_route:
        lines.append(f"route add default via {topology.gateway}")
    if node.blackhole:
        # More specific than the connected /24: every reply to the lab is
        # dropped, so the host looks powered off to whoever talks to it.
        network = ipaddress.ip_network(topology.network)
        lines += [f"route add blackhole {half}" for half in network.subnets(prefixlen_diff=1)]
    return lines


def route_commands(topology: Topology, routes: Routes) -> list[str]:
    """A node's default route(s) made the way ``routes`` says."""
    gateway, network = topology.gateway, topology.network
    if routes is Routes.ON_LINK:
        return ["route add default dev eth0"]
    if routes is Routes.POLICY:
        # Table 100 holds the subnet too, so replies to the lab stay on the link.
        return [
            f"route add {network} dev eth0 table 100",
            f"route add default via {gateway} table 100",
            "rule add pref 1000 lookup 100",
        ]
    if routes is Routes.TWO_DEFAULTS:
        return [
            f"route add default via {gateway} metric 100",
            f"route add default via {BACKUP_GATEWAY} metric 200",
        ]
    # NO_CARRIER: the uplink's other end stays down, so the uplink has no carrier.
    name, address, uplink_gateway = UPLINK
    return [
        f"link add {name} type veth peer name {name}-peer",
        f"link set {name} up",
        f"addr add {address} dev {name}",
        f"route add default via {uplink_gateway} dev {name}",
    ]


def hosts_file(topology: Topology) -> str:
    names = [("localhost", "127.0.0.1"), *topology.extra_names]
    names += [(host.name, host.address) for host in topology.hosts]
    return "# fleet lab\n" + "".join(f"{address}\t{name}\n" for name, address in names)


# Nothing listens on 127.0.0.1:53 in a node: the query is refused at once, so
# an unknown name fails in milliseconds instead of after a DNS timeout.
RESOLV_CONF = """\
# fleet lab: no name server answers here, unknown names fail at once
nameserver 127.0.0.1
options timeout:1 attempts:1
"""


def write_etc(topology: Topology) -> None:
    """/etc/netns/<ns>/{hosts,resolv.conf}: ``ip netns exec`` bind-mounts them over /etc."""
    hosts = hosts_file(topology)
    for node in all_nodes(topology):
        etc = NETNS_ETC / node.namespace
        etc.mkdir(parents=True, exist_ok=True)
        (etc / "hosts").write_text(hosts)
        (etc / "resolv.conf").write_text(RESOLV_CONF)


def build(topology: Topology) -> None:
    """Wire the whole lab.  The caller has torn down any previous one."""
    used = _addresses_in_use(topology.network)
    if used:
        raise LabError(f"{topology.network} is already used on this machine: {', '.join(used)}")
    write_etc(topology)
    ip_batch(root_commands(topology))
    for node in all_nodes(topology):
        ip_batch(node_commands(topology, node), namespace=node.namespace)


def _addresses_in_use(network: str) -> list[str]:
    """Addresses of the lab's range on the root namespace's interfaces (``ip -br addr``)."""
    net = ipaddress.ip_network(network)
    found = []
    for line in run(["ip", "-br", "-4", "addr"]).splitlines():
        name, _, *addresses = line.split()
        for cidr in addresses:
            if ipaddress.ip_interface(cidr).ip in net:
                found.append(f"{cidr} on {name}")
    return found


def lab_namespaces() -> list[str]:
    """Every namespace of a lab, current or left over."""
    if not NETNS_RUN.is_dir():
        return []
    return sorted(p.name for p in NETNS_RUN.iterdir() if p.name.startswith(NAMESPACE_PREFIX))


def namespace_pids(namespace: str) -> list[int]:
    out = subprocess.run(
        ["ip", "netns", "pids", namespace], capture_output=True, text=True, check=False
    ).stdout
    return [int(pid) for pid in out.split()]


def lab_links() -> list[str]:
    """The bridge and root-side veth ends that are still there."""
    out = run(["ip", "-br", "link"])
    names = [line.split()[0].split("@")[0] for line in out.splitlines() if line.strip()]
    return [n for n in names if n in BRIDGES or n.startswith(VETH_PREFIX)]


def unwire() -> None:
    """Remove namespaces, links and /etc/netns dirs of any lab.  Processes must be gone first:

    a namespace that still holds a process outlives ``ip netns del`` with its veth.
    """
    for namespace in lab_namespaces():
        run(["ip", "netns", "del", namespace])
    for link in lab_links():
        # Deleting a namespace deletes its veth pair; this catches the rest.
        subprocess.run(["ip", "link", "del", link], capture_output=True, check=False)
    if NETNS_ETC.is_dir():
        for etc in NETNS_ETC.iterdir():
            if etc.name.startswith(NAMESPACE_PREFIX):
                shutil.rmtree(etc)
