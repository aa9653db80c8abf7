"""The lab is what it claims: the topology, the committed inventory, the live network.

The first tests read only data; the rest use the real lab (root, ``lab`` fixture).
The last test tears the lab down, checks nothing is left, and builds it again.
"""

from __future__ import annotations

import ipaddress
import json
import pwd
import socket
import subprocess
import sys
import time
from pathlib import Path

import paramiko
import pytest
import yaml

from tests.lab import Lab, control, exim, netns, sshd, topology
from tests.lab.inventory import inventory_data
from tests.lab.topology import UPLINK, Kind, Routes, Smtp

INVENTORY = Path(__file__).resolve().parents[1] / "inventories" / "lab"
STANDARD = topology.standard()
UNIX = [h.name for h in STANDARD.hosts if h.kind is Kind.UNIX]

# Run inside a namespace: connect to port 25 of argv[1], read the whole greeting
# (smtplib reads continuation lines), print what happened as JSON.
SMTP_PROBE = """
import json, smtplib, socket, sys
try:
    client = smtplib.SMTP(timeout=float(sys.argv[2]))
    code, text = client.connect(sys.argv[1], 25)
    result = {"code": code, "lines": text.decode().splitlines()}
    if code == 220:
        result["ehlo"] = client.ehlo()[0]
        result["tls"] = client.has_extn("starttls")
        client.quit()
    print(json.dumps(result))
except OSError as exc:
    print(json.dumps({"error": type(exc).__name__}))
"""


def smtp_from(in_lab, source: str, target: str, timeout: float = 3.0) -> dict:
    done = in_lab(source, sys.executable, "-c", SMTP_PROBE, target, str(timeout))
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def flatten_groups(node: dict, name: str = "all") -> dict[str, set[str]]:
    """group -> hosts (with children's hosts) of an Ansible YAML inventory."""
    groups = {name: set((node.get("hosts") or {}).keys())}
    for child, sub in (node.get("children") or {}).items():
        for group, hosts in flatten_groups(sub or {}, child).items():
            groups.setdefault(group, set()).update(hosts)
            groups[name].update(hosts)
    return groups


def addresses_of(node: dict) -> dict[str, str]:
    found = {n: v["ansible_host"] for n, v in (node.get("hosts") or {}).items()}
    for sub in (node.get("children") or {}).values():
        found.update(addresses_of(sub or {}))
    return found


# -- data ---------------------------------------------------------------------


def test_committed_inventory_matches_topology() -> None:
    inv = yaml.safe_load((INVENTORY / "hosts.yml").read_text())["all"]
    assert addresses_of(inv) == {h.name: h.address for h in STANDARD.hosts}
    groups = flatten_groups(inv)
    for host in STANDARD.hosts:
        member_of = {g for g, hosts in groups.items() if host.name in hosts} - {"all"}
        assert member_of == set(host.groups), host.name


def test_generated_inventory_agrees_with_committed_one() -> None:
    committed = yaml.safe_load((INVENTORY / "hosts.yml").read_text())["all"]
    generated = inventory_data(STANDARD)["all"]
    assert addresses_of(generated) == addresses_of(committed)
    assert flatten_groups(generated) == flatten_groups(committed)


def test_inventory_variables_name_relative_key_files_and_a_wrong_password() -> None:
    unix = yaml.safe_load((INVENTORY / "group_vars" / "unix.yml").read_text())
    windows = yaml.safe_load((INVENTORY / "group_vars" / "windows.yml").read_text())
    badpass = yaml.safe_load((INVENTORY / "host_vars" / "win-badpass.yml").read_text())
    monitor = yaml.safe_load((INVENTORY / "group_vars" / "monitor.yml").read_text())
    assert (unix["ansible_ssh_private_key_file"], unix["fleet_known_hosts"]) == (
        ".lab/lab_key",
        ".lab/known_hosts",
    )
    assert unix["ansible_user"] == sshd.LAB_USER
    assert windows["ansible_password"] == topology.WINDOWS_PASSWORD
    assert badpass["ansible_password"] != windows["ansible_password"]
    mail = {h.name for h in STANDARD.hosts if {"mail", "mail_broken"} & set(h.groups)}
    assert set(monitor["fleet_smtp_targets"]) == set(monitor["fleet_ping_targets"]) == mail
    ignored = (INVENTORY / ".gitignore").read_text().split()
    assert ".lab/" in ignored


def test_standard_lab_stays_inside_its_range() -> None:
    network = ipaddress.ip_network(STANDARD.network)
    addresses = [h.address for h in STANDARD.hosts] + [STANDARD.gateway, STANDARD.bridge_address]
    assert len(set(addresses)) == len(addresses)
    assert all(ipaddress.ip_address(a) in network for a in addresses)
    assert network == ipaddress.ip_network("198.18.0.0/24")


def test_bench_topology_serves_a_thousand_hosts_from_four_sshd() -> None:
    bench = topology.bench(1000)
    addresses = {h.address for h in bench.hosts}
    assert len(bench.hosts) == len(addresses) == 1000
    assert len(bench.nodes) == 4 and all(n.sshd for n in bench.nodes)
    assert all(ipaddress.ip_address(a) in ipaddress.ip_network("198.18.16.0/20") for a in addresses)
    served = [ipaddress.ip_network(b) for n in bench.nodes for b in n.served_blocks]
    for host in bench.hosts:
        block = ipaddress.ip_network(bench.node(host.namespace).served_blocks[0])
        assert ipaddress.ip_address(host.address) in block
    assert not any(ipaddress.ip_network(STANDARD.network).overlaps(b) for b in served)
    with pytest.raises(ValueError):
        topology.bench(100_000)


# -- the live lab --------------------------------------------------------------


def ssh_client(lab: Lab) -> paramiko.SSHClient:
    client = paramiko.SSHClient()
    client.load_host_keys(str(lab.known_hosts))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    return client


def ssh_run(lab: Lab, name: str, command: str, timeout: float = 5.0) -> str:
    client = ssh_client(lab)
    try:
        client.connect(
            lab.host(name).address,
            username=sshd.LAB_USER,
            key_filename=str(lab.key_file),
            allow_agent=False,
            look_for_keys=False,
            timeout=timeout,
            banner_timeout=timeout,
            auth_timeout=timeout,
        )
        _, stdout, _ = client.exec_command(command, timeout=timeout)
        return stdout.read().decode()
    finally:
        client.close()


@pytest.mark.lab
# bb-dropbear has BusyBox's ip (no -br): tests/test_busybox_host.py logs in there.
@pytest.mark.parametrize(
    "name", [n for n in UNIX if n not in ("mx-badkey", "mx-down", "bb-dropbear")]
)
def test_sshd_logs_in_with_the_key_in_known_hosts(lab: Lab, name: str) -> None:
    out = ssh_run(lab, name, "id -un; ip -br -4 addr show dev eth0")
    user, interface = out.splitlines()
    assert user == sshd.LAB_USER
    assert f"{lab.host(name).address}/24" in interface


@pytest.mark.lab
def test_inventory_key_files_are_written_next_to_the_inventory(lab: Lab) -> None:
    directory = lab.inventory.parent / ".lab"  # hidden: never read as an inventory source
    assert (directory / "lab_key").read_bytes() == lab.key_file.read_bytes()
    assert (directory / "lab_key").stat().st_mode & 0o077 == 0
    assert lab.known_hosts == directory / "known_hosts"


@pytest.mark.lab
def test_mx_badkey_presents_a_key_other_than_known_hosts(lab: Lab) -> None:
    with pytest.raises(paramiko.BadHostKeyException):
        ssh_run(lab, "mx-badkey", "true")


@pytest.mark.lab
def test_mx1_answers_smtp_220_seen_from_mon1(lab: Lab, in_lab) -> None:
    probe = smtp_from(in_lab, "mon1", "mx1")
    assert probe["code"] == 220 and probe["ehlo"] == 250
    assert probe["tls"] is True


@pytest.mark.lab
def test_mx3_greets_on_several_lines(lab: Lab, in_lab) -> None:
    probe = smtp_from(in_lab, "mon1", "mx3")
    assert probe["code"] == 220
    assert len(probe["lines"]) == 3


@pytest.mark.lab
def test_exim_slow_greets_only_after_its_connect_delay(lab: Lab, in_lab) -> None:
    started = time.monotonic()
    probe = smtp_from(in_lab, "mon1", "exim-slow", timeout=15.0)
    assert time.monotonic() - started > exim.GREETING_DELAY - 0.5
    assert probe["lines"] == ["exim-slow.lab ESMTP fleet lab (exim)"]
    assert (probe["code"], probe["ehlo"], probe["tls"]) == (220, 250, True)


@pytest.mark.lab
def test_mx_421_is_not_ready(lab: Lab, in_lab) -> None:
    probe = smtp_from(in_lab, "mon1", "mx-421")
    assert probe["code"] == 421
    assert probe["lines"] == ["4.3.2 Service not available"]


@pytest.mark.lab
def test_mx_smtpdown_refuses_port_25(lab: Lab, in_lab) -> None:
    assert smtp_from(in_lab, "mon1", "mx-smtpdown") == {"error": "ConnectionRefusedError"}


@pytest.mark.lab
def test_mx_down_times_out_and_loses_pings(lab: Lab, in_lab) -> None:
    started = time.monotonic()
    assert smtp_from(in_lab, "mon1", "mx-down", timeout=1.0) == {"error": "TimeoutError"}
    assert time.monotonic() - started < 5
    ping = in_lab("mon1", "ping", "-c", "2", "-i", "0.2", "-W", "1", "mx-down")
    assert ping.returncode == 1 and " 0 received" in ping.stdout
    with pytest.raises(OSError):  # from the runner too
        socket.create_connection((lab.host("mx-down").address, 22), timeout=1.0).close()


@pytest.mark.lab
def test_hosts_ping_the_gateway_but_mx_nogw_has_no_default_route(lab: Lab, in_lab) -> None:
    assert in_lab("mx1", "ping", "-c", "1", "-W", "2", "gw").returncode == 0
    assert in_lab("mx1", "ip", "route", "show", "default").stdout.startswith(
        f"default via {lab.topology.gateway} "
    )
    assert in_lab("mx-nogw", "ip", "route", "show", "default").stdout == ""
    assert in_lab("win-nogw", "ip", "route", "show", "default").stdout == ""


@pytest.mark.lab
def test_routing_hosts_have_the_routes_they_claim(lab: Lab, in_lab) -> None:
    def route_get(host: str) -> str:
        return in_lab(host, "ip", "-4", "route", "get", "192.0.2.1").stdout.split("\n")[0]

    assert route_get("rt-onlink").startswith("192.0.2.1 dev eth0 ")
    assert in_lab("rt-policy", "ip", "route", "show", "default").stdout == ""
    assert f"via {lab.topology.gateway} dev eth0 table 100 " in route_get("rt-policy")
    assert f"via {lab.topology.gateway} dev eth0 " in route_get("rt-twogw")
    defaults = in_lab("rt-twogw", "ip", "route", "show", "default").stdout.splitlines()
    assert [line.split()[-1] for line in defaults] == ["100", "200"]
    uplink = in_lab("rt-nocarrier", "ip", "-br", "link", "show", UPLINK[0]).stdout
    assert "NO-CARRIER" in uplink


@pytest.mark.lab
def test_nothing_in_the_lab_routes_out(lab: Lab, in_lab) -> None:
    gateway = lab.topology.gateway_namespace
    assert in_lab(gateway, "ip", "route", "show", "default").stdout == ""
    # `ip route get` asks the kernel without sending a packet.
    assert in_lab(gateway, "ip", "route", "get", "192.0.2.2").returncode != 0
    assert in_lab(gateway, "cat", "/proc/sys/net/ipv4/ip_forward").stdout.strip() == "0"
    for node in netns.all_nodes(lab.topology):
        links = in_lab(node.namespace, "ip", "-br", "link").stdout.split("\n")
        names = sorted(line.split()[0].split("@")[0] for line in links if line.strip())
        # A no-carrier uplink is a veth pair inside the node, its other end down.
        uplink = [UPLINK[0], f"{UPLINK[0]}-peer"] if node.routes is Routes.NO_CARRIER else []
        assert names == sorted(["eth0", "lo", *uplink]), node.namespace
    bridge_ports = subprocess.run(
        ["ip", "-br", "link", "show", "master", lab.topology.bridge],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    ports = {line.split()[0].split("@")[0] for line in bridge_ports.splitlines()}
    assert ports and all(p.startswith(netns.VETH_PREFIX) for p in ports)


@pytest.mark.lab
def test_lab_names_resolve_and_unknown_names_fail_fast(lab: Lab, in_lab) -> None:
    known = in_lab("mon1", "getent", "hosts", "mx2")
    assert known.stdout.split() == [lab.host("mx2").address, "mx2"]
    started = time.monotonic()
    unknown = in_lab("mon1", "getent", "hosts", "no-such-host.example")
    assert unknown.returncode == 2
    assert time.monotonic() - started < 1.0


@pytest.mark.lab
def test_windows_hosts_have_their_address_and_a_server_if_one_exists(lab: Lab, in_lab) -> None:
    windows = [h for h in lab.hosts if h.kind is Kind.WINDOWS]
    for host in windows:
        assert f"{host.address}/24" in in_lab(host.name, "ip", "-br", "addr").stdout
    if any("winhost" in note for note in lab.notes):
        pytest.skip(f"no Windows servers: {lab.notes}")
    for host in windows:
        socket.create_connection((host.address, 5985), timeout=2.0).close()


@pytest.mark.lab
def test_up_again_replaces_the_running_lab(lab: Lab, in_lab) -> None:
    again = control.up(lab.state_dir)
    assert again == lab
    listeners = in_lab("mx1", "ss", "-Hltn").stdout
    assert listeners.count(":22 ") == 1 and listeners.count(":25 ") == 1
    assert ssh_run(lab, "mx1", "id -un").strip() == sshd.LAB_USER
    assert smtp_from(in_lab, "mon1", "mx2")["code"] == 220


@pytest.mark.lab
def test_bench_lab_serves_hundreds_of_ssh_hosts(lab: Lab) -> None:
    try:
        bench = control.up(lab_topology=topology.bench(300))
        assert bench.inventory.is_file() and bench.inventory.parent != lab.inventory.parent
        assert len(bench.known_hosts.read_text().splitlines()) == 300
        for name in ("bench0001", "bench0254", "bench0255", "bench0300"):
            address = bench.host(name).address
            out = ssh_run(bench, name, "echo $SSH_CONNECTION")
            assert out.split()[2] == address, name
    finally:
        control.up(lab.state_dir)


def lab_leftovers(pids: list[int]) -> list[str]:
    left = [f"netns {n}" for n in netns.lab_namespaces()]
    left += [f"link {n}" for n in netns.lab_links()]
    left += [f"/etc/netns/{p.name}" for p in netns.NETNS_ETC.glob("fleet-*")]
    left += [f"pid {pid}" for pid in pids if control._alive(pid)]
    left += [f"file {p}" for p in (control.RECORD,) if p.exists()]
    return left


@pytest.mark.lab
def test_down_leaves_nothing_behind(lab: Lab) -> None:
    before = control.status()
    assert before["processes"], "the lab should be running before down()"
    user_is_the_labs = pwd.getpwnam(sshd.LAB_USER).pw_gecos == sshd.LAB_USER_COMMENT
    exim_user_is_the_labs = pwd.getpwnam(exim.USER).pw_gecos == exim.USER_COMMENT
    try:
        control.down()
        assert lab_leftovers(before["processes"]) == []
        assert not lab.state_dir.exists()
        assert not (lab.inventory.parent / "lab_key").exists()
        if user_is_the_labs:
            with pytest.raises(KeyError):
                pwd.getpwnam(sshd.LAB_USER)
        if exim_user_is_the_labs:
            with pytest.raises(KeyError):
                pwd.getpwnam(exim.USER)
    finally:
        # Later tests in the session still expect the lab.
        control.up(lab.state_dir)


def test_smtp_greeting_lines() -> None:
    from tests.lab.smtpd import greeting_lines

    assert greeting_lines(Smtp.READY, "mx1") == ("220 mx1.lab ESMTP fleet lab",)
    multi = greeting_lines(Smtp.MULTILINE, "mx3")
    assert [line[:4] for line in multi] == ["220-", "220-", "220 "]
    assert greeting_lines(Smtp.NOT_READY, "x") == ("421 4.3.2 Service not available",)


def test_every_windows_lab_host_has_a_simulator_profile_and_a_free_address() -> None:
    from tests.lab import winsim

    windows = [n for n in STANDARD.nodes if n.windows_profile]
    assert {n.windows_profile for n in windows} <= set(winsim.PROFILES)
    assert {"dag", "team", "hyperv", "dupaddr"} <= {n.windows_profile for n in windows}
    # The duplicate profile's second address belongs to no lab host: the conflict is outside.
    assert "198.18.0.200" not in {h.address for h in STANDARD.hosts}
