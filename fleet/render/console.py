"""The console summary: host x check with the one-line reason, then totals."""

from __future__ import annotations

from collections.abc import Sequence

from fleet.model import STOPPED, CheckResult, HostResult, RunResult, Status, worst
from fleet.text import safe_text  # a host must not drive the operator's terminal

_COLOURS = {
    Status.OK: "32",
    Status.WARN: "33",
    Status.FAIL: "31",
    Status.ERROR: "35",
    Status.UNREACHABLE: "31;1",
    Status.SKIPPED: "2",
}


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


def _status_text(status: Status, colour: bool) -> str:
    if not colour:
        return status.value
    return f"\x1b[{_COLOURS[status]}m{status.value}\x1b[0m"


def host_rows(host: HostResult, colour: bool = False) -> list[list[str]]:
    """One row per check; a host whose every check passed gets one row, and a host the
    run stopped before auditing gets one row saying so (its reach alone proves nothing)."""
    name = safe_text(host.host, 40)
    if host.stopped:
        stopped = next(r for r in host.results if r.cause == host.stopped)
        label = f"not audited ({host.stopped})"
        shown = f"\x1b[{_COLOURS[Status.SKIPPED]}m{label}\x1b[0m" if colour else label
        return [[name, "all", shown, safe_text(stopped.summary)]]
    if host.results and all(r.status is Status.OK for r in host.results):
        checks = list(dict.fromkeys(r.check for r in host.results))
        return [
            [
                name,
                "all",
                _status_text(Status.OK, colour),
                f"{len(checks)} checks ok: {', '.join(checks)}",
            ]
        ]
    by_check: dict[str, list[CheckResult]] = {}
    for result in host.results:
        by_check.setdefault(result.check, []).append(result)
    return [
        [
            name,
            check,
            _status_text(_shown_status(results), colour),
            safe_text(_reason(results)),
        ]
        for check, results in by_check.items()
    ]


def _shown_status(results: Sequence[CheckResult]) -> Status:
    """A check's status in the table: its worst, except that skipped targets beside ok
    ones are not hidden behind "ok" (skipped is not ok; the reason names them)."""
    status = worst(r.status for r in results)
    if status is Status.OK and any(r.status is Status.SKIPPED for r in results):
        return Status.SKIPPED
    return status


def check_totals(run: RunResult) -> dict[str, int]:
    """Check results per status as the table counts them: the checks of a host the run
    stopped before auditing are "not audited", never errors, let alone ok."""
    totals = {s.value: 0 for s in Status}
    totals["not audited"] = 0
    for result in run.results:
        totals["not audited" if result.cause in STOPPED else result.status.value] += 1
    return totals


def render_console(run: RunResult, colour: bool = False) -> str:
    from tabulate import tabulate  # imported when a table is printed, not with the module

    rows = [row for host in run.hosts for row in host_rows(host, colour)]
    # Every cell is text (a host named 0100 is not a number to right-align).
    headers = ["host", "check", "status", "reason"]
    table = tabulate(rows, headers=headers, tablefmt="simple", disable_numparse=True)
    totals = ", ".join(f"{n} {name}" for name, n in check_totals(run).items() if n)
    stopped = [h for h in run.hosts if h.stopped]
    finished = [h for h in run.hosts if not h.stopped]
    unreachable = sum(h.unreachable for h in finished)
    failing = sum(h.status in (Status.FAIL, Status.ERROR) for h in finished)
    healthy = sum(h.status in (Status.OK, Status.WARN) for h in finished)
    skipped = len(finished) - failing - unreachable - healthy
    why = "interrupted" if run.interrupted else "deadline"
    lines = [
        table,
        "",
        f"{len(run.hosts)} hosts: {healthy} ok, {failing} failing, {unreachable} unreachable"
        + (f", {len(stopped)} not audited ({why})" if stopped else "")
        + (f", {skipped} skipped" if skipped else "")
        + f"  |  checks: {totals or 'none'}",
    ]
    if run.deadline_hit:
        lines.append("run deadline reached: the hosts that had not finished were not audited")
    if run.interrupted:
        lines.append("interrupted: only the hosts that finished were audited")
    return "\n".join(lines)
