"""History: a repaired host shows as resolved, a lasting problem keeps its first date."""

from __future__ import annotations

import sqlite3

import pytest

from fleet.changes import diff, inventory_label
from fleet.deliver.history import History, default_path, diff_command, format_delta
from fleet.model import CheckResult, HostResult, RunResult, Status

# What every night audits besides binding; each is ok unless the night says otherwise.
PROBES = (("mx2", "smtp", "mx1"), ("mx1", "ping", "mx2"))


def night(day: int, *problems: tuple[str, str, str | None, Status], inventory="inv/prod.ini"):
    """A run of mx1/mx2 on 2024-05-<day> with the given (host, check, target, status)."""
    results = {h: [CheckResult(h, "binding", Status.OK, "bound")] for h in ("mx1", "mx2")}
    bad = {(host, check, target): status for host, check, target, status in problems}
    for probe in dict.fromkeys([*PROBES, *bad]):
        host, check, target = probe
        status = bad.get(probe, Status.OK)
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


def stopped(run: RunResult, host: str, cause: str = "interrupted") -> RunResult:
    """``run`` as if it had stopped before ``host`` finished: its reach ok, the rest not run."""
    from dataclasses import replace

    def unfinished(h: HostResult) -> HostResult:
        if h.host != host:
            return h
        why = f"not audited ({cause}): the run was stopped before this host finished"
        left = tuple(
            CheckResult(h.host, r.check, Status.ERROR, why, r.target, cause=cause)
            for r in h.results
        )
        return replace(h, results=(CheckResult(h.host, "reach", Status.OK, "22 open", "22"), *left))

    return replace(run, hosts=tuple(unfinished(h) for h in run.hosts), interrupted=True)


@pytest.mark.parametrize("cause", ["interrupted", "deadline"])
def test_a_run_stopped_before_a_host_finished_resolves_none_of_its_problems(history, cause):
    history.record(night(1, REFUSED))
    tonight = stopped(night(2), "mx2", cause)
    delta = history.delta(tonight)
    assert delta.resolved == () and delta.new == ()
    assert diff(night(1, REFUSED), tonight).resolved == ()
    history.record(tonight)
    # ...nor breaks the problem's streak, nor makes it new when it is seen again.
    delta = history.delta(night(3, REFUSED))
    assert delta.new == ()
    (still,) = delta.still_open
    assert (still.host, still.since) == ("mx2", "2024-05-01T02:00:00Z")


def test_a_host_that_could_not_be_logged_into_resolves_none_of_its_problems(history):
    history.record(night(1, REFUSED))
    login_failed = night(2, ("mx2", "smtp", "mx1", Status.UNREACHABLE))
    delta = history.delta(login_failed)
    assert delta.resolved == ()
    assert [c.status_class for c in delta.new] == ["unreachable"]


def test_a_problem_is_resolved_only_by_a_run_that_audited_that_target(history):
    from dataclasses import replace

    history.record(night(1, REFUSED))
    # mx2 was audited, but its smtp check no longer probes mx1 (no result for it).
    other = replace(
        night(2),
        hosts=tuple(
            replace(h, results=tuple(r for r in h.results if r.check != "smtp"))
            for h in night(2).hosts
        ),
    )
    assert history.delta(other).resolved == ()
    assert [c.host for c in history.delta(night(2)).resolved] == ["mx2"]


@pytest.mark.parametrize(
    ("inventory", "label"),
    [
        ("...ini", "__"),
        ("..ini", "_"),
        ("inventories/..", None),
        ("a/b/...yml", "__"),
        ("evil\x1b]0;x\x07.ini", "evil__0_x_"),
        (".hidden", "_hidden"),
        ("prod", "prod"),
    ],
)
def test_an_inventory_label_is_one_safe_path_component(inventory, label):
    got = inventory_label(inventory)
    if label is not None:
        assert got == label
    assert got not in ("", ".", "..") and not got.startswith(".")
    assert "/" not in got and "\\" not in got
    assert inventory_label(got) == got  # idempotent


def test_concurrent_writers_all_land_in_the_history(history):
    import threading

    history.record(night(1))
    errors: list[Exception] = []

    def record(day: int) -> None:
        try:
            History(history.path).record(night(day, REFUSED))
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=record, args=(day,)) for day in range(2, 22)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    with sqlite3.connect(history.path) as db:
        assert db.execute("SELECT count(*) FROM runs").fetchone()[0] == 21
