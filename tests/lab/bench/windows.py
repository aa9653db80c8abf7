"""WinRM: the standard lab's cost per Windows host, and the Windows hosts at scale."""

from __future__ import annotations

import json
import sys
import tempfile
import urllib.request
from typing import Any

from tests.lab import control, topology
from tests.lab.bench.measure import (
    run_measured,
)


def winrm_cost() -> list[dict[str, Any]]:
    """Audit the standard lab's Windows hosts; per host what its WS-Management server counted."""
    lab = control.up()
    windows = [h for h in lab.hosts if h.kind is topology.Kind.WINDOWS]
    before = {h.name: _wsman_stats(h.address) for h in windows}
    argv = [sys.executable, "-m", "fleet", "audit", "-i", str(lab.inventory.parent)]
    with tempfile.TemporaryDirectory(prefix="fleet-bench-") as reports:
        argv += ["-l", "windows", "-q", "--report-dir", reports]
        cost = run_measured(argv, timeout=300)
    runner = lab.topology.bridge_address
    rows = []
    for host in windows:
        after = _wsman_stats(host.address).get(runner, {})
        was = before[host.name].get(runner, {})
        counts = {k: after.get(k, 0) - was.get(k, 0) for k in ("requests", "shells", "commands")}
        rows.append({"host": host.name, "role": host.role, **counts})
    rows.append({"host": "(audit wall time)", "role": f"{cost.wall_s:.1f} s"})
    return rows


def _wsman_stats(address: str) -> dict[str, dict[str, int]]:
    with urllib.request.urlopen(f"http://{address}:5985/stats", timeout=5) as reply:
        return dict(json.loads(reply.read()))
