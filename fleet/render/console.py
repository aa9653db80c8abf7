"""What the terminal shows after a run: the findings by cause, then the problems, then totals.

An operator reads the diagnosis first (what is wrong, where, and the first
command that fixes it), then a compact table of the problems only: a host that
passed everything is a name on one line, a host that could not be audited is one
row.  ``verbose`` keeps the full host x check table instead.  Rows are cut to the
terminal's width (100 columns when it is not a terminal), so no row wraps; colour
only on a terminal, never with ``--no-colour`` or ``NO_COLOR``.  Every host value
goes through ``fleet.text.safe_text``: a host must not drive the operator's terminal.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, TextIO

from fleet import causes
from fleet.model import STOPPED, CheckResult, HostResult, RunResult, Status, worst
from fleet.text import safe_text

if TYPE_CHECKING:
    from fleet.diagnose import Diagnosis, Finding

WIDTH = 100  # when the output is not a terminal (a log, a pipe, cron's mail)
HOST_WIDTH = 24  # longer host names are cut in the tables
REASON_MIN = 24  # a reason narrower than this is not worth its column
EVIDENCE_MIN = 24  # evidence cut shorter than this says nothing: the fix moves down

_COLOURS = {
    Status.OK: "32",
    Status.WARN: "33",
    Status.FAIL: "31",
    Status.ERROR: "35",
    Status.UNREACHABLE: "31;1",
    Status.SKIPPED: "2",
}
_BOLD = "1"


def terminal(
    stream: TextIO, requested: bool | None, environ: Mapping[str, str] = os.environ
) -> tuple[bool, int]:
    """Colour and width for output to ``stream``: colour on a terminal unless the
    request (``--no-colour``), ``NO_COLOR`` (no-color.org) or ``TERM=dumb`` says
    otherwise; the terminal's width, else :data:`WIDTH`."""
    try:
        tty = stream.isatty()
    except (AttributeError, ValueError):  # a closed or unusual stream
        tty = False
    colour = tty if requested is None else requested
    if environ.get("NO_COLOR") or environ.get("TERM") == "dumb":
        colour = False
    width = WIDTH
    if tty:
        width = max(60, min(shutil.get_terminal_size((WIDTH, 24)).columns, 200))
    return colour, width


def _paint(text: str, code: str, colour: bool) -> str:
    return f"\x1b[{code}m{text}\x1b[0m" if colour and text else text


def _cut(text: str, room: int) -> str:
    return safe_text(text, max(room, 1))


# -- findings ----------------------------------------------------------------


def first_command(fix: str) -> str:
    """The first command of a finding's fix, without its comment: what to type first."""
    for line in fix.splitlines():
        command = line.split("  #", 1)[0].strip()
        if command and not command.startswith("#"):
            return command
    return ""


def finding_lines(finding: Finding, colour: bool = False, width: int = WIDTH) -> list[str]:
    """One line: the finding, its evidence in a few words, and the first fix command.
    When the title and the command leave no room for both, the command gets a line of
    its own (a command is never cut: it is there to be copied)."""
    title = safe_text(finding.title, None)
    evidence = safe_text(finding.evidence[0], None) if finding.evidence else ""
    if len(finding.evidence) > 1:
        evidence += f" (+{len(finding.evidence) - 1} more)"
    command = safe_text(first_command(finding.fix), None)
    head = f"  - {title}"
    tail = f"  fix: {command}" if command else ""
    code = _COLOURS.get(finding.severity, _BOLD)
    room = width - len(head) - len(tail) - 3  # " — "
    fits = len(head) + len(tail) <= width
    if fits and (not evidence or len(evidence) <= room or room >= EVIDENCE_MIN):
        shown = f" — {_cut(evidence, room)}" if evidence and room >= EVIDENCE_MIN // 2 else ""
        return [_paint(head, code, colour) + shown + tail]
    # Too little room for the evidence: the command goes on a line of its own.
    room = width - len(head) - 3
    shown = f" — {_cut(evidence, room)}" if room >= EVIDENCE_MIN // 2 else ""
    lines = [_paint(_cut(head, width), code, colour) + shown]
    if command:
        lines.append(f"      fix: {command}")
    return lines


def findings_section(diagnosis: Diagnosis, colour: bool = False, width: int = WIDTH) -> list[str]:
    """The findings grouped by cause, in the report's order, each under its cause's name."""
    from fleet.diagnose import CAUSES

    if not diagnosis.findings:
        return ["No problem found: every host that was audited passed."]
    count = len(diagnosis.findings)
    lines = [_paint(f"{count} finding{'s' * (count != 1)}, by cause:", _BOLD, colour)]
    for cause, group in diagnosis.by_cause().items():
        lines.append(_paint(f"{CAUSES[cause]} ({len(group)})", _BOLD, colour))
        for finding in group:
            lines.extend(finding_lines(finding, colour, width))
    return lines


# -- the tables --------------------------------------------------------------


def _reason(results: Sequence[CheckResult]) -> str:
    """The reason an operator reads: the worst results' summaries."""
    status = _shown_status(results)
    if status is Status.OK:
        if len(results) > 1:
            return f"{len(results)} targets ok"
        return results[0].summary
    bad = [r for r in results if r.status is status]
    text = "; ".join(r.summary for r in bad[:3])
    if len(bad) > 3:
        text += f"; and {len(bad) - 3} more"
    return text


def _status_text(status: Status, colour: bool, label: str = "") -> str:
    return _paint(label or status.value, _COLOURS[status], colour)


def _by_check(host: HostResult) -> dict[str, list[CheckResult]]:
    found: dict[str, list[CheckResult]] = {}
    for result in host.results:
        found.setdefault(result.check, []).append(result)
    return found


def _healthy(host: HostResult) -> bool:
    return bool(host.results) and all(r.status is Status.OK for r in host.results)


# How the table names why a host was not audited (the run's own stops keep their word).
_STOPPED_LABEL = {causes.ZONE_UNAVAILABLE: causes.CAUSES[causes.ZONE_UNAVAILABLE]}


def _not_audited_row(host: HostResult, colour: bool) -> list[str] | None:
    """The one row of a host the run stopped before auditing (its reach alone proves
    nothing), or could not log into; None for a host that was audited."""
    name = safe_text(host.host, HOST_WIDTH)
    if host.stopped:
        stopped = next(r for r in host.results if r.cause == host.stopped)
        label = f"not audited ({_STOPPED_LABEL.get(host.stopped, host.stopped)})"
        return [name, "all", _status_text(Status.SKIPPED, colour, label), stopped.summary]
    if host.unreachable:
        login = next(r for r in host.results if r.status is Status.UNREACHABLE)
        return [name, "all", _status_text(Status.UNREACHABLE, colour), login.summary]
    return None


def host_rows(host: HostResult, colour: bool = False) -> list[list[str]]:
    """The full table's rows of one host: one per check; a host whose every check passed
    gets one row, as does a host the run stopped before auditing."""
    name = safe_text(host.host, HOST_WIDTH)
    stopped = _not_audited_row(host, colour) if host.stopped else None
    if stopped is not None:
        return [stopped]
    if _healthy(host):
        checks = list(dict.fromkeys(r.check for r in host.results))
        ok = _status_text(Status.OK, colour)
        return [[name, "all", ok, f"{len(checks)} checks ok: {', '.join(checks)}"]]
    return [
        [name, check, _status_text(_shown_status(results), colour), _reason(results)]
        for check, results in _by_check(host).items()
    ]


def problem_rows(host: HostResult, colour: bool = False) -> list[list[str]]:
    """The compact table's rows of one host: none when it passed everything, one when it
    was not audited, else one per check that is not ok."""
    row = _not_audited_row(host, colour)
    if row is not None:
        return [row]
    name = safe_text(host.host, HOST_WIDTH)
    return [
        [name, check, _status_text(status, colour), _reason(results)]
        for check, results in _by_check(host).items()
        if (status := _shown_status(results)) is not Status.OK
    ]


def _shown_status(results: Sequence[CheckResult]) -> Status:
    """A check's status in the table: its worst, except that skipped targets beside ok
    ones are not hidden behind "ok" (skipped is not ok; the reason names them)."""
    status = worst(r.status for r in results)
    if status is Status.OK and any(r.status is Status.SKIPPED for r in results):
        return Status.SKIPPED
    return status


def _table(rows: list[list[str]], width: int) -> str:
    """host, check, status, reason in aligned columns (tabulate's "simple" look), the
    reason cut so that no row is wider than ``width``."""
    headers = ["host", "check", "status", "reason"]
    widths = [max([len(headers[i]), *(len(_plain(row[i])) for row in rows)]) for i in range(3)]
    room = max(width - sum(widths) - 2 * 3, REASON_MIN)
    reasons = [safe_text(row[3], room) for row in rows]
    widths.append(max([len(headers[3]), *map(len, reasons)]))

    def line(cells: Sequence[str]) -> str:
        padded = [c + " " * (w - len(_plain(c))) for c, w in zip(cells, widths, strict=True)]
        return "  ".join(padded).rstrip()

    rule = "  ".join("-" * w for w in widths)
    body = (line([*row[:3], why]) for row, why in zip(rows, reasons, strict=True))
    return "\n".join([line(headers), rule, *body])


def _plain(cell: str) -> str:
    """A cell as wide as the terminal shows it (without its colour codes)."""
    if "\x1b" not in cell:
        return cell
    return cell.split("m", 1)[1].rsplit("\x1b", 1)[0]


def _names(names: Sequence[str], room: int) -> str:
    """As many names as fit in ``room`` columns, then "and N more"."""
    shown: list[str] = []
    for i, name in enumerate(names):
        text = safe_text(name, HOST_WIDTH)
        rest = len(names) - i - 1
        if len(", ".join([*shown, text]) + (f" and {rest} more" if rest else "")) > room:
            left = len(names) - len(shown)
            return ", ".join(shown) + f" and {left} more" if shown else f"{left} hosts"
        shown.append(text)
    return ", ".join(shown)


def healthy_line(run: RunResult, colour: bool = False, width: int = WIDTH) -> str:
    """The hosts that passed every check, on one line."""
    healthy = [h for h in run.hosts if _healthy(h)]
    if not healthy:
        return ""
    checks = safe_text(", ".join(dict.fromkeys(r.check for h in healthy for r in h.results)), 40)
    head = f"{len(healthy)} host{'s' * (len(healthy) != 1)} ok on every check ({checks}): "
    return _paint(head, _COLOURS[Status.OK], colour) + _names(
        [h.host for h in healthy], width - len(head)
    )


def check_totals(run: RunResult) -> dict[str, int]:
    """Check results per status as the table counts them: the checks of a host the run
    stopped before auditing are "not audited", never errors, let alone ok."""
    totals = {s.value: 0 for s in Status}
    totals["not audited"] = 0
    for result in run.results:
        totals["not audited" if result.cause in STOPPED else result.status.value] += 1
    return totals


def _totals(run: RunResult, width: int) -> list[str]:
    totals = ", ".join(f"{n} {name}" for name, n in check_totals(run).items() if n)
    stopped = [h for h in run.hosts if h.stopped]
    finished = [h for h in run.hosts if not h.stopped]
    unreachable = sum(h.unreachable for h in finished)
    failing = sum(h.status in (Status.FAIL, Status.ERROR) for h in finished)
    healthy = sum(h.status in (Status.OK, Status.WARN) for h in finished)
    skipped = len(finished) - failing - unreachable - healthy
    why = "interrupted" if run.interrupted else "deadline"
    hosts = (
        f"{len(run.hosts)} hosts: {healthy} ok, {failing} failing, {unreachable} unreachable"
        + (f", {len(stopped)} not audited ({why})" if stopped else "")
        + (f", {skipped} skipped" if skipped else "")
    )
    checks = f"checks: {totals or 'none'}"
    one_line = len(hosts) + 5 + len(checks) <= width
    lines = [f"{hosts}  |  {checks}"] if one_line else [hosts, checks]
    if run.deadline_hit:
        lines.append("run deadline reached: the hosts that had not finished were not audited")
    if run.interrupted:
        lines.append("interrupted: only the hosts that finished were audited")
    return lines


def render_console(
    run: RunResult,
    colour: bool = False,
    verbose: bool = False,
    width: int = WIDTH,
    diagnosis: Diagnosis | None = None,
) -> str:
    """The findings by cause, then the problems only (``verbose``: every host and
    check), then the totals."""
    if diagnosis is None:
        from fleet.diagnose import diagnose

        diagnosis = diagnose(run)
    lines = [*findings_section(diagnosis, colour, width), ""]
    make_rows = host_rows if verbose else problem_rows
    rows = [row for host in run.hosts for row in make_rows(host, colour)]
    if rows:
        lines.append(_table(rows, width))
    if not verbose and (healthy := healthy_line(run, colour, width)):
        lines.append(healthy)
    lines += ["", *_totals(run, width)]
    return "\n".join(lines)
