"""The benchmark's phases and its command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from fleet.plan import HostPlan
from tests.lab import control
from tests.lab.bench.figures import (
    Figures,
    machine,
    report,
    write_json,
)
from tests.lab.bench.labs import (
    BenchLab,
    bench_plans,
    bench_up,
    lab_session,
)
from tests.lab.bench.measure import (
    FORKS,
    Measured,
    _say,
    compile_bytecode,
    median_of,
)
from tests.lab.bench.robust import (
    inventory_parse_time,
    on_host_concurrency,
    stuck_runs,
)
from tests.lab.bench.tools import (
    ansible_installed,
    ansible_run,
    fleet_audit,
    floor_run,
    paramiko_run,
)
from tests.lab.bench.windows import winrm_cost


def run_bench(args: argparse.Namespace) -> Figures:
    """Every phase the options ask for; labs torn down whatever happens."""
    figures = Figures(machine=machine(), hosts=args.hosts, forks=args.forks)
    if not args.quick:
        _say("timing a 10,000-host inventory")
        figures.inventory_10k_load_s, figures.inventory_10k_s = inventory_parse_time()
    with lab_session():
        if not args.quick:
            _say("standard lab: WinRM cost per Windows host")
            figures.winrm = winrm_cost()
        _bench_phase(args, figures)
        if args.scale:
            _scale_phase(args.scale, figures)
    return figures


def _bench_phase(args: argparse.Namespace, figures: Figures) -> None:
    n, quick = args.hosts, args.quick
    silent = 0 if quick else max(1, n // 10)
    _say(f"bench lab: {n} hosts" + ("" if quick else f", {silent} silent, 2 stuck"))
    bench = bench_up(n, silent=silent, stuck=not quick)
    plans = bench_plans(bench.inventory_dir, "bench")
    names = [p.name for p in plans]
    # fleet and the floor take turns, so both meet the same moments of a noisy machine.
    fleets, floors, libraries = [], [], []
    for turn in range(1, args.repeat + 1):
        _say(f"fleet audit ({turn}/{args.repeat})")
        fleets.append(fleet_audit(bench, "bench", names)[0])
        _say(f"OpenSSH floor ({turn}/{args.repeat})")
        floors.append(floor_run(bench, plans, args.forks))
        _say(f"paramiko alone ({turn}/{args.repeat})")
        libraries.append(paramiko_run(bench, plans, args.forks))
    figures.tools += [median_of(fleets), median_of(floors), median_of(libraries)]
    if not quick:
        _ansible_phase(bench, plans, args.forks, figures)
        _say("fleet with 10% silent hosts")
        silent_names = [*names, *(h.name for h in bench.lab.hosts if "silent" in h.groups)]
        m, _ = fleet_audit(bench, "bench:silent", silent_names)
        # Silent hosts cannot return results: count the healthy ones.
        returned = m.returned + len(silent_names) - len(names)
        figures.silent = Measured(
            **{
                **asdict(m),
                "tool": "fleet, 10% silent",
                "returned": returned,
                "note": "silent hosts unreachable",
            }
        )
        _say("hung and silent hosts against the timeouts")
        figures.bounded = stuck_runs(bench, names)
    _say("probes side by side on one host")
    figures.on_host = on_host_concurrency(bench, plans[0])


def _ansible_phase(
    bench: BenchLab, plans: Sequence[HostPlan], forks: int, figures: Figures
) -> None:
    if not ansible_installed():
        figures.notes.append("ansible-playbook is not installed: its row is skipped")
        return
    _say("ansible-playbook")
    figures.tools.append(ansible_run(bench, plans, forks))
    figures.tools.append(ansible_run(bench, plans, forks, per_check=True))


def _scale_phase(n: int, figures: Figures) -> None:
    _say(f"scale: fleet over {n} hosts (peak memory)")
    bench = bench_up(n)
    names = [p.name for p in bench_plans(bench.inventory_dir, "bench")]
    m, _ = fleet_audit(bench, "bench", names, timeout=1800)
    figures.scale = Measured(**{**asdict(m), "tool": f"fleet at scale ({n})"})


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.lab.bench", description=sys.modules["tests.lab.bench"].__doc__
    )
    parser.add_argument("--hosts", type=int, default=200, help="bench hosts (200)")
    parser.add_argument("--forks", type=int, default=FORKS, help="for every tool (50)")
    parser.add_argument(
        "--quick", action="store_true", help="fleet and the floor only (no ansible, WinRM...)"
    )
    parser.add_argument(
        "--scale",
        type=int,
        nargs="?",
        const=1000,
        default=0,
        metavar="N",
        help="also audit N hosts (1000) for the peak-memory figure",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        metavar="R",
        help="run fleet and the floor R times each, taking turns; report medians (3)",
    )
    parser.add_argument("--out", type=Path, default=Path("reports/bench"), help="JSON goes here")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    control.require_root()
    compile_bytecode()
    figures = run_bench(args)
    print(report(figures))
    print(f"\nfigures: {write_json(figures, args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
