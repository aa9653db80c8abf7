"""Robustness figures: hung and silent hosts, probes side by side, a big inventory parsed."""

from __future__ import annotations

import tempfile
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from fleet.checks.base import Platform
from fleet.checks.batch import new_nonce
from fleet.plan import HostPlan, RunOptions
from fleet.truth import as_bool
from tests.lab import topology
from tests.lab.bench.labs import (
    BenchLab,
    complete,
)
from tests.lab.bench.measure import PLAYBOOK
from tests.lab.bench.tools import (
    fleet_audit,
)


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


def probe_count(hosts: int = 1000) -> dict[str, Any]:
    """The default playbook's probes for one mail group of ``hosts`` hosts, counted from the
    planned checks' targets (whichever plan fleet has): ping and SMTP probes between members,
    the gateway pings aside, and how many sources probe each member (fewest, most)."""
    from fleet.inventory import load_inventory
    from fleet.playbook import build_plan, load_playbook

    with tempfile.TemporaryDirectory(prefix="fleet-probes-") as tmp:
        root = Path(tmp)
        members = {
            f"mx{i:05d}": {"ansible_host": f"198.18.{64 + i // 250}.{1 + i % 250}"}
            for i in range(hosts)
        }
        inventory = {"all": {"children": {"mail": {"hosts": members}}}}
        (root / "hosts.yml").write_text(yaml.safe_dump(inventory))
        started = time.perf_counter()
        plans = build_plan(load_playbook(PLAYBOOK), load_inventory(root), "mail")
        planned = time.perf_counter() - started
    counts: Counter[str] = Counter()
    sources: Counter[str] = Counter({name: 0 for name in members})
    gateway = 0
    for plan in plans:
        probed: set[str] = set()  # a source counts once per target, ping and SMTP together
        for check in plan.checks:
            if check.name not in ("ping", "smtp"):
                continue
            targets = [str(t) for t in check.params.get("targets") or ()]
            counts[check.name] += len(targets)
            probed.update(targets)
            if check.name == "ping" and as_bool(check.params.get("gateway", True), "gateway"):
                gateway += 1
        sources.update(t for t in probed if t in sources)
    return {
        "group": hosts,
        "probes": counts["ping"] + counts["smtp"],
        "ping": counts["ping"],
        "smtp": counts["smtp"],
        "gateway_pings": gateway,
        "min_sources": min(sources.values(), default=0),
        "max_sources": max(sources.values(), default=0),
        "plan_s": planned,
    }
