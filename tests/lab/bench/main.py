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
    probe_count,
    stuck_runs,
)
from tests.lab.bench.tools import (
    ansible_installed,
    ansible_run,
    fleet_audit,
    floor_run,
    paramiko_run,
)
from tests.lab.bench.windows import windows_phase, winrm_cost

# Wall time a host costs at scale on the 2-core machine (1,000 hosts: 54 s), for the
# progress line; and what --all runs.
SCALE_WALL_S_PER_HOST = 0.055
ALL_SCALES = "1000,10000"
PROBE_GROUP = 1000


def run_bench(args: argparse.Namespace) -> Figures:
    """Every phase the options ask for; labs torn down whatever happens."""
    figures = Figures(machine=machine(), hosts=args.hosts, forks=args.forks)
    windows = getattr(args, "windows", 0)
    if not args.quick:
        _say("timing a 10,000-host inventory")
        figures.inventory_10k_load_s, figures.inventory_10k_s = inventory_parse_time()
        _say(f"the default plan's probes for a {PROBE_GROUP:,}-host mail group")
        figures.probes = probe_count(PROBE_GROUP)
    with lab_session():
        if not args.quick:
            _say("standard lab: WinRM cost per Windows host")
            figures.winrm = winrm_cost()
        bench = _bench_phase(args, figures, windows)
        if windows:
            spy = args.out if getattr(args, "profile", True) else None
            figures.windows = windows_phase(bench, args.forks, args.repeat, profile_dir=spy)
        for n in scales(args.scale):
            _scale_phase(n, figures)
    return figures


def scales(given: int | str | Sequence[int]) -> list[int]:
    """``--scale`` as host counts: 1000, "1000,10000", or none (0)."""
    if isinstance(given, int):
        return [given] if given else []
    if isinstance(given, str):
        return [int(n) for n in given.replace("_", "").split(",") if n.strip() and int(n)]
    return [n for n in given if n]


def _bench_phase(args: argparse.Namespace, figures: Figures, windows: int = 0) -> BenchLab:
    n, quick = args.hosts, args.quick
    silent = 0 if quick else max(1, n // 10)
    _say(
        f"bench lab: {n} hosts"
        + ("" if quick else f", {silent} silent, 2 stuck")
        + (f", {windows} Windows" if windows else "")
    )
    bench = bench_up(n, silent=silent, stuck=not quick, windows=windows)
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
    return bench


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
    _say(f"scale: fleet over {n} hosts (peak memory; ~{n * SCALE_WALL_S_PER_HOST / 60:.0f} min)")
    bench = bench_up(n)
    names = [p.name for p in bench_plans(bench.inventory_dir, "bench")]
    # A stuck run still ends: 0.3 s a host is five times the measured pace.
    m, _ = fleet_audit(bench, "bench", names, timeout=max(1800.0, 0.3 * n))
    figures.add_scale(Measured(**{**asdict(m), "tool": f"fleet at scale ({n})"}))


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
        nargs="?",
        const="1000",
        default="0",
        metavar="N[,M]",
        help="also audit N hosts (1000; e.g. 1000,10000) for the memory and CPU-per-host figures",
    )
    parser.add_argument(
        "--windows",
        type=int,
        nargs="?",
        const=200,
        default=0,
        metavar="W",
        help="also W simulated Windows hosts (200) over WinRM, 50 per simulator process",
    )
    parser.add_argument(
        "--no-profile",
        dest="profile",
        action="store_false",
        help="with --windows: no py-spy profile of fleet's WinRM client",
    )
    parser.add_argument(
        "--all",
        action="store_true",
        help="everything: the default run, --scale 1000,10000 and --windows 200",
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
    if args.all:
        args.quick, args.windows = False, args.windows or 200
        args.scale = args.scale if scales(args.scale) else ALL_SCALES
    try:
        scales(args.scale)
    except ValueError:
        parser.error(f"--scale takes host counts such as 1000 or 1000,10000, not {args.scale!r}")
    control.require_root()
    compile_bytecode()
    figures = run_bench(args)
    print(report(figures))
    print(f"\nfigures: {write_json(figures, args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
