"""The benchmark's smoke test, and the speed-ups it led to.

Fast: the tables and targets on canned figures, the bench topology as data,
the shared runs of identical steps (the known_hosts index and the key cache:
tests/test_transport_ssh.py).
With root, one tiny real run (3 hosts, --quick): no timing is asserted, only
that every tool's hosts came back and the figures are written.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import subprocess
from pathlib import Path

import pytest

from fleet.checks.base import Step
from fleet.checks.batch import compose_sh, new_nonce, shared_runs, split_sections
from tests.lab import bench, control, topology
from tests.lab.bench import Bounded, Figures, Measured, OnHost

# -- tables and targets on canned numbers ---------------------------------------


def canned(fleet_wall: float = 11.0, fleet_cpu: float = 1.2) -> Figures:
    figures = Figures(
        machine={"nproc": 2, "cpu": "test CPU", "python": "3.11"}, hosts=200, forks=50
    )
    figures.tools = [
        Measured("fleet", 200, fleet_wall, fleet_cpu, 70.0, returned=200),
        Measured("OpenSSH floor", 200, 10.0, 2.6, 30.0, returned=200, tree_peak_mb=300.0),
        Measured("ansible-playbook", 200, 40.0, 11.0, 80.0, returned=199, tree_peak_mb=1800.0),
        Measured("ansible-playbook, task per check", 200, 40.0, 30.0, 80.0, returned=200),
    ]
    figures.scale = Measured("fleet at scale (1000)", 1000, 60.0, 9.0, 250.0, returned=1000)
    figures.inventory_10k_s = 0.2
    figures.on_host = [OnHost(1, 1.05), OnHost(3, 1.07)]
    figures.bounded = [Bounded("hung hosts", 7.0, 11.0)]
    return figures


def holds(figures: Figures) -> dict[str, str]:
    return {what.split(" (")[0]: ok for what, _, ok in bench.targets(figures)}


def test_targets_say_which_hold_on_canned_figures() -> None:
    verdicts = holds(canned())
    assert verdicts["fleet/floor wall time <= 1.3"] == "yes"  # 1.10x
    assert verdicts["ansible/fleet wall time >= 3, a raw task per check"] == "yes"  # 3.6x
    # Ansible running fleet's batched script as one task is context, not a target.
    assert verdicts["(context) ansible/fleet wall time, one raw task with fleet's script"] == "-"
    assert verdicts["fleet client CPU <= 8 ms/host"] == "yes"  # 6 ms
    assert verdicts["1000 hosts: peak RSS < 300 MB"] == "yes"
    slope = {what: value for what, value, _ in bench.targets(canned())}
    # 1.2 s of CPU for 200 hosts, 9.0 s for 1000: (9.0 - 1.2) s / 800 hosts
    assert slope["(context) fleet client CPU per extra host, 200 -> 1000"] == "9.8 ms"
    assert verdicts["3 ping targets on one host cost ~1 ping"] == "yes"
    assert verdicts["ends in bound: hung hosts"] == "yes"


def test_missed_targets_say_no() -> None:
    verdicts = holds(canned(fleet_wall=14.0, fleet_cpu=3.0))
    assert verdicts["fleet/floor wall time <= 1.3"] == "NO"  # 1.40x
    assert verdicts["ansible/fleet wall time >= 3, a raw task per check"] == "NO"  # 2.86x
    assert verdicts["fleet client CPU <= 8 ms/host"] == "NO"  # 15 ms


def test_table_prints_ratios_cpu_per_host_and_who_returned_everything() -> None:
    text = bench.report(canned())
    fleet_row = next(line for line in text.splitlines() if line.startswith("fleet "))
    assert "1.10x" in fleet_row and "6.0" in fleet_row and "yes (200/200)" in fleet_row
    ansible_row = next(line for line in text.splitlines() if line.startswith("ansible-playbook"))
    assert "NO (199/200)" in ansible_row and "1800" in ansible_row
    assert "test CPU" in text


def test_figures_are_written_as_json(tmp_path: Path) -> None:
    path = bench.write_json(canned(), tmp_path / "bench")
    data = json.loads(path.read_text())
    assert data["tools"][0]["cpu_ms_per_host"] == pytest.approx(6.0)
    assert data["tools"][2]["all_returned"] is False
    assert ["fleet/floor wall time <= 1.3", "1.10x", "yes"] in data["targets"]


def test_repeated_runs_report_medians_and_keep_every_run() -> None:
    runs = [
        Measured("fleet", 200, wall, cpu, rss, returned=got, note="x")
        for wall, cpu, rss, got in (
            (9.0, 2.0, 60.0, 200),
            (8.0, 1.6, 70.0, 199),
            (12.0, 1.8, 65.0, 200),
        )
    ]
    row = bench.median_of(runs)
    assert (row.wall_s, row.cpu_s) == (9.0, 1.8)  # each median on its own, not one run's
    assert row.peak_rss_mb == 70.0 and row.returned == 199  # the worst run counts
    assert row.runs == ((9.0, 10.0), (8.0, 8.0), (12.0, 9.0))
    assert row.note == "x; median of 3 runs (CPU 8.0-10.0 ms/host, wall 8.00-12.00 s)"
    even = bench.median_of(runs[:2])
    assert (even.wall_s, even.cpu_s) == (8.5, 1.8)
    assert bench.median_of(runs[:1]) is runs[0]


def test_a_run_is_complete_only_when_every_section_came_back() -> None:
    steps = [Step("a", "echo a"), Step("b", "echo b")]
    nonce = new_nonce()
    script = compose_sh(steps, nonce).encode()
    out = subprocess.run(["sh"], input=script, capture_output=True, check=True)
    assert bench.complete(out.stdout, nonce, steps)
    # ansible's raw task runs under a tty: CRLF line ends are read too.
    assert bench.complete(out.stdout.replace(b"\n", b"\r\n"), nonce, steps)
    cut = out.stdout[: out.stdout.rindex(b"@@fleet")]
    assert not bench.complete(cut, nonce, steps)


# -- the bench topology ---------------------------------------------------------


def test_bench_extras_are_off_by_default_and_on_when_asked() -> None:
    plain = topology.bench(10)
    assert {h.groups[0] for h in plain.hosts} == {"bench"}
    full = topology.bench(10, hub=True, silent=3, stuck=True)
    by_group = {g: [h for h in full.hosts if h.groups[0] == g] for g in ("hub", "silent", "stuck")}
    assert [h.name for h in by_group["hub"]] == [topology.BENCH_HUB]
    assert full.node(by_group["hub"][0].namespace).smtp is topology.Smtp.READY
    assert [h.name for h in by_group["stuck"]] == list(topology.BENCH_STUCK)
    silent_node = full.node(by_group["silent"][0].namespace)
    assert silent_node.blackhole and not silent_node.sshd
    block = ipaddress.ip_network(silent_node.served_blocks[0])
    assert all(ipaddress.ip_address(h.address) in block for h in by_group["silent"])
    healthy = {ipaddress.ip_network(b) for n in full.nodes if n.sshd for b in n.served_blocks}
    assert not any(block.overlaps(b) for b in healthy)
    addresses = [h.address for h in full.hosts]
    assert len(addresses) == len(set(addresses)) == 10 + 1 + 3 + 2
    with pytest.raises(ValueError):
        topology.bench(10, silent=1000)


# -- the speed-ups ----------------------------------------------------------------


def test_identical_steps_run_once_and_share_their_output(tmp_path: Path) -> None:
    counter = tmp_path / "runs"
    same = f"echo run >> {counter}; echo net"
    steps = [Step("binding:net", same), Step("ipconfig:net", same), Step("other", "echo other")]
    assert shared_runs(steps) == [0, 0, 2]
    nonce = new_nonce()
    script = compose_sh(steps, nonce)
    out = subprocess.run(["sh"], input=script.encode(), capture_output=True, check=True).stdout
    sections = split_sections(out, nonce, steps)
    assert sections["binding:net"].stdout == sections["ipconfig:net"].stdout == b"net\n"
    assert sections["ipconfig:net"].exit_status == 0
    assert sections["other"].stdout == b"other\n"
    assert counter.read_text() == "run\n"


# -- one tiny real run ------------------------------------------------------------


@pytest.mark.lab
def test_tiny_bench_run_returns_every_host(lab, tmp_path: Path) -> None:
    args = argparse.Namespace(hosts=3, forks=3, quick=True, scale=0, repeat=2)
    try:
        figures = bench.run_bench(args)
    finally:
        control.up(lab.state_dir)  # later tests in the session expect the standard lab
    tools = {m.tool: m for m in figures.tools}
    assert set(tools) == {"fleet", "OpenSSH floor", "paramiko alone"}
    assert all(m.returned == 3 and m.cpu_s > 0 for m in tools.values()), tools
    assert all(len(m.runs) == 2 for m in tools.values()), tools  # taking turns, twice
    assert [o.targets for o in figures.on_host] == [1, 3]
    data = json.loads(bench.write_json(figures, tmp_path).read_text())
    assert data["hosts"] == 3 and len(data["tools"]) == 3


# -- past 1,000 hosts, and the Windows hosts at scale ------------------------------


def test_ten_thousand_hosts_move_the_bench_to_its_own_18_with_a_node_per_254() -> None:
    assert topology.bench(3556).network == "198.18.16.0/24"  # the /20 holds 14 blocks
    big = topology.bench(10_000, hub=True)
    assert big.network == "198.18.64.0/24"  # the bridge's /24 of 198.18.64.0/18
    served = [n for n in big.nodes if n.sshd]
    assert len(served) == 40  # 10,000 / 254: one sshd, one ARP entry per 254 hosts
    addresses = [h.address for h in big.hosts]
    assert len(addresses) == len(set(addresses)) == 10_001
    block = ipaddress.ip_network(topology.BENCH_LARGE_NETWORK)
    assert all(ipaddress.ip_address(a) in block for a in addresses)
    with pytest.raises(ValueError):
        topology.bench(62 * 254 + 1)


def test_windows_bench_hosts_are_served_50_to_a_node_from_their_own_block() -> None:
    lab = topology.bench(10, hub=True, windows=120)
    windows = [h for h in lab.hosts if h.kind is topology.Kind.WINDOWS]
    assert len(windows) == 120 and {h.groups for h in windows} == {("winbench", "windows")}
    nodes = [lab.node(ns) for ns in dict.fromkeys(h.namespace for h in windows)]
    assert [len(lab.hosts_of(n.namespace)) for n in nodes] == [50, 50, 20]
    block = ipaddress.ip_network(topology.BENCH_WINDOWS_NETWORK)
    for node in nodes:
        assert not node.sshd and node.windows_profile is None  # the bench starts them
        served = ipaddress.ip_network(node.served_blocks[0])
        assert served.subnet_of(block)  # type: ignore[arg-type]
        assert all(ipaddress.ip_address(h.address) in served for h in lab.hosts_of(node.namespace))
    assert len({h.address for h in lab.hosts}) == len(lab.hosts)


def test_scale_takes_one_or_several_host_counts() -> None:
    from tests.lab.bench.main import scales

    assert scales("0") == [] and scales(0) == []
    assert scales("1000") == [1000] and scales(1000) == [1000]
    assert scales("1000,10_000") == [1000, 10_000]


def test_ten_thousand_hosts_are_held_to_1_gb_and_to_the_cpu_per_host_at_200() -> None:
    figures = canned()  # fleet: 1.2 s of CPU for 200 hosts, 6 ms a host
    figures.add_scale(Measured("fleet at scale (1000)", 1000, 60.0, 5.5, 250.0, returned=1000))
    figures.add_scale(Measured("fleet at scale (10000)", 10_000, 600.0, 58.0, 900.0, 10_000))
    assert figures.scale is not None and figures.scale.hosts == 10_000
    verdicts = holds(figures)
    assert verdicts["1000 hosts: peak RSS < 300 MB"] == "yes"
    assert verdicts["10000 hosts: peak RSS < 1024 MB"] == "yes"  # 900 MB
    assert verdicts["10000 hosts: client CPU per host <= at 200"] == "yes"  # 5.8 ms
    figures.scales[-1] = Measured("fleet at scale (10000)", 10_000, 600.0, 70.0, 1100.0, 10_000)
    verdicts = holds(figures)
    assert verdicts["10000 hosts: peak RSS < 1024 MB"] == "NO"
    assert verdicts["10000 hosts: client CPU per host <= at 200"] == "NO"  # 7 ms
    assert "fleet at scale (10000)" in bench.report(figures)


def test_windows_figures_are_reported_and_held_to_their_target() -> None:
    from tests.lab.bench.figures import WINRM_CPU_MS
    from tests.lab.bench.windows import WindowsFigures

    figures = canned()
    cpu_s = 0.5 * WINRM_CPU_MS * 200 / 1000  # half the target per host
    fleet = Measured("fleet, WinRM (4 simulators)", 200, 20.0, cpu_s, 90.0, returned=200)
    ansible = Measured("ansible-playbook, WinRM raw", 200, 40.0, 30.0, 80.0, returned=200)
    figures.windows = WindowsFigures(
        200, 4, fleet, ansible, 8.0, 200, [("pyspnego", 40.0)], [("f (x.py:1)", 9.0)]
    )
    verdicts = holds(figures)
    assert verdicts[f"fleet over WinRM: client CPU <= {WINRM_CPU_MS:g} ms per Windows host"] == (
        "yes"
    )
    assert verdicts["200 Windows hosts: 1 shell + 1 PowerShell per host"] == "yes"
    text = bench.report(figures)
    assert "ansible-playbook, WinRM raw" in text and "pyspnego" in text
    data = json.loads(json.dumps(figures.to_dict()))
    assert data["windows"]["fleet"]["cpu_ms_per_host"] == pytest.approx(0.5 * WINRM_CPU_MS)


def test_the_profile_is_summarised_by_library_from_the_leaf_up() -> None:
    from tests.lab.bench.windows import summarise_profile

    raw = (
        "run (fleet/runner.py:1);step (spnego/_ntlm.py:2);rc4 (cryptography/x.py:3) 6\n"
        "run (fleet/runner.py:1);post (requests/sessions.py:4);sendall (socket.py:5) 3\n"
        "run (fleet/runner.py:1);parse (fleet/checks/x.py:6) 1\n"
    )
    found = summarise_profile(raw)
    assert dict(found.parts) == {
        "cryptography": 60.0,
        "ssl / socket": 30.0,
        "fleet": 10.0,
    }
    assert found.hot[0] == ("rc4 (cryptography/x.py:3)", 60.0) and found.samples == 10


def test_probe_count_reads_the_planned_targets_of_a_mail_group() -> None:
    from tests.lab.bench.robust import probe_count

    # A group this small keeps the full mesh whatever the plan: each pings and greets the 3 others.
    counts = probe_count(4)
    assert (counts["ping"], counts["smtp"], counts["probes"]) == (12, 12, 24)
    assert counts["min_sources"] == counts["max_sources"] == 3
    assert counts["gateway_pings"] == 4
