"""The ``fleet`` console script (and ``python -m fleet``): argparse -> request -> fleet.app.

``fleet audit`` is built from fleet.app's table of audit options, as ``invoke audit``
is; ``main`` turns errors into ansible-playbook's exit codes (see fleet.app).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from fleet import __version__, app
from fleet.app import (
    EXIT_CONFIG,
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_MERGE,
    EXIT_OK,
    AuditOption,
)
from fleet.errors import ConfigError, FleetError, MergeError
from fleet.text import clean

if TYPE_CHECKING:
    from fleet.model import RunResult
    from fleet.plan import HostPlan

# What each subcommand and its arguments are for, in the words that both `fleet --help`
# and `invoke --list` / `invoke --help NAME` show: tasks.py reads this table too.
COMMANDS: dict[str, str] = {
    "audit": "audit the mail servers of an inventory and write the reports",
    "inventory": "show the inventory as fleet reads it (ansible-inventory's JSON)",
    "report": "re-render the reports of a saved run from its report.json",
    "diff": "what is new, resolved and still open between two saved runs",
    "config": "the Ansible settings fleet uses, and where each comes from",
    "merge": "merge the reports of an audit's shards (--shard K/N) into one: reports, "
    "history, mail",
    "worker": "audit the hosts of one zone for fleet audit --dispatch (a Celery worker)",
}
ARGUMENTS: dict[str, dict[str, str]] = {
    "inventory": {
        "list": "print every host and group with its variables (secrets masked)",
    },
    "report": {
        "result": "the report.json of a saved run",
        "formats": "report formats to write, comma-separated (default: html,csv,junit)",
        "output": "directory to write them to (default: beside the JSON)",
    },
    "diff": {
        "before": "the earlier run's report.json",
        "after": "the later run's report.json",
    },
    "worker": {
        "zone": "the zone (fleet_zone) whose queue, fleet.ZONE, this worker consumes",
        "concurrency": "zone tasks run at once (1)",
    },
    "merge": {
        "parts": "each shard's report.json, or directories holding them (a report directory: "
        "the run its latest link points at)",
    },
}


def _typed(option: AuditOption) -> Callable[[str], Any]:
    """The option's reader as argparse wants it: a bad value is an ArgumentTypeError."""

    def read(text: str) -> Any:
        try:
            return option.read(text)
        except (ConfigError, ValueError) as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return read


def _add_audit_option(parser: argparse.ArgumentParser, option: AuditOption) -> None:
    # Options not given stay out of the namespace: the request's defaults apply.
    common: dict[str, Any] = {
        "dest": option.field,
        "help": option.help,
        "default": argparse.SUPPRESS,
    }
    if option.switch is not None:
        parser.add_argument(*option.flags, action="store_const", const=option.switch, **common)
    else:
        action = "append" if option.repeat else "store"
        parser.add_argument(*option.flags, type=_typed(option), action=action, **common)


class _Parser(argparse.ArgumentParser):
    """Bad options exit 5 (as bad inventories do), with argparse's one-line reason."""

    def error(self, message: str) -> NoReturn:
        # One line, no usage block: what is wrong and where to read how it goes.
        self.exit(EXIT_CONFIG, f"{self.prog}: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="fleet",
        description="Audit the network health of mail servers (KB Q128961, done remotely).",
    )
    parser.add_argument("--version", action="version", version=f"fleet {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)  # subparsers are _Parser too

    a = sub.add_parser("audit", help=COMMANDS["audit"], description=COMMANDS["audit"])
    for option in app.AUDIT_OPTIONS:
        _add_audit_option(a, option)

    said = ARGUMENTS["inventory"]
    inv = sub.add_parser("inventory", help=COMMANDS["inventory"], description=COMMANDS["inventory"])
    for field in _INVENTORY_FIELDS:
        _add_audit_option(inv, app.audit_option(field))
    inv.add_argument("--list", action="store_true", required=True, help=said["list"])

    sub.add_parser("config", help=COMMANDS["config"], description=COMMANDS["config"])

    said = ARGUMENTS["report"]
    r = sub.add_parser("report", help=COMMANDS["report"], description=COMMANDS["report"])
    r.add_argument("result", type=Path, help=said["result"])
    formats = _typed(app.audit_option("formats"))
    r.add_argument(
        "--format",
        dest="formats",
        type=formats,
        default=["html", "csv", "junit"],
        help=said["formats"],
    )
    r.add_argument("-o", "--output", type=Path, help=said["output"])

    said = ARGUMENTS["diff"]
    d = sub.add_parser("diff", help=COMMANDS["diff"], description=COMMANDS["diff"])
    d.add_argument("before", type=Path, help=said["before"])
    d.add_argument("after", type=Path, help=said["after"])

    said = ARGUMENTS["merge"]
    m = sub.add_parser("merge", help=COMMANDS["merge"], description=COMMANDS["merge"])
    m.add_argument("parts", type=Path, nargs="+", help=said["parts"])
    for field in app.MERGE_FIELDS:
        _add_audit_option(m, app.audit_option(field))

    said = ARGUMENTS["worker"]
    w = sub.add_parser("worker", help=COMMANDS["worker"], description=COMMANDS["worker"])
    w.add_argument("--zone", required=True, help=said["zone"])
    concurrency = _typed(app.audit_option("forks"))
    w.add_argument("--concurrency", type=concurrency, default=1, help=said["concurrency"])
    for field in _WORKER_FIELDS:
        _add_audit_option(w, app.audit_option(field))

    return parser


# What a worker takes from its own command line: where its copy of the fleet is and the
# secrets to read it (the coordinator's tasks set timings only, fleet.dispatch.zones).
_WORKER_FIELDS = (
    "inventory",
    "playbook",
    "vault_ids",
    "vault_password_files",
    "remote_user",
    "private_key_file",
    "known_hosts",
    "host_key_checking",
)
_INVENTORY_FIELDS = (
    "inventory",
    "limit",
    "vault_ids",
    "vault_password_files",
    "ask_vault_pass",
    "group_names",
)


def _given(args: argparse.Namespace, fields: Sequence[str]) -> dict[str, Any]:
    return {field: getattr(args, field) for field in fields if field in args}


def _inventory_list(args: argparse.Namespace) -> int:
    from fleet.inventory import load_inventory
    from fleet.plan import masked

    request = app.audit_request(_given(args, _INVENTORY_FIELDS))
    inventory = load_inventory(
        app.find_inventory(request.inventory),
        group_names=request.group_names,
        secrets=app.vault_secrets_for(request),
    )
    data = inventory.to_ansible_list(limit=request.limit)
    if not os.environ.get("FLEET_SHOW_SECRETS"):
        data = masked(data)
    print(json.dumps(data, indent=4, sort_keys=True))
    return EXIT_OK


def _config_view() -> int:
    from fleet.ansiblecfg import KNOWN, load_config

    config = load_config()
    print(f"ansible.cfg: {config.path or 'none found'}")
    for warning in config.warnings:
        print(f"warning: {warning}")
    for known in KNOWN:
        setting = config.settings.get(known.name)
        shown = f"{setting.value}  ({setting.origin})" if setting else "(not set)"
        print(f"{known.name:<24} {shown}")
    print(_ssh_view(config.get("ssh_args")))
    return EXIT_OK


def _worker(args: argparse.Namespace) -> int:
    from fleet.dispatch.celeryq import serve
    from fleet.dispatch.worker import ZoneWorker
    from fleet.dispatch.zones import queue_name, zone_of
    from fleet.plan import HostPlan

    zone_of(HostPlan(f"--zone {args.zone}", "ssh", "", None, None, {"fleet_zone": args.zone}))
    base = app.audit_request(_given(args, _WORKER_FIELDS))
    base = replace(base, quiet=True, history=False, mail_to=(), formats=("json",), dispatch=False)
    worker = ZoneWorker(
        args.zone,
        app.find_inventory(base.inventory),
        app.find_playbook(base.playbook),
        partial(_zone_audit, base),
    )
    print(f"fleet worker: zone {args.zone}, queue {queue_name(args.zone)}", file=sys.stderr)
    return serve(args.zone, args.concurrency, worker)


def _zone_audit(
    base: app.AuditRequest,
    overrides: Mapping[str, Any],
    check: Callable[[Sequence[HostPlan]], None],
) -> RunResult:
    """A zone task's audit by the application's own path: prepare, check the plan, run."""
    with tempfile.TemporaryDirectory(prefix="fleet-zone-") as reports:
        request = replace(base, report_dir=reports, **overrides)
        prepared = app.prepare(request)
        check(prepared.hosts)
        return app._run(prepared, request, ())


def _ssh_view(ssh_args: str | None) -> str:
    """What fleet takes from ssh's own settings: the ssh_config file, and what of ssh_args
    it does not honour (shown, never dropped silently)."""
    from pathlib import Path

    from fleet.transports.sshconfig import USER_CONFIG, SshOptions, apply_args

    found = Path(USER_CONFIG).expanduser().is_file()
    lines = [f"{'ssh_config':<24} {USER_CONFIG} ({'read' if found else 'none found'})"]
    if ssh_args:
        try:
            ignored = apply_args(SshOptions(), ssh_args, "ssh_args")[0].ignored
        except ConfigError as exc:
            ignored = (str(exc),)
        if ignored:
            shown = ", ".join(item.removesuffix(" (ssh_args)") for item in ignored)
            lines.append(f"{'ssh_args ignored':<24} {shown}")
    return "\n".join(lines)


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "audit":
        given = {o.field: getattr(args, o.field) for o in app.AUDIT_OPTIONS if o.field in args}
        return app.audit(app.audit_request(given))
    if args.command == "inventory":
        return _inventory_list(args)
    if args.command == "config":
        return _config_view()
    if args.command == "report":
        from fleet.render import report_command

        return report_command(args.result, args.formats, args.output)
    if args.command == "merge":
        return app.merge_reports(args.parts, app.audit_request(_given(args, app.MERGE_FIELDS)))
    if args.command == "diff":
        from fleet.deliver.history import diff_command

        return diff_command(args.before, args.after)
    if args.command == "worker":
        return _worker(args)
    raise AssertionError(f"unknown command {args.command!r}")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return exit_code(lambda: _dispatch(args))


def exit_code(command: Callable[[], int]) -> int:
    """Run a command (fleet's or invoke's); its errors as exit codes, each said in one line."""
    try:
        return command()
    except ConfigError as exc:
        print(f"fleet: {clean(exc)}", file=sys.stderr)
        return EXIT_CONFIG
    except MergeError as exc:
        print(f"fleet: {clean(exc)}", file=sys.stderr)
        return EXIT_MERGE
    except KeyboardInterrupt:
        print("fleet: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except FleetError as exc:
        print(f"fleet: {clean(exc)}", file=sys.stderr)
        return EXIT_INTERNAL
    except OSError as exc:  # e.g. the report directory cannot be written
        where = f" {exc.filename}" if exc.filename else ""
        print(clean(f"fleet: {exc.strerror or exc}:{where}"), file=sys.stderr)
        return EXIT_INTERNAL
    except Exception as exc:
        if os.environ.get("FLEET_DEBUG"):
            raise
        print(
            clean(
                f"fleet: internal error: {type(exc).__name__}: {exc} (FLEET_DEBUG=1 shows where)"
            ),
            file=sys.stderr,
        )
        return EXIT_INTERNAL
