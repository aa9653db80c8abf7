"""The console table and the progress observers (no network: results built here)."""

from __future__ import annotations

import io
from dataclasses import replace

from fleet.diagnose import Diagnosis, Finding
from fleet.model import CheckResult, HostResult, RunResult, Status
from fleet.progress import BarProgress, LineProgress, progress_for
from fleet.render.console import first_command, render_console, safe_text, terminal
from tests.lab.sample import sample_run


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


def test_healthy_host_is_one_row_of_the_full_table_and_a_problem_gets_its_reason() -> None:
    text = render_console(
        run_of(
            host("mx1", ("binding", Status.OK, "bound"), ("smtp", Status.OK, "ok")),
            host("mx2", ("binding", Status.OK, "bound"), ("smtp", Status.FAIL, "mx9: refused")),
        ),
        verbose=True,
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


# -- findings first, the problems only ------------------------------------------------


def lines_of(text: str) -> list[str]:
    return text.splitlines()


def test_findings_by_cause_come_before_any_table_each_with_its_first_fix() -> None:
    text = render_console(sample_run())
    lines = lines_of(text)
    table = next(i for i, line in enumerate(lines) if line.startswith("host  "))
    causes = [lines.index(f"{cause}") for cause in ("Host down (1)", "Mail service (2)")]
    assert causes == sorted(causes) and causes[-1] < table
    [down] = [line for line in lines if "mx3 answers nobody" in line]
    assert "mx1 -> mx3: ping no repl" in down  # the evidence, in a few words
    assert down.endswith("fix: ping -c 3 198.18.0.13")  # the first command, no comment
    [auth] = [i for i, line in enumerate(lines) if "win2 was not audited" in line]
    assert lines[auth + 1].strip().startswith("fix: Test-WSMan 198.18.0.22")  # too long for one


def test_compact_table_lists_problems_only_and_an_unreachable_host_once() -> None:
    lines = lines_of(render_console(sample_run()))
    rows = [line.split()[:3] for line in lines if line.split()[:1] in (["mx1"], ["mx3"])]
    assert rows == [["mx1", "ping", "fail"], ["mx1", "smtp", "fail"], ["mx3", "all", "unreachable"]]
    full = lines_of(render_console(sample_run(), verbose=True))
    assert [line.split()[1] for line in full if line.startswith("mx3 ")] == ["binding", "reach"]
    assert any(line.startswith("mx1 ") and " binding " in line for line in full)


def test_healthy_hosts_are_one_line_of_names() -> None:
    healthy = [host(f"mx{i}", ("binding", Status.OK, "bound")) for i in range(1, 40)]
    bad = host("mx-bad", ("binding", Status.FAIL, "TCP/IP not bound"))
    lines = lines_of(render_console(run_of(*healthy, bad)))
    [line] = [line for line in lines if "ok on every check" in line]
    assert line.startswith("39 hosts ok on every check (binding): mx1, mx2, ")
    assert line.endswith(" more") and len(line) <= 100
    assert not any(line.startswith("mx1 ") for line in lines)


def test_no_line_is_wider_than_a_100_column_terminal() -> None:
    long = "x" * 300
    run = run_of(
        host("a-very-long-host-name-in-a-deep.subdomain.example.com", ("smtp", Status.FAIL, long)),
        host("mx2", ("binding", Status.UNREACHABLE, long)),
    )
    fix = f"echo {'y' * 60}"
    finding = Finding("host-down", long, ("mx2",), (long, long), fix, Status.FAIL, "k")
    for verbose in (False, True):
        text = render_console(run, verbose=verbose, diagnosis=Diagnosis((finding,), ()))
        assert max(map(len, lines_of(text))) <= 100, text
    narrow = lines_of(render_console(sample_run(), width=80))
    # A fix command is never cut (it is there to be copied): only it may be wider.
    assert max(len(line) for line in narrow if not line.startswith("      fix: ")) <= 80


def test_finding_text_from_a_host_cannot_drive_the_terminal() -> None:
    evil = "mx\x1b]0;pwned\x07\x1b[2J\r\nX\u202e"
    finding = Finding("mail-service", evil, (evil,), (evil,), f"nc -vz {evil} 25", Status.FAIL, "k")
    text = render_console(run_of(), diagnosis=Diagnosis((finding,), ()), colour=True)
    assert "\x07" not in text and "\r" not in text and "\u202e" not in text and "]0;" not in text
    assert "\x1b[2J" not in text


def test_first_command_is_the_first_line_that_is_not_a_comment_without_its_comment() -> None:
    fix = "# on the console\nss -ltn 'sport = :25'   # listening?\nsystemctl status postfix"
    assert first_command(fix) == "ss -ltn 'sport = :25'"
    assert first_command("# only words") == ""


def test_no_problem_says_so_before_the_healthy_line() -> None:
    text = render_console(run_of(host("mx1", ("binding", Status.OK, "bound"))))
    assert lines_of(text)[0] == "No problem found: every host that was audited passed."
    assert "host  check" not in text


def test_colour_on_a_terminal_only_and_never_with_no_colour_or_NO_COLOR() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert terminal(Tty(), None, {})[0] is True
    assert terminal(io.StringIO(), None, {}) == (False, 100)  # a log: no colour, 100 columns
    assert terminal(Tty(), False, {})[0] is False  # --no-colour
    assert terminal(Tty(), None, {"NO_COLOR": "1"})[0] is False
    assert terminal(Tty(), None, {"TERM": "dumb"})[0] is False
    assert "\x1b[" in render_console(sample_run(), colour=True)
    assert "\x1b" not in render_console(sample_run(), colour=False)


def test_verbose_is_an_option_of_fleet_audit_and_invoke_audit() -> None:
    from fleet.app import AuditRequest, audit_option, request_from_text
    from fleet.cli import build_parser

    assert request_from_text({"verbose": True}) == AuditRequest(verbose=True)
    assert AuditRequest().verbose is False
    assert audit_option("verbose").flags == ("--verbose",)
    args = build_parser().parse_args(["audit", "--verbose"])
    assert "verbose" in vars(args) or any(v is True for v in vars(args).values())


def test_a_finding_without_evidence_and_a_long_title_still_fits() -> None:
    finding = Finding("host-down", "t" * 300, ("mx2",), (), "ping mx2", Status.FAIL, "k")
    text = render_console(run_of(), diagnosis=Diagnosis((finding,), ()))
    assert max(map(len, lines_of(text))) <= 100 and "      fix: ping mx2" in lines_of(text)
