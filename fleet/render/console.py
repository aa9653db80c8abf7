"""The console summary: host x check with the one-line reason, then totals."""

from __future__ import annotations

from collections.abc import Sequence

from fleet.model import CheckResult, HostResult, RunResult, Status, worst
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
    status = worst(r.status for r in results)
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
    """One row per check; a host whose every check passed gets one row."""
    if host.results and host.status is Status.OK:
        checks = list(dict.fromkeys(r.check for r in host.results))
        return [
            [
                safe_text(host.host, 40),
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
            safe_text(host.host, 40),
            check,
            _status_text(worst(r.status for r in results), colour),
            safe_text(_reason(results)),
        ]
        for check, results in by_check.items()
    ]


def render_console(run: RunResult, colour: bool = False) -> str:
    from tabulate import tabulate  # imported when a table is printed, not with the module

    rows = [row for host in run.hosts for row in host_rows(host, colour)]
    # Every cell is text (a host named 0100 is not a number to right-align).
    headers = ["host", "check", "status", "reason"]
    table = tabulate(rows, headers=headers, tablefmt="simple", disable_numparse=True)
    counts = run.counts()
    totals = ", ".join(f"{n} {name}" for name, n in counts.items() if n)
    failing, unreachable = len(run.failed_hosts), len(run.unreachable_hosts)
    healthy = sum(h.status in (Status.OK, Status.WARN) for h in run.hosts)
    skipped = len(run.hosts) - failing - unreachable - healthy
    lines = [
        table,
        "",
        f"{len(run.hosts)} hosts: {healthy} ok, {failing} failing, {unreachable} unreachable"
        + (f", {skipped} not audited" if skipped else "")
        + f"  |  checks: {totals or 'none'}",
    ]
    if run.deadline_hit:
        lines.append("run deadline reached: unfinished hosts are reported as errors")
    if run.interrupted:
        lines.append("interrupted: only the hosts that finished were audited")
    return "\n".join(lines)
