"""The console table and the progress observers (no network: results built here)."""

from __future__ import annotations

import io
from dataclasses import replace

from fleet.model import CheckResult, HostResult, RunResult, Status
from fleet.progress import BarProgress, LineProgress, progress_for
from fleet.render.console import render_console, safe_text


def host(name: str, *results: tuple[str, Status, str]) -> HostResult:
    return HostResult(
        host=name,
        address="198.18.0.1",
        connection="ssh",
        platform="unix",
        results=tuple(CheckResult(name, c, s, text) for c, s, text in results),
        duration=0.5,
    )


def run_of(*hosts: HostResult) -> RunResult:
    return RunResult("lab", "p.yml", "2026-11-29T00:00:00+00:00", "x", hosts)


def test_healthy_host_is_one_row_and_a_problem_gets_its_reason() -> None:
    text = render_console(
        run_of(
            host("mx1", ("binding", Status.OK, "bound"), ("smtp", Status.OK, "ok")),
            host("mx2", ("binding", Status.OK, "bound"), ("smtp", Status.FAIL, "mx9: refused")),
        )
    )
    mx1 = [line for line in text.splitlines() if line.startswith("mx1")]
    assert len(mx1) == 1 and "2 checks ok" in mx1[0]
    assert any(line.startswith("mx2") and "mx9: refused" in line for line in text.splitlines())
    assert "2 hosts: 1 ok, 1 failing, 0 unreachable" in text


def test_a_skipped_check_is_shown_and_counted_as_skipped_not_ok() -> None:
    text = render_console(
        run_of(host("mx1", ("binding", Status.OK, "bound"), ("smtp", Status.SKIPPED, "no targets")))
    )
    rows = [line.split() for line in text.splitlines() if line.startswith("mx1")]
    assert ["mx1", "smtp", "skipped", "no", "targets"] in rows
    assert not any("all" in row or "2 checks ok" in " ".join(row) for row in rows)
    assert "checks: 1 ok, 1 skipped" in text


def test_a_host_the_run_stopped_for_is_not_audited_whatever_its_reach_says() -> None:
    stopped = HostResult(
        host="mx2",
        address="198.18.0.2",
        connection="ssh",
        platform="unix",
        results=(
            CheckResult("mx2", "reach", Status.OK, "port 22 open", target="22"),
            CheckResult(
                "mx2",
                "binding",
                Status.ERROR,
                "not audited (interrupted): the run was stopped before this host finished",
                cause="interrupted",
            ),
        ),
    )
    run = replace(run_of(host("mx1", ("binding", Status.OK, "bound")), stopped), interrupted=True)
    text = render_console(run)
    [row] = [line for line in text.splitlines() if line.startswith("mx2")]
    assert "not audited (interrupted)" in row and " ok" not in row
    assert "2 hosts: 1 ok, 0 failing, 0 unreachable, 1 not audited (interrupted)" in text
    assert "checks: 2 ok, 1 not audited" in text


def test_host_text_cannot_drive_the_terminal() -> None:
    evil = "220 hi\x1b[2J\x1b]0;pwned\x07\rOVERWRITE\x00"
    text = render_console(run_of(host("mx1", ("smtp", Status.FAIL, evil))))
    assert "\x1b" not in text and "\r" not in text and "\x00" not in text and "\x07" not in text
    assert safe_text("a\nb\tc") == "a b c"


def test_line_progress_writes_one_line_per_host() -> None:
    out = io.StringIO()
    progress = LineProgress(2, out)
    progress(host("mx1", ("smtp", Status.OK, "ok")))
    progress(host("mx2", ("smtp", Status.FAIL, "mx9: refused")))
    assert out.getvalue().splitlines() == [
        "[1/2] mx1 ok (0.5s)",
        "[2/2] mx2 fail (0.5s): mx9: refused",
    ]


def test_bar_progress_counts_failures_and_ends_with_a_newline() -> None:
    out = io.StringIO()
    bar = BarProgress(2, out)
    bar(host("mx1", ("smtp", Status.UNREACHABLE, "timed out")))
    bar(host("mx2", ("smtp", Status.FAIL, "refused")))
    last = out.getvalue().split("\r")[-1]
    assert "2/2 hosts" in last and "1 failing" in last and "1 unreachable" in last
    assert out.getvalue().endswith("\n")


def test_progress_is_a_bar_on_a_terminal_lines_elsewhere_and_nothing_when_quiet() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert isinstance(progress_for(3, False, Tty())[0], BarProgress)
    assert isinstance(progress_for(3, False, io.StringIO())[0], LineProgress)
    assert progress_for(3, True, Tty()) == []
