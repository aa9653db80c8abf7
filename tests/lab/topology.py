"""What the lab is made of, as data: machines (network namespaces) and the hosts they serve.

The lab lives on one bridge in the root namespace.  A *node* is one network
namespace: one "machine" with its addresses, routes and services.  A *host*
is one inventory entry: a name and an address served by a node.  The standard
lab has one host per node; the benchmark lab (``bench(n)``) serves many
addresses from a few nodes, because one sshd per address does not scale.

Nothing here touches the system: ``tests.lab.control`` builds what this says.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from enum import Enum


class Kind(str, Enum):
    UNIX = "unix"
    WINDOWS = "windows"


class Smtp(str, Enum):
    """How a node's SMTP server greets a client (``None`` on a node: nothing on port 25)."""

    READY = "ready"  # 220 in one line
    MULTILINE = "multiline"  # 220-... / 220 ...
    NOT_READY = "not-ready"  # 421 4.3.2 Service not available, then close
    # Real postfix (tests.lab.postfix), as mail teams run it:
    POSTFIX = "postfix"  # plain, STARTTLS with a self-signed certificate
    POSTFIX_POSTSCREEN = "postfix-postscreen"  # "220-" at once, the greeting 6 s later
    POSTFIX_BADTLS = "postfix-badtls"  # STARTTLS offered; certificate and key do not match
    EXIM_SLOW = "exim-slow"  # real exim (tests.lab.exim): its banner 8 s after the connect


class Routes(str, Enum):
    """How a node's default route is made, where it is not ``default via`` the lab's gateway."""

    ON_LINK = "on-link"  # default dev eth0: no gateway (as ppp, tun, WireGuard have)
    POLICY = "policy"  # the default only in table 100, which an ip rule consults first
    TWO_DEFAULTS = "two-defaults"  # via the gateway (metric 100) and a backup (metric 200)
    NO_CARRIER = "no-carrier"  # the default on an uplink whose cable is out (veth peer down)


# The routing hosts' extra addresses, in their block (.50-.59): the backup router of
# TWO_DEFAULTS (nobody answers for it) and NO_CARRIER's uplink (.56/30: its own .57,
# its gateway .58).
BACKUP_GATEWAY = "198.18.0.54"
UPLINK = ("uplink0", "198.18.0.57/30", "198.18.0.58")


@dataclass(frozen=True)
class Node:
    """One network namespace: a machine of the lab."""

    namespace: str
    addresses: tuple[str, ...]
    default_route: bool = True
    # Replies to the whole lab vanish: connects time out, pings are lost.
    blackhole: bool = False
    sshd: bool = False
    smtp: Smtp | None = None
    # A profile of tests.lab.winsim served by tests.lab.winhost (ok, unbound, ...).
    windows_profile: str | None = None
    # Whole blocks (CIDR) the node answers for besides ``addresses``: a local
    # route in the node, a route via the node's first address in the root namespace.
    served_blocks: tuple[str, ...] = ()
    routes: Routes | None = None  # a default route other than via the lab's gateway
    dropbear: bool = False  # its SSH server is dropbear in a busybox chroot (tests.lab.dropbear)


@dataclass(frozen=True)
class LabHost:
    """One inventory host: what the audit sees."""

    name: str
    address: str
    namespace: str
    kind: Kind
    role: str  # in the operator's words: "healthy mail server", "SMTP answers 421", ...
    groups: tuple[str, ...] = ()
    # known_hosts gets another key than the one sshd presents.
    wrong_host_key: bool = False
    # Host variables the inventory sets on purpose (win-badpass's wrong password).
    inventory_vars: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Topology:
    network: str  # "198.18.0.0/24"
    bridge_address: str  # where the runner, in the root namespace, reaches the lab from
    gateway: str  # the router namespace's address: every host's default gateway
    nodes: tuple[Node, ...]
    hosts: tuple[LabHost, ...]
    # Names every /etc/netns/<ns>/hosts lists besides the lab hosts (e.g. the gateway).
    extra_names: tuple[tuple[str, str], ...] = field(default=())
    bridge: str = "fleetbr0"
    gateway_namespace: str = "fleet-gw"

    @property
    def prefix(self) -> int:
        return ipaddress.ip_network(self.network).prefixlen

    def host(self, name: str) -> LabHost:
        for host in self.hosts:
            if host.name == name:
                return host
        raise KeyError(name)

    def node(self, namespace: str) -> Node:
        for node in self.nodes:
            if node.namespace == namespace:
                return node
        raise KeyError(namespace)

    def hosts_of(self, namespace: str) -> tuple[LabHost, ...]:
        return tuple(h for h in self.hosts if h.namespace == namespace)


NAMESPACE_PREFIX = "fleet-"


def namespace_of(name: str) -> str:
    return f"{NAMESPACE_PREFIX}{name}"


def _unix(
    name: str,
    octet: int,
    role: str,
    groups: tuple[str, ...],
    *,
    smtp: Smtp | None = None,
    default_route: bool = True,
    blackhole: bool = False,
    wrong_host_key: bool = False,
    routes: Routes | None = None,
) -> tuple[Node, LabHost]:
    address = f"198.18.0.{octet}"
    ns = namespace_of(name)
    node = Node(ns, (address,), default_route, blackhole, sshd=True, smtp=smtp, routes=routes)
    host = LabHost(name, address, ns, Kind.UNIX, role, (*groups, "unix"), wrong_host_key)
    return node, host


WINDOWS_PASSWORD = "Lab-Passw0rd"
WRONG_PASSWORD = "Not-The-Lab-Passw0rd"


def _windows(
    profile: str,
    octet: int,
    role: str,
    *,
    default_route: bool = True,
    inventory_vars: tuple[tuple[str, str], ...] = (),
) -> tuple[Node, LabHost]:
    name = f"win-{profile}"
    address = f"198.18.0.{octet}"
    ns = namespace_of(name)
    # Exchange servers: each answers SMTP on its own port 25, as a mail host should.
    node = Node(ns, (address,), default_route, windows_profile=profile, smtp=Smtp.READY)
    host = LabHost(
        name, address, ns, Kind.WINDOWS, role, ("windows",), inventory_vars=inventory_vars
    )
    return node, host


# A busybox-only appliance (issue 11), in its block (.60-.62): no python3, no bash,
# no iproute2; dropbear serves it from a chroot (tests.lab.dropbear).
BUSYBOX_BLOCK = range(60, 63)


def busybox_hosts() -> list[tuple[Node, LabHost]]:
    address = "198.18.0.60"
    ns = namespace_of("bb-dropbear")
    node = Node(ns, (address,), sshd=True, dropbear=True)
    role = "busybox only (no python3, bash, iproute2), served by dropbear"
    host = LabHost("bb-dropbear", address, ns, Kind.UNIX, role, ("busybox", "unix"))
    return [(node, host)]


def standard() -> Topology:
    """The lab the tests and demos use: healthy and broken mail servers, Unix and Windows."""
    pairs = [
        _unix("mx1", 11, "healthy mail server", ("mail",), smtp=Smtp.READY),
        _unix("mx2", 12, "healthy mail server", ("mail",), smtp=Smtp.READY),
        _unix(
            "mx3", 13, "healthy mail server, multi-line greeting", ("mail",), smtp=Smtp.MULTILINE
        ),
        _unix("mon1", 14, "monitor, no SMTP server", ("monitor",)),
        _unix("mx-smtpdown", 21, "sshd up, nothing on port 25", ("mail_broken",)),
        _unix(
            "mx-down",
            22,
            "drops everything: connects time out, pings lost",
            ("mail_broken",),
            smtp=Smtp.READY,
            blackhole=True,
        ),
        _unix(
            "mx-nogw",
            23,
            "no default gateway",
            ("mail_broken",),
            smtp=Smtp.READY,
            default_route=False,
        ),
        _unix(
            "mx-badkey",
            24,
            "host key differs from known_hosts",
            ("mail_broken",),
            smtp=Smtp.READY,
            wrong_host_key=True,
        ),
        _unix("mx-421", 25, "SMTP answers 421 (not ready)", ("mail_broken",), smtp=Smtp.NOT_READY),
        # Real postfix: each probes the three (fleet_smtp_targets, STARTTLS required).
        _unix("pf-plain", 41, "postfix, STARTTLS", ("postfix",), smtp=Smtp.POSTFIX),
        _unix(
            "pf-postscreen",
            42,
            "postfix behind postscreen: pre-greeting, greeting after 6 s",
            ("postfix",),
            smtp=Smtp.POSTFIX_POSTSCREEN,
        ),
        _unix(
            "pf-badtls",
            43,
            "postfix, STARTTLS offered with a broken certificate/key pair",
            ("postfix",),
            smtp=Smtp.POSTFIX_BADTLS,
        ),
        # Default routes as real hosts have them (issue 11): three healthy, one broken.
        _unix(
            "rt-onlink",
            50,
            "default route on-link (no gateway)",
            ("routes",),
            routes=Routes.ON_LINK,
        ),
        _unix(
            "rt-policy",
            51,
            "default route only in a policy table",
            ("routes",),
            routes=Routes.POLICY,
        ),
        _unix(
            "rt-twogw",
            52,
            "two default routes, metrics 100 and 200",
            ("routes",),
            routes=Routes.TWO_DEFAULTS,
        ),
        _unix(
            "rt-nocarrier",
            53,
            "default route on an uplink without carrier",
            ("routes",),
            routes=Routes.NO_CARRIER,
        ),
        # Real exim, its banner delayed by a connect ACL; the postfix hosts probe it.
        _unix("exim-slow", 45, "exim, banner delayed 8 s", ("exim",), smtp=Smtp.EXIM_SLOW),
        _windows("ok", 31, "healthy Windows Server 2019"),
        _windows("unbound", 32, "TCP/IP not bound to the adapter"),
        _windows("apipa", 33, "APIPA address (DHCP failed)"),
        _windows("nogw", 34, "static address, no default gateway", default_route=False),
        _windows("2008", 35, "Windows Server 2008 R2, PowerShell 2.0"),
        _windows(
            "badpass",
            36,
            "inventory has the wrong password",
            inventory_vars=(("ansible_password", WRONG_PASSWORD),),
        ),
        # Windows servers as mail teams run them (issue 11): three healthy, one broken.
        _windows("dag", 37, "Exchange DAG node: hidden cluster adapter on 169.254.x.x"),
        _windows("team", 38, "NIC team, a stale default route in the persistent store"),
        _windows("hyperv", 39, "Hyper-V host: TCP/IP on vEthernet, not on the uplink"),
        _windows("dupaddr", 40, "a second address another machine answers for"),
        *busybox_hosts(),
    ]
    return Topology(
        network="198.18.0.0/24",
        bridge_address="198.18.0.254",
        gateway="198.18.0.1",
        nodes=tuple(node for node, _ in pairs),
        hosts=tuple(host for _, host in pairs),
        extra_names=(("gw", "198.18.0.1"), ("runner", "198.18.0.254")),
    )


# The benchmark lab uses another part of the RFC 2544 range (198.18.0.0/15)
# than the standard lab, because a /24 cannot hold a thousand hosts.
BENCH_NETWORK = "198.18.16.0/20"
# Past what /20 holds (14 blocks, 3,556 hosts), the bench moves whole to a /18:
# 62 blocks, 15,748 hosts (``--scale 10000``).
BENCH_LARGE_NETWORK = "198.18.64.0/18"
BENCH_BLOCK_SIZE = 254  # hosts per node: one /24 block, .1 to .254
# The bench's Windows hosts (``bench(windows=N)``): blocks of this /20, each served by
# one node running one simulator process (tests.lab.winhost --block) for its hosts.
BENCH_WINDOWS_NETWORK = "198.18.32.0/20"
BENCH_WINDOWS_PER_NODE = 50
BENCH_WINDOWS_NODE = 100  # the Windows nodes' addresses on the bridge: .100 and up

# The bench's extra machines, on the bridge's /24 (bench nodes are .10 and up).
BENCH_HUB = "smtp-hub"  # the SMTP server (and ping target) every bench host probes
BENCH_EXTRA_ADDRESSES = {"hub": 5, "mute": 6, "hang": 7, "silent": 8}
BENCH_STUCK = ("mute1", "hang1")  # hosts whose server tests.lab.bench starts itself


def bench_network(n: int) -> str:
    """The bench's network for ``n`` hosts: the /20, or the /18 when the /20 cannot hold them."""
    small = ipaddress.ip_network(BENCH_NETWORK)
    return (
        BENCH_NETWORK
        if n <= (small.num_addresses // 256 - 2) * BENCH_BLOCK_SIZE
        else (BENCH_LARGE_NETWORK)
    )


def bench(
    n: int, *, hub: bool = False, silent: int = 0, stuck: bool = False, windows: int = 0
) -> Topology:
    """``n`` SSH hosts (``bench0001``...) served by one sshd per 254 hosts.

    Node ``i`` has one address on the bridge (198.18.16.10+i) and answers for a
    whole /24 block (198.18.17+i.0/24) through a ``local`` route on its loopback;
    the root namespace routes each block to its node.  So a thousand hosts cost
    four namespaces, four sshd processes and four ARP entries, and sshd listens
    on 0.0.0.0 (it has at most 16 ListenAddress sockets).  The hosts of a node
    share its host key, as machines cloned from one image would.

    Options for the benchmark (``tests.lab.bench``), all off by default:

    * ``hub``: ``smtp-hub``, an SMTP server (no sshd) for the hosts to probe;
    * ``silent``: that many hosts (``silent001``..., group ``silent``) served
      by one node that drops every reply, as the standard lab's mx-down;
    * ``stuck``: ``mute1``, whose port 22 accepts TCP and never speaks, and
      ``hang1``, whose sshd runs every command forever (group ``stuck``).
      Their nodes have no server here: ``tests.lab.bench`` starts them.
    * ``windows``: that many Windows hosts (``win0001``..., groups ``winbench``
      and ``windows``), ``BENCH_WINDOWS_PER_NODE`` to a node, each node answering
      for a /24 of ``BENCH_WINDOWS_NETWORK``; ``tests.lab.bench`` starts one
      simulator per node (``tests.lab.winhost --block``).

    Up to 3,556 hosts the lab is 198.18.16.0/20; beyond, 198.18.64.0/18 (15,748).
    """
    network = ipaddress.ip_network(bench_network(n))
    link_net, *blocks = network.subnets(new_prefix=24)  # 198.18.16.0/24 is the bridge's
    silent_block = blocks.pop()  # the last block is kept for the silent hosts
    capacity = len(blocks) * BENCH_BLOCK_SIZE
    if not 1 <= n <= capacity:
        raise ValueError(f"the bench lab holds 1..{capacity} hosts, not {n}")
    if not 0 <= silent <= BENCH_BLOCK_SIZE:
        raise ValueError(f"the bench lab holds 0..{BENCH_BLOCK_SIZE} silent hosts, not {silent}")
    nodes: list[Node] = []
    hosts: list[LabHost] = []
    for index in range(-(-n // BENCH_BLOCK_SIZE)):
        ns = namespace_of(f"bench{index}")
        block = blocks[index]
        node_address = str(link_net.network_address + 10 + index)
        nodes.append(Node(ns, (node_address,), sshd=True, served_blocks=(str(block),)))
        first = index * BENCH_BLOCK_SIZE
        for offset in range(min(BENCH_BLOCK_SIZE, n - first)):
            name = f"bench{first + offset + 1:04d}"
            address = str(block.network_address + 1 + offset)
            hosts.append(LabHost(name, address, ns, Kind.UNIX, "bench", ("bench", "unix")))
    for node, members in _bench_extras(link_net, silent_block, hub=hub, silent=silent, stuck=stuck):
        nodes.append(node)
        hosts.extend(members)
    for node, members in _bench_windows(link_net, windows):
        nodes.append(node)
        hosts.extend(members)
    gateway = str(link_net.network_address + 1)
    runner = str(link_net.network_address + 254)
    return Topology(
        network=str(link_net),
        bridge_address=runner,
        gateway=gateway,
        nodes=tuple(nodes),
        hosts=tuple(hosts),
        extra_names=(("gw", gateway), ("runner", runner)),
    )


def _bench_extras(
    link_net: ipaddress.IPv4Network | ipaddress.IPv6Network,
    silent_block: ipaddress.IPv4Network | ipaddress.IPv6Network,
    *,
    hub: bool,
    silent: int,
    stuck: bool,
) -> list[tuple[Node, list[LabHost]]]:
    """The optional machines of ``bench()``: hub, silent hosts, stuck hosts."""

    def address(what: str) -> str:
        return str(link_net.network_address + BENCH_EXTRA_ADDRESSES[what])

    extras: list[tuple[Node, list[LabHost]]] = []
    if hub:
        ns = namespace_of("benchhub")
        role = "SMTP server the bench hosts probe"
        extras.append(
            (
                Node(ns, (address("hub"),), smtp=Smtp.READY),
                [LabHost(BENCH_HUB, address("hub"), ns, Kind.UNIX, role, ("hub",))],
            )
        )
    if silent:
        ns = namespace_of("benchsilent")
        node = Node(ns, (address("silent"),), blackhole=True, served_blocks=(str(silent_block),))
        members = [
            LabHost(
                f"silent{i + 1:03d}",
                str(silent_block.network_address + 1 + i),
                ns,
                Kind.UNIX,
                "drops everything: connects time out",
                ("silent", "unix"),
            )
            for i in range(silent)
        ]
        extras.append((node, members))
    if stuck:
        roles = {
            "mute": "port 22 accepts TCP, never speaks SSH",
            "hang": "sshd runs every command forever",
        }
        for what, role in roles.items():
            ns = namespace_of(f"bench{what}")
            host = LabHost(f"{what}1", address(what), ns, Kind.UNIX, role, ("stuck", "unix"))
            extras.append((Node(ns, (address(what),)), [host]))
    return extras


def _bench_windows(
    link_net: ipaddress.IPv4Network | ipaddress.IPv6Network, n: int
) -> list[tuple[Node, list[LabHost]]]:
    """``n`` Windows hosts, ``BENCH_WINDOWS_PER_NODE`` to a node, one /24 block each."""
    blocks = list(ipaddress.ip_network(BENCH_WINDOWS_NETWORK).subnets(new_prefix=24))
    capacity = len(blocks) * BENCH_WINDOWS_PER_NODE
    if not 0 <= n <= capacity:
        raise ValueError(f"the bench lab holds 0..{capacity} Windows hosts, not {n}")
    out: list[tuple[Node, list[LabHost]]] = []
    for index in range(-(-n // BENCH_WINDOWS_PER_NODE)):
        ns = namespace_of(f"benchwin{index}")
        block = blocks[index]
        node = Node(
            ns,
            (str(link_net.network_address + BENCH_WINDOWS_NODE + index),),
            served_blocks=(str(block),),
        )
        first = index * BENCH_WINDOWS_PER_NODE
        members = [
            LabHost(
                f"win{first + offset + 1:04d}",
                str(block.network_address + 1 + offset),
                ns,
                Kind.WINDOWS,
                "simulated Windows Server 2019 (one simulator per node)",
                ("winbench", "windows"),
            )
            for offset in range(min(BENCH_WINDOWS_PER_NODE, n - first))
        ]
        out.append((node, members))
    return out
