"""The application: run an audit from a request (plan, run, write, deliver) -> exit code.

(Over 500 lines: the audit's one path, from request to exit code, with its signal and
process tuning; the merge and the zones reuse it rather than copy it.)

The ``fleet`` console script and ``invoke audit`` (tasks.py) both build an
:class:`AuditRequest` from :data:`AUDIT_OPTIONS`, the one table of audit options
their parsers are made from (fleet.app.request), and call :func:`audit`.

Exit codes are ansible-playbook's, which ops already script against:
0 all ok, 2 some checks failed, 4 some hosts unreachable (wins over 2),
1 internal error, 5 bad options/inventory/playbook, 6 the reports could not all
be written or mailed, 7 ``fleet merge`` refused its parts, 99 interrupted (SIGTERM
or Ctrl-C, at any point).
"""

from __future__ import annotations

import contextlib
import gc
import os
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from fleet.app.request import (
    AUDIT_OPTIONS,
    DEFAULT_FORMATS,
    DEFAULT_PLAYBOOK,
    MERGE_FIELDS,
    AuditOption,
    AuditRequest,
    audit_option,
    audit_request,
    request_from_text,
    vault_secrets_for,
    with_login_defaults,
)
from fleet.errors import ConfigError, FleetError, InventoryError, PlaybookError

if TYPE_CHECKING:
    from fleet.changes import Delta
    from fleet.deliver.mail import MailSettings
    from fleet.diagnose import Diagnosis
    from fleet.playbook import Playbook
from fleet.model import RunResult, Selection
from fleet.plan import HostPlan, RunOptions, check_route_guards
from fleet.transports.base import AuditContext, check_transport_settings

__all__ = [
    "AUDIT_OPTIONS",
    "DEFAULT_FORMATS",
    "DEFAULT_PLAYBOOK",
    "MERGE_FIELDS",
    "AuditOption",
    "AuditRequest",
    "audit",
    "audit_option",
    "audit_request",
    "find_inventory",
    "find_playbook",
    "request_from_text",
    "vault_secrets_for",
    "with_login_defaults",
]

EXIT_OK, EXIT_INTERNAL, EXIT_FAILED, EXIT_UNREACHABLE = 0, 1, 2, 4
EXIT_CONFIG, EXIT_DELIVERY, EXIT_MERGE, EXIT_INTERRUPTED = 5, 6, 7, 99

# -- where inventories and playbooks are found -----------------------------


def bundled(kind: str) -> Path:
    """The product's own ``inventories`` or ``playbooks``, installed with the package."""
    from importlib import resources

    return Path(str(resources.files("fleet") / "bundled" / kind))


def find_inventory(source: str) -> Path:
    """A path, or ``inventories/NAME`` here, else the bundled inventory NAME."""
    from fleet.inventory import resolve_inventory_source

    try:
        return resolve_inventory_source(source, Path("inventories"))
    except InventoryError:
        shipped = _shipped("inventories", source, ("",))
        if shipped is None:
            raise
        return shipped


def find_playbook(name: str) -> Path:
    """A path, or ``playbooks/NAME[.yml]`` here, else the bundled playbook NAME."""
    from fleet.playbook import resolve_playbook

    try:
        return resolve_playbook(name, Path("playbooks"))
    except PlaybookError:
        shipped = _shipped("playbooks", name, ("", ".yml", ".yaml"))
        if shipped is None:
            raise
        return shipped


def _shipped(kind: str, name: str, suffixes: Sequence[str]) -> Path | None:
    """The bundled file of that plain name (never a path out of the bundle), if any."""
    if not name or Path(name).name != name or name.startswith("."):
        return None
    found = (bundled(kind) / f"{name}{suffix}" for suffix in suffixes)
    return next((path for path in found if path.is_file()), None)


# -- the audit -------------------------------------------------------------


@dataclass(frozen=True)
class _Prepared:
    """What an audit found good before contacting any host."""

    playbook: Playbook
    hosts: list[HostPlan]
    options: RunOptions
    mail: MailSettings | None
    context: AuditContext  # the key files and known_hosts read once for the whole audit
    selection: Selection  # what the run covers, recorded in it (fleet.app.shard)


def audit(request: AuditRequest) -> int:
    """Run an audit, write the reports, deliver them, print the table; the exit code.

    Bad options, inventory or playbook raise ConfigError before any host is contacted.
    SIGTERM, like Ctrl-C, stops any phase with exit 99 and keeps what finished.
    """
    from fleet.progress import progress_for

    interrupts = Interrupts()
    with interrupts.installed():
        prepared = prepare(request)
        if request.verbose:  # what of ssh's settings fleet does not honour, not silently
            from fleet.transports.sshconfig import ignored_lines

            for line in ignored_lines(prepared.hosts):
                print(line, file=sys.stderr)
        observers = progress_for(len(prepared.hosts), request.quiet)
        with tuned_for_the_audit():
            run = (_dispatched if request.dispatch else _run)(prepared, request, observers)
            # One history entry per audit: the merge's, compared with the previous
            # whole run (a shard recorded there would be the merge's "previous run").
            kept = replace(request, history=False) if request.shard else request
            return report(run, kept, prepared.mail, interrupts)


def report(
    run: RunResult, request: AuditRequest, mail: MailSettings | None, interrupts: Interrupts
) -> int:
    """Diagnose the run, write and deliver its reports, print the table; the exit code
    (of an audit, or of ``fleet merge``)."""
    from fleet.diagnose import diagnose
    from fleet.render.console import render_console, terminal

    # Reports first: a broken stdout or a failing relay must not cost them; and
    # the table whatever the disk and the relay do.
    # One diagnosis for every report, the mail and the terminal.
    diagnosis = diagnose(run)
    delivered = deliver(run, request, mail, interrupts, diagnosis)
    colour, width = terminal(sys.stdout, request.colour)
    print(
        render_console(
            run, colour=colour, verbose=request.verbose, width=width, diagnosis=diagnosis
        )
    )
    if run.interrupted or interrupts.pending:
        return EXIT_INTERRUPTED
    return run.exit_code() if delivered else EXIT_DELIVERY


class Interrupts:
    """SIGTERM and Ctrl-C for a whole audit, from loading the inventory to the mail:
    each raises ``Interrupted`` in the main thread (the runner keeps what finished;
    elsewhere it ends the audit with exit 99).  While ``held()`` (the reports being
    written) a signal is only noted in ``pending``, so what finished is written."""

    def __init__(self) -> None:
        self.pending = False
        self._held = False

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        if self._held:
            self.pending = True
            return
        from fleet.runner import Interrupted

        raise Interrupted()

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        self._held = True
        try:
            yield
        finally:
            self._held = False

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        """The handlers for the block, then the caller's back (a signal handler can only
        be set from the main thread: elsewhere, the caller's stay)."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        signals = (signal.SIGTERM, signal.SIGINT)
        previous = [signal.signal(signum, self) for signum in signals]
        try:
            yield
        finally:
            for signum, handler in zip(signals, previous, strict=True):
                signal.signal(signum, handler)


def merge_reports(sources: Sequence[Path], request: AuditRequest) -> int:
    """``fleet merge A.json B.json ...`` (or directories of shard reports): one set of
    reports, one history entry and one mail, as ``fleet audit`` would; the audit's exit
    code.  Unreadable parts raise ConfigError (exit 5); parts that do not make one
    audit, MergeError (exit 7)."""
    from fleet.app.merge import load_parts, merge_runs

    run = merge_runs(load_parts(sources))
    mail = mail_settings(request)
    check_report_dir(Path(request.report_dir), run.inventory)
    interrupts = Interrupts()
    with interrupts.installed():
        return report(run, request, mail, interrupts)


def prepare(request: AuditRequest) -> _Prepared:
    """Everything that can be wrong before the audit, found before any host is contacted."""
    from fleet.inventory import load_inventory
    from fleet.playbook import build_plan, load_playbook

    inventory_path = find_inventory(request.inventory)
    secrets = vault_secrets_for(request)
    inventory = load_inventory(inventory_path, group_names=request.group_names, secrets=secrets)
    playbook = load_playbook(find_playbook(request.playbook))
    hosts = with_login_defaults(build_plan(playbook, inventory, request.limit), request)
    if not request.dispatch:  # a coordinator contacts no host: each zone's worker checks
        check_route_guards(hosts)
    if not hosts:
        chosen = "the playbook's hosts"
        if request.limit:
            chosen += f" and --limit {request.limit!r}"
        raise ConfigError(
            f"no hosts to audit: {chosen} match nothing in {inventory_path} "
            f"(see what it holds: fleet inventory -i {request.inventory} --list)"
        )
    hosts, selection = _sharded(hosts, playbook.path, request)
    mail = mail_settings(request)
    check_report_dir(Path(request.report_dir), inventory_name(request.inventory))
    options = RunOptions(
        forks=request.forks,
        connect_timeout=request.connect_timeout,
        command_timeout=request.command_timeout,
        host_deadline=request.host_deadline,
        run_deadline=request.deadline,
        host_key_checking=request.host_key_checking,
        known_hosts=_known_hosts(request.known_hosts),
    )
    context = AuditContext() if request.dispatch else check_transport_settings(hosts, options)
    return _Prepared(playbook, hosts, options, mail, context, selection)


def _sharded(
    hosts: list[HostPlan], playbook: Path, request: AuditRequest
) -> tuple[list[HostPlan], Selection]:
    """The hosts this run audits (its shard's, with ``--shard``) and what it covers."""
    from fleet.app.shard import resolve_shard, selection_of, shard_hosts

    if request.shard is None:
        return hosts, selection_of(hosts, playbook)
    if request.dispatch:
        raise ConfigError(
            "--shard with --dispatch: the zones' workers already split the run; drop one of them"
        )
    if request.mail_to:
        raise ConfigError(
            "--mail-to with --shard: a shard does not mail its part; "
            "mail the whole report from fleet merge --mail-to"
        )
    shard, source = resolve_shard(request.shard)
    part = shard_hosts(hosts, shard)
    print(
        f"fleet: shard {shard} (from {source}): {len(part)} of {len(hosts)} selected hosts",
        file=sys.stderr,
    )
    return part, selection_of(hosts, playbook, shard)


def _run(prepared: _Prepared, request: AuditRequest, observers: Sequence[Any]) -> RunResult:
    from fleet import runner

    try:
        run = runner.run_audit(
            prepared.hosts,
            prepared.options,
            inventory=inventory_name(request.inventory),
            playbook=str(prepared.playbook.path),
            observers=observers,
            context=prepared.context,
        )
        return replace(run, selection=prepared.selection)
    finally:
        for observer in observers:
            observer.finish()


def _dispatched(prepared: _Prepared, request: AuditRequest, observers: Sequence[Any]) -> RunResult:
    """The zones' runs by their workers (fleet.dispatch), merged into one run."""
    from fleet.dispatch import dispatched_runs

    try:
        parts = dispatched_runs(
            prepared.hosts,
            request,
            inventory=find_inventory(request.inventory),
            playbook=prepared.playbook.path,
            label=inventory_name(request.inventory),
            selection=prepared.selection,
            observers=observers,
        )
    finally:
        for observer in observers:
            observer.finish()
    from fleet.app.merge import merge_runs

    return merge_runs(parts)


@contextlib.contextmanager
def tuned_for_the_audit() -> Iterator[None]:
    """Process-wide tuning for the run, undone after it (a caller in the same process,
    such as invoke or a test, gets its process back)."""
    with _open_files_lifted():
        # What was built before the hosts (modules, inventory, plans) lives to the end:
        # frozen, the cycle collector's full passes skip it.
        gc.freeze()
        try:
            yield
        finally:
            gc.unfreeze()


@contextlib.contextmanager
def _open_files_lifted() -> Iterator[None]:
    """The soft limit on open files lifted to the hard one: reach runs ahead of the
    logins, and at ``--forks 128`` its sockets plus the logins' pass the usual 1024."""
    try:
        import resource
    except ImportError:  # not a Unix control node
        yield
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 65536 if hard == resource.RLIM_INFINITY else hard
    lifted = False
    if soft != resource.RLIM_INFINITY and soft < wanted:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            lifted = True
    try:
        yield
    finally:
        if lifted:
            with contextlib.suppress(ValueError, OSError):
                resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def _known_hosts(given: str | None) -> str | None:
    if not given:
        return given
    path = Path(given).expanduser().resolve()
    if not path.is_file():
        raise ConfigError(f"--known-hosts {given}: no such file")
    return str(path)


def mail_settings(request: AuditRequest) -> MailSettings | None:
    if not request.mail_to:
        return None
    from fleet.deliver.mail import MailSettings, check_mail_settings

    settings = MailSettings.from_env()
    check_mail_settings(settings, request.mail_to)
    return settings


def check_report_dir(base: Path, inventory: str) -> None:
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
    from fleet.changes import inventory_label

    return inventory_label(source)


# -- delivery --------------------------------------------------------------


def deliver(
    run: RunResult,
    request: AuditRequest,
    mail: MailSettings | None,
    interrupts: Interrupts | None = None,
    diagnosis: Diagnosis | None = None,
) -> bool:
    """Write reports, record history, mail; False when the reports or the mail failed.

    Nothing gathered is lost: the reports are written before history or mail can
    fail, a history or disk failure is reported without stopping delivery (the mail
    carries the report whatever the disk did), and an interrupt while the reports are
    written waits for them (it only stops the mail).
    """
    from fleet.deliver.history import History, default_path
    from fleet.diagnose import diagnose
    from fleet.render.reports import publish_reports

    interrupts = interrupts or Interrupts()
    with interrupts.held():
        diagnosis = diagnosis if diagnosis is not None else diagnose(run)
        history = History(default_path(run, Path(request.report_dir))) if request.history else None
        delta = None
        if history is not None:
            try:
                delta = history.delta(run)
            except Exception as exc:  # noqa: BLE001 - the reports matter more than the history
                print(f"fleet: no comparison with the previous run: {exc}", file=sys.stderr)
        files, written = publish_reports(
            run,
            Path(request.report_dir),
            ["json", *(f for f in request.formats if f != "json")],
            diagnosis=diagnosis,
            delta=delta,
        )
        for fmt, path in files.items():
            print(f"{fmt:>5} report: {path}", file=sys.stderr)
        if history is not None:
            try:
                history.record(run)
            except Exception as exc:  # noqa: BLE001 - as above: reported, never fatal
                print(f"fleet: run not recorded in the history: {exc}", file=sys.stderr)
    if mail is None:
        return written
    return _mail(run, diagnosis, files, request, mail, delta, interrupts) and written


def _mail(
    run: RunResult,
    diagnosis: Diagnosis,
    files: dict[str, Path],
    request: AuditRequest,
    mail: MailSettings,
    delta: Delta | None,
    interrupts: Interrupts,
) -> bool:
    from fleet.deliver.mail import send_report
    from fleet.runner import Interrupted

    if interrupts.pending:
        print("fleet: interrupted: report NOT mailed", file=sys.stderr)
        return False
    try:
        send_report(run, diagnosis, files, list(request.mail_to), mail, delta)
    except FleetError as exc:
        print(f"fleet: report NOT mailed: {exc}", file=sys.stderr)
        return False
    except Interrupted:  # a relay that stalls must not hold the audit: exit 99
        interrupts.pending = True
        print("fleet: interrupted while mailing: report NOT mailed", file=sys.stderr)
        return False
    print(f"report mailed to {', '.join(request.mail_to)}", file=sys.stderr)
    return True


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
