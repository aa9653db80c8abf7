"""The console table and the progress observers (no network: results built here)."""

from __future__ import annotations

import io

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
