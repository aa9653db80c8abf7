"""The ``fleet`` console script (and ``python -m fleet``); tasks.py calls the same functions.

Exit codes are ansible-playbook's, which ops already script against:
0 all ok, 2 some checks failed, 4 some hosts unreachable (wins over 2),
1 internal error, 5 bad options/inventory/playbook, 6 the report could not be
delivered (mail), 99 interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import math
import os
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, NoReturn

from fleet import __version__
from fleet.errors import ConfigError, FleetError

if TYPE_CHECKING:
    from fleet.deliver.history import Delta
    from fleet.deliver.mail import MailSettings
    from fleet.diagnose import Diagnosis
from fleet.model import RunResult
from fleet.plan import RunOptions, check_route_guards
from fleet.transports.base import check_transport_settings

EXIT_OK, EXIT_INTERNAL, EXIT_FAILED, EXIT_UNREACHABLE = 0, 1, 2, 4
EXIT_CONFIG, EXIT_DELIVERY, EXIT_INTERRUPTED = 5, 6, 99

DEFAULT_PLAYBOOK = "mail-connectivity"
DEFAULT_FORMATS = ("json", "csv", "html", "junit")


def project_dir(name: str) -> Path:
    """``inventories``/``playbooks``: in the working directory, else beside the package."""
    here = Path(name)
    if here.is_dir():
        return here
    bundled = Path(__file__).resolve().parent.parent / name
    return bundled if bundled.is_dir() else here


@dataclass
class AuditRequest:
    """Everything `fleet audit` / `invoke audit` needs; defaults are what ops get."""

    inventory: str = "local"
    playbook: str = DEFAULT_PLAYBOOK
    limit: str | None = None
    forks: int = 50
    connect_timeout: float = 10.0
    command_timeout: float = 120.0
    host_deadline: float = 180.0
    deadline: float | None = None
    host_key_checking: bool = True
    known_hosts: str | None = None
    report_dir: str = "reports"
    formats: Sequence[str] = field(default_factory=lambda: DEFAULT_FORMATS)
    quiet: bool = False
    colour: bool | None = None
    mail_to: Sequence[str] = ()
    history: bool = True


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    from fleet.runner import Interrupted

    raise Interrupted()


def audit(request: AuditRequest) -> int:
    """Run an audit, write the reports, print the table; return the exit code."""
    try:
        return _audit(request)
    finally:
        # _audit freezes what it built before contacting the hosts (modules, the
        # inventory, the plans: they live until the end, and the cycle collector's
        # full passes then skip them; one such pass cost ~30 ms on the 200-host
        # bench).  A caller in the same process gets its collector back.
        gc.unfreeze()


def _audit(request: AuditRequest) -> int:
    from fleet.inventory import load_inventory, resolve_inventory_source
    from fleet.playbook import build_plan, load_playbook, resolve_playbook
    from fleet.progress import progress_for
    from fleet.render.console import render_console
    from fleet.runner import run_audit

    inventory_path = resolve_inventory_source(request.inventory, project_dir("inventories"))
    inventory = load_inventory(inventory_path)
    playbook = load_playbook(resolve_playbook(request.playbook, project_dir("playbooks")))
    hosts = build_plan(playbook, inventory, request.limit)
    check_route_guards(hosts)
    if not hosts:
        chosen = "the playbook's hosts"
        if request.limit:
            chosen += f" and --limit {request.limit!r}"
        raise ConfigError(
            f"no hosts to audit: {chosen} match nothing in {inventory_path} "
            f"(see what it holds: fleet inventory -i {request.inventory} --list)"
        )
    mail = _mail_settings(request)  # checked before any host is contacted
    _check_report_dir(Path(request.report_dir), inventory_name(request.inventory))
    known_hosts = request.known_hosts
    if known_hosts:
        known_hosts = str(Path(known_hosts).expanduser().resolve())
        if not Path(known_hosts).is_file():
            raise ConfigError(f"--known-hosts {request.known_hosts}: no such file")
    options = RunOptions(
        forks=request.forks,
        connect_timeout=request.connect_timeout,
        command_timeout=request.command_timeout,
        host_deadline=request.host_deadline,
        run_deadline=request.deadline,
        host_key_checking=request.host_key_checking,
        known_hosts=known_hosts,
    )
    check_transport_settings(hosts, options)
    _raise_open_files_limit()
    observers = progress_for(len(hosts), request.quiet)
    gc.freeze()  # the inventory and the plans live until the end: never re-scanned
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        run = run_audit(
            hosts,
            options,
            inventory=inventory_name(request.inventory),
            playbook=str(playbook.path),
            observers=observers,
        )
    finally:
        signal.signal(signal.SIGTERM, previous)
        for observer in observers:
            observer.finish()
    # Reports first: a broken stdout or a failing relay must not cost them.
    delivered = deliver(run, request, mail)
    colour = sys.stdout.isatty() if request.colour is None else request.colour
    print(render_console(run, colour=colour))
    code = run.exit_code()
    if not delivered and code not in (EXIT_INTERRUPTED,):
        code = EXIT_DELIVERY
    return code


def _raise_open_files_limit() -> None:
    """Lift the soft limit on open files to the hard one: reach runs ahead of the logins,
    and at ``--forks 128`` its sockets plus the logins' pass the usual soft 1024."""
    try:
        import resource
    except ImportError:  # not a Unix control node
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 65536 if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < wanted:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def _mail_settings(request: AuditRequest) -> MailSettings | None:
    if not request.mail_to:
        return None
    from fleet.deliver.mail import MailSettings, check_mail_settings

    settings = MailSettings.from_env()
    check_mail_settings(settings, request.mail_to)
    return settings


def _check_report_dir(base: Path, inventory: str) -> None:
    """The report directory must be writable before any host is contacted."""
    target = base / inventory
    try:
        target.mkdir(parents=True, exist_ok=True)
        probe = target / f".fleet-write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(
            f"cannot write reports to {target}: {exc.strerror or exc}; choose another --report-dir"
        ) from exc


def inventory_name(source: str) -> str:
    """A short name for reports, history and mail: ``prod`` for inventories/prod,
    inventories/prod/hosts or prod.yml, so two fleets never share a history."""
    from fleet.deliver.history import inventory_label

    return inventory_label(source)


def deliver(run: RunResult, request: AuditRequest, mail: MailSettings | None) -> bool:
    """Write reports (always), record history, mail; False when the mail failed.

    Nothing gathered is lost: the reports are written before history or mail
    can fail, and a history failure is reported without stopping delivery.
    """
    from fleet.deliver.history import History, default_path
    from fleet.diagnose import diagnose

    diagnosis = diagnose(run)
    history = History(default_path(run, Path(request.report_dir))) if request.history else None
    delta = None
    if history is not None:
        try:
            delta = history.delta(run)
        except Exception as exc:  # noqa: BLE001 - the reports matter more than the history
            print(f"fleet: no comparison with the previous run: {exc}", file=sys.stderr)
    outdir = report_directory(Path(request.report_dir), run.inventory)
    files = write_run_reports(run, outdir, request.formats, diagnosis=diagnosis, delta=delta)
    for fmt, path in files.items():
        print(f"{fmt:>5} report: {path}", file=sys.stderr)
    if history is not None:
        try:
            history.record(run)
        except Exception as exc:  # noqa: BLE001 - as above: reported, never fatal
            print(f"fleet: run not recorded in the history: {exc}", file=sys.stderr)
    if mail is None:
        return True
    from fleet.deliver.mail import send_report

    try:
        send_report(run, diagnosis, files, list(request.mail_to), mail, delta)
    except FleetError as exc:
        print(f"fleet: report NOT mailed: {exc}", file=sys.stderr)
        return False
    print(f"report mailed to {', '.join(request.mail_to)}", file=sys.stderr)
    return True


def report_directory(base: Path, inventory: str) -> Path:
    """``reports/<inventory>/<timestamp>/``, with ``reports/<inventory>/latest`` pointing at it."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    parent = base / inventory
    outdir = parent / stamp
    suffix = 1
    while outdir.exists():
        suffix += 1
        outdir = parent / f"{stamp}-{suffix}"
    outdir.mkdir(parents=True)
    latest = parent / "latest"
    tmp = parent / f".latest-{os.getpid()}"
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(outdir.name)
    tmp.replace(latest)  # atomic: a reader never sees no "latest"
    return outdir


def write_run_reports(
    run: RunResult,
    outdir: Path,
    formats: Sequence[str],
    *,
    diagnosis: Diagnosis | None = None,
    delta: Delta | None = None,
) -> dict[str, Path]:
    """JSON always (the source every renderer re-runs from), then the other formats."""
    from fleet.render import write_reports

    return write_reports(
        run,
        outdir,
        ["json", *(f for f in formats if f != "json")],
        diagnosis=diagnosis,
        delta=delta,
    )


# -- argument parsing ------------------------------------------------------


def _positive(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not math.isfinite(number) or number <= 0:
        raise argparse.ArgumentTypeError(f"{value!r} is not a positive number of seconds")
    return number


def _forks(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number >= 1")
    return int(value)


def _formats(value: str) -> list[str]:
    from fleet.render import parse_formats

    try:
        return list(parse_formats(value))
    except (ValueError, ConfigError) as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


class _Parser(argparse.ArgumentParser):
    """Bad options exit 5 (as bad inventories do), with argparse's one-line reason."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_CONFIG, f"fleet: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="fleet",
        description="Audit the network health of mail servers (KB Q128961, done remotely).",
    )
    parser.add_argument("--version", action="version", version=f"fleet {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)  # subparsers are _Parser too

    a = sub.add_parser("audit", help="audit the hosts of an inventory")
    a.add_argument("-i", "--inventory", default="local", help="inventories/NAME or a path")
    a.add_argument("-p", "--playbook", default=DEFAULT_PLAYBOOK, help="playbooks/NAME or a path")
    a.add_argument("-l", "--limit", help="Ansible host pattern, e.g. 'mail:!mx-old*'")
    a.add_argument("-f", "--forks", type=_forks, default=50, help="hosts audited at once (50)")
    a.add_argument("--connect-timeout", type=_positive, default=10.0, help="seconds (10)")
    a.add_argument(
        "--command-timeout", type=_positive, default=120.0, help="deadline per host command (120)"
    )
    a.add_argument("--host-deadline", type=_positive, default=180.0, help="per host (180)")
    a.add_argument("--deadline", type=_positive, help="end the whole run after this many seconds")
    a.add_argument(
        "--no-host-key-checking",
        dest="host_key_checking",
        action="store_false",
        help="accept unknown/changed SSH host keys (like ANSIBLE_HOST_KEY_CHECKING=False)",
    )
    a.add_argument("--known-hosts", help="an extra known_hosts file")
    a.add_argument("--report-dir", default="reports", help="where reports go (reports/)")
    a.add_argument(
        "--format",
        dest="formats",
        type=_formats,
        default=list(DEFAULT_FORMATS),
        help="report formats besides json: csv,html,junit (all)",
    )
    a.add_argument("--mail-to", action="append", default=[], help="mail the report (repeatable)")
    a.add_argument("--no-history", dest="history", action="store_false")
    a.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    a.add_argument("--no-colour", dest="colour", action="store_false", default=None)

    inv = sub.add_parser("inventory", help="show the inventory as fleet reads it")
    inv.add_argument("-i", "--inventory", default="local")
    inv.add_argument("--list", action="store_true", required=True, help="ansible-inventory JSON")
    inv.add_argument("-l", "--limit")

    r = sub.add_parser("report", help="re-render reports from a saved report.json")
    r.add_argument("result", type=Path)
    r.add_argument("--format", dest="formats", type=_formats, default=["html", "csv", "junit"])
    r.add_argument("-o", "--output", type=Path, help="directory (default: beside the JSON)")

    d = sub.add_parser("diff", help="what changed between two saved runs")
    d.add_argument("before", type=Path)
    d.add_argument("after", type=Path)

    return parser


def _inventory_list(args: argparse.Namespace) -> int:
    from fleet.inventory import load_inventory, resolve_inventory_source
    from fleet.plan import is_secret

    inventory = load_inventory(resolve_inventory_source(args.inventory, project_dir("inventories")))
    data = inventory.to_ansible_list(limit=args.limit)
    if not os.environ.get("FLEET_SHOW_SECRETS"):
        for hostvars in data.get("_meta", {}).get("hostvars", {}).values():
            for key in [k for k in hostvars if is_secret(k)]:
                hostvars[key] = "********"
    print(json.dumps(data, indent=4, sort_keys=True))
    return EXIT_OK


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "audit":
        fields = AuditRequest.__dataclass_fields__
        request = AuditRequest(
            **{k: v for k, v in vars(args).items() if k in fields and k != "deadline"},
            deadline=args.deadline,
        )
        return audit(request)
    if args.command == "inventory":
        return _inventory_list(args)
    if args.command == "report":
        from fleet.render import report_command

        return report_command(args.result, args.formats, args.output)
    if args.command == "diff":
        from fleet.deliver.history import diff_command

        return diff_command(args.before, args.after)
    raise AssertionError(f"unknown command {args.command!r}")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _dispatch(args)
    except ConfigError as exc:
        print(f"fleet: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        print("fleet: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except FleetError as exc:
        print(f"fleet: {exc}", file=sys.stderr)
        return EXIT_INTERNAL
    except OSError as exc:  # e.g. the report directory cannot be written
        where = f" {exc.filename}" if exc.filename else ""
        print(f"fleet: {exc.strerror or exc}:{where}", file=sys.stderr)
        return EXIT_INTERNAL
    except Exception as exc:
        if os.environ.get("FLEET_DEBUG"):
            raise
        print(
            f"fleet: internal error: {type(exc).__name__}: {exc} (FLEET_DEBUG=1 shows where)",
            file=sys.stderr,
        )
        return EXIT_INTERNAL
