"""``python -m tests.lab up|down|status``: the lab from a shell."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tests.lab import control, topology
from tests.lab.netns import LabError


def _up(args: argparse.Namespace) -> int:
    topo = topology.bench(args.bench) if args.bench else topology.standard()
    lab = control.up(args.state_dir, lab_topology=topo)
    rows = [(h.name, h.address, h.namespace, h.kind.value, h.role) for h in lab.hosts[:40]]
    for row in rows:
        print("{:<14} {:<15} {:<20} {:<8} {}".format(*row))
    if len(lab.hosts) > len(rows):
        print(f"... and {len(lab.hosts) - len(rows)} more hosts")
    print(f"\ninventory: {lab.inventory}\nstate:     {lab.state_dir}")
    for note in lab.notes:
        print(f"note: {note}")
    return 0


def _down(args: argparse.Namespace) -> int:
    control.down()
    return 0


def _status(args: argparse.Namespace) -> int:
    print(json.dumps(control.status(), indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.lab", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="build the lab (tears down any previous one)")
    up.add_argument("--state-dir", type=Path, default=None)
    up.add_argument(
        "--bench", type=int, metavar="N", help="N SSH hosts instead of the standard lab"
    )
    up.set_defaults(run=_up)
    commands.add_parser("down", help="remove everything of any lab").set_defaults(run=_down)
    commands.add_parser("status", help="what is up now").set_defaults(run=_status)
    args = parser.parse_args(argv)
    try:
        return int(args.run(args))
    except LabError as exc:
        print(f"tests.lab: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
