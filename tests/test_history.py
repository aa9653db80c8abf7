"""History: a repaired host shows as resolved, a lasting problem keeps its first date."""

from __future__ import annotations

import sqlite3

import pytest

from fleet.changes import diff, inventory_label
from fleet.deliver.history import History, default_path, diff_command, format_delta
from fleet.model import CheckResult, HostResult, RunResult, Status


def night(day: int, *problems: tuple[str, str, str | None, Status], inventory="inv/prod.ini"):
    """A run of mx1/mx2 on 2024-05-<day> with the given (host, check, target, status)."""
    results = {h: [CheckResult(h, "binding", Status.OK, "bound")] for h in ("mx1", "mx2")}
    for host, check, target, status in problems:
        results[host].append(CheckResult(host, check, status, f"{check} {status}", target))
    hosts = tuple(HostResult(h, "", "ssh", "unix", tuple(rs)) for h, rs in results.items())
    return RunResult(
        inventory, "pb", f"2024-05-{day:02d}T02:00:00Z", f"2024-05-{day:02d}T02:01:00Z", hosts
    )


REFUSED = ("mx2", "smtp", "mx1", Status.FAIL)
NO_PING = ("mx1", "ping", "mx2", Status.FAIL)


@pytest.fixture
def history(tmp_path) -> History:
    return History(tmp_path / "reports" / "prod" / "history.sqlite")


def test_a_repaired_host_shows_as_resolved_in_the_next_run(history):
    history.record(night(1, REFUSED))
    delta = history.delta(night(2))
    assert [(c.host, c.check, c.target) for c in delta.resolved] == [("mx2", "smtp", "mx1")]
    assert delta.resolved[0].since == "2024-05-01T02:00:00Z"
    assert delta.new == () and delta.still_open == ()
    assert delta.previous_started == "2024-05-01T02:00:00Z"


def test_a_new_problem_is_new_and_a_lasting_one_is_open_since_its_first_night(history):
    history.record(night(1, REFUSED))
    history.record(night(2, REFUSED))
    delta = history.delta(night(3, REFUSED, NO_PING))
    assert [(c.host, c.check) for c in delta.new] == [("mx1", "ping")]
    assert delta.new[0].since == "2024-05-03T02:00:00Z"
    (still,) = delta.still_open
    assert (still.host, still.since) == ("mx2", "2024-05-01T02:00:00Z")
    assert delta.is_new("mx1", "ping", "mx2") and not delta.is_new("mx2", "smtp", "mx1")
    assert delta.new_hosts() == {"mx1"}


def test_since_restarts_after_a_gap(history):
    history.record(night(1, REFUSED))
    history.record(night(2))  # repaired ...
    history.record(night(3, REFUSED))  # ... and broken again
    (still,) = history.delta(night(4, REFUSED)).still_open
    assert still.since == "2024-05-03T02:00:00Z"


def test_a_status_class_change_is_one_resolved_and_one_new(history):
    history.record(night(1, ("mx2", "smtp", "mx1", Status.WARN)))
    delta = history.delta(night(2, REFUSED))
    assert [c.status_class for c in delta.new] == ["fail"]
    assert [c.status_class for c in delta.resolved] == ["warn"]


def test_fail_and_error_are_the_same_status_class(history):
    history.record(night(1, ("mx2", "smtp", "mx1", Status.ERROR)))
    delta = history.delta(night(2, REFUSED))
    assert delta.new == () and len(delta.still_open) == 1


def test_first_run_has_everything_new_and_no_previous(history):
    delta = history.delta(night(1, REFUSED))
    assert len(delta.new) == 1 and delta.previous_started is None


def test_previous_returns_the_latest_earlier_run_of_the_same_inventory(history):
    history.record(night(1, REFUSED))
    history.record(night(2))
    history.record(night(1, NO_PING, inventory="inv/staging.ini"))
    assert history.previous("inv/prod.ini", "2024-05-03T00:00:00Z") == night(2)
    assert history.previous("inv/prod.ini", "2024-05-02T02:00:00Z") == night(1, REFUSED)
    assert history.previous("inv/prod.ini", "2024-05-01T00:00:00Z") is None


def test_recording_the_run_itself_does_not_change_its_delta(history):
    history.record(night(1, REFUSED))
    tonight = night(2)
    before = history.delta(tonight)
    run_id = history.record(tonight)
    assert run_id == 2
    assert history.delta(tonight) == before


def test_problems_are_stored_in_sqlite(history):
    history.record(night(1, REFUSED, NO_PING))
    with sqlite3.connect(history.path) as db:
        rows = db.execute("SELECT host, check_name, target, status_class FROM problems").fetchall()
    assert sorted(rows) == [("mx1", "ping", "mx2", "fail"), ("mx2", "smtp", "mx1", "fail")]


def test_diff_of_two_runs():
    delta = diff(night(1, REFUSED), night(2, NO_PING))
    assert [c.host for c in delta.new] == ["mx1"]
    assert [c.host for c in delta.resolved] == ["mx2"]
    assert "new (1):" in format_delta(delta)


def test_diff_command_prints_the_diff_and_says_if_something_is_new(tmp_path, capsys):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(night(1, REFUSED).to_json())
    b.write_text(night(2, NO_PING).to_json())
    assert diff_command(a, b) == 2
    out = capsys.readouterr().out
    assert "  mx1 ping -> mx2: fail: ping fail" in out
    assert "resolved (1):\n  mx2 smtp -> mx1" in out
    assert diff_command(b, a) == 2
    assert diff_command(a, a) == 0


def test_diff_command_rejects_a_file_that_is_not_a_result(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    assert diff_command(bad, bad) == 5
    assert "not a fleet run result" in capsys.readouterr().err


def test_diff_output_cannot_drive_the_terminal():
    evil = night(2, ("mx1", "smtp", "\x1b[2J\x1b]0;owned\x07", Status.FAIL))
    text = format_delta(diff(night(1), evil))
    assert "\x1b" not in text and "\x07" not in text


def test_history_lives_under_reports_by_inventory_name():
    assert default_path(night(1)).as_posix() == "reports/prod/history.sqlite"
    assert inventory_label("inventories/prod/") == "prod"
    assert inventory_label("inventories/staging/hosts.yml") == "staging"


def limited(run: RunResult, *hosts: str) -> RunResult:
    """The same night, as a ``--limit`` run that audited only ``hosts``."""
    from dataclasses import replace

    return replace(run, hosts=tuple(h for h in run.hosts if h.host in hosts))


def test_a_limit_run_neither_resolves_nor_renews_the_hosts_it_left_out(history):
    history.record(night(1, REFUSED))
    only_mx1 = limited(night(2), "mx1")
    assert history.delta(only_mx1).resolved == ()  # mx2 was not looked at
    history.record(only_mx1)
    delta = history.delta(night(3, REFUSED))
    assert delta.new == ()  # mx2's problem is the old one, not a new one
    (still,) = delta.still_open
    assert (still.host, still.since) == ("mx2", "2024-05-01T02:00:00Z")
