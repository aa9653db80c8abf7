"""The runner's promises, with a fake transport (the network adds nothing to these questions)."""

from __future__ import annotations

import sys
import threading
import time
import types
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import pytest

from fleet import causes
from fleet.checks import base
from fleet.checks.base import Platform, Step, StepOutput
from fleet.errors import CommandTimeout, UnreachableError
from fleet.model import CheckResult, CommandResult, Status
from fleet.plan import CheckPlan, HostPlan, RunOptions
from fleet.runner import audit_host, run_audit
from fleet.transports import base as transports
from fleet.transports.handoff import Handoff
from fleet.transports.local import LocalTransport

calls: list[str] = []


class EchoCheck:
    """Prints its params' word on the host; ok when it comes back."""

    name = "echo"

    def validate(self, params: Mapping[str, Any]) -> dict[str, Any]:
        return dict(params)

    def steps(self, platform: Platform, params: Mapping[str, Any]) -> list[Step]:
        return [Step("say", f"echo {params['word']}"), Step("again", "echo again")]

    def evaluate(self, host, platform, params, outputs: Mapping[str, StepOutput]):
        said = outputs["say"]
        if said.exit_status is None:
            return [CheckResult(host, self.name, Status.ERROR, "no section")]
        word = said.stdout.decode().strip()
        if word == "overflow":
            raise OverflowError("int too large")  # a parser bug on hostile output
        status = Status.OK if word == params["word"] else Status.FAIL
        return [
            CheckResult(
                host, self.name, status, word, facts={"again": outputs["again"].stdout.decode()}
            )
        ]


class FakeTransport(LocalTransport):
    """Runs locally but behaves as the host's vars say: unreachable, hanging, crashing.
    Logs in on port 22, as SSH would."""

    port = 22

    def connect(self, handoff: Handoff | None = None) -> None:
        calls.append(f"connect {self.host.name}")
        if self.host.vars.get("fake") == "unreachable":
            raise UnreachableError(
                "connection refused on port 22", "is sshd running?", cause=causes.CONNECT_REFUSED
            )

    def run(self, command: str, timeout: float) -> CommandResult:
        behaviour = self.host.vars.get("fake")
        if behaviour == "hang":
            time.sleep(30)
        if behaviour == "timeout":
            raise CommandTimeout(timeout)
        if behaviour == "crash":
            raise RuntimeError("boom")
        if behaviour == "partial":
            steps_done = super().run(command, timeout).stdout
            raise CommandTimeout(timeout, steps_done[: steps_done.index(b"again")])
        if behaviour == "garbage":
            return CommandResult("sh", 0, b"\x00\xffnot sections at all", b"oops")
        return super().run(command, timeout)


@pytest.fixture(autouse=True)
def fake_world(monkeypatch: pytest.MonkeyPatch):
    module = types.ModuleType("fleet_test_fakes")
    module.EchoCheck = EchoCheck
    module.FakeTransport = FakeTransport
    monkeypatch.setitem(sys.modules, "fleet_test_fakes", module)
    monkeypatch.setitem(base.CHECKS, "echo", "fleet_test_fakes:EchoCheck")
    monkeypatch.setitem(transports.TRANSPORTS, "fake", "fleet_test_fakes:FakeTransport")
    calls.clear()


def host(name: str, fake: str = "", *words: str, first: str = "") -> HostPlan:
    """A host on the fake transport behaving as ``fake`` says, with one echo check per
    word ("hello" when none), after the runner-side check ``first`` when given."""
    echoes = tuple(CheckPlan("echo", {"word": w}) for w in words or ("hello",))
    ahead = (CheckPlan(first, {}),) if first else ()
    return HostPlan(name, "fake", "127.0.0.1", None, None, {"fake": fake}, checks=ahead + echoes)


def add_check(monkeypatch: pytest.MonkeyPatch, check: type) -> None:
    """Make the runner-side ``check`` known by its name, as fleet_test_fakes' class."""
    monkeypatch.setattr(sys.modules["fleet_test_fakes"], check.__name__, check, raising=False)
    monkeypatch.setitem(base.CHECKS, check.name, f"fleet_test_fakes:{check.__name__}")


def test_every_step_comes_back_to_its_check() -> None:
    result = audit_host(host("mx1"), RunOptions())
    [check] = result.results
    assert (check.status, check.summary, check.facts["again"]) == (Status.OK, "hello", "again\n")


def test_unreachable_host_gives_unreachable_results_with_the_reason() -> None:
    [check] = audit_host(host("mx1", "unreachable"), RunOptions()).results
    assert check.status is Status.UNREACHABLE
    assert "connection refused on port 22" in check.summary
    assert check.cause == causes.CONNECT_REFUSED  # the transport's, copied, not read from text


def test_garbage_output_is_an_error_for_that_host_only() -> None:
    run = run_audit([host("bad", "garbage"), host("good")], RunOptions(forks=2))
    assert run.host("bad").results[0].status is Status.ERROR
    assert run.host("bad").results[0].cause == causes.OUTPUT_LOST
    assert run.host("good").results[0].status is Status.OK


def test_a_crashing_host_never_spoils_the_run() -> None:
    run = run_audit([host("boom", "crash"), host("fine")], RunOptions(forks=1))
    assert run.host("boom").results[0].status is Status.ERROR
    assert "RuntimeError" in run.host("boom").results[0].summary
    assert run.host("boom").results[0].cause == causes.TRANSPORT_ERROR
    assert run.host("fine").results[0].status is Status.OK
    assert run.exit_code() == 2


def test_command_timeout_is_an_error_result() -> None:
    [check] = audit_host(host("slow", "timeout"), RunOptions()).results
    assert check.status is Status.ERROR and "abandoned" in check.summary
    assert check.cause == causes.COMMAND_TIMEOUT


def test_run_deadline_returns_with_what_finished() -> None:
    started = time.monotonic()
    run = run_audit([host("stuck", "hang"), host("quick")], RunOptions(forks=2, run_deadline=1.0))
    assert time.monotonic() - started < 5
    assert run.deadline_hit
    assert run.host("quick").results[0].status is Status.OK
    stuck = run.host("stuck").results[0]
    assert stuck.status is Status.ERROR and "deadline" in stuck.summary
    assert stuck.cause == causes.DEADLINE


def test_interrupt_keeps_finished_hosts(monkeypatch: pytest.MonkeyPatch) -> None:
    timer = threading.Timer(1.0, lambda: __import__("_thread").interrupt_main())
    timer.start()
    run = run_audit([host("stuck", "hang"), host("quick")], RunOptions(forks=2))
    timer.cancel()
    assert run.interrupted and run.exit_code() == 99
    assert run.host("quick").results[0].status is Status.OK
    stuck = run.host("stuck")
    assert stuck.results[0].status is Status.ERROR  # could not run: never skipped, never ok
    assert stuck.results[0].cause == causes.INTERRUPTED
    assert stuck.stopped == causes.INTERRUPTED and stuck.status is not Status.OK
    assert "not audited (interrupted)" in stuck.results[0].summary


def count_logins(monkeypatch: pytest.MonkeyPatch, pause: float = 0.0) -> list[int]:
    """Wrap FakeTransport.run; the returned list's one item is the peak of commands at once."""
    active, peak = [0], [0]
    lock = threading.Lock()
    original = FakeTransport.run

    def counting_run(self, command, timeout):
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        try:
            time.sleep(pause)
            return original(self, command, timeout)
        finally:
            with lock:
                active[0] -= 1

    monkeypatch.setattr(FakeTransport, "run", counting_run)
    return peak


def test_bounded_concurrency(monkeypatch: pytest.MonkeyPatch) -> None:
    peak = count_logins(monkeypatch, pause=0.05)
    run = run_audit([host(f"mx{i}") for i in range(12)], RunOptions(forks=3))
    assert peak[0] <= 3
    assert [h.host for h in run.hosts] == [f"mx{i}" for i in range(12)]
    assert all(h.status is Status.OK for h in run.hosts)


def test_one_connection_per_host_for_all_checks() -> None:
    result = audit_host(host("mx1", "", "a", "b"), RunOptions())
    assert [r.summary for r in result.results] == ["a", "b"]
    assert calls == ["connect mx1"]


def test_observers_see_every_host() -> None:
    seen: list[str] = []
    run_audit([host("a"), host("b")], RunOptions(), observers=[lambda h: seen.append(h.host)])
    assert sorted(seen) == ["a", "b"]


def test_a_check_that_cannot_read_its_output_costs_only_itself() -> None:
    first, second = audit_host(host("mx1", "", "overflow", "fine"), RunOptions()).results
    assert first.status is Status.ERROR and "OverflowError" in first.summary
    assert first.cause == causes.UNPARSED
    assert (second.status, second.summary) == (Status.OK, "fine")


def test_a_broken_observer_never_stalls_the_run() -> None:
    def broken(_result) -> None:
        raise BrokenPipeError("stderr is gone")

    started = time.monotonic()
    run = run_audit([host("a"), host("b"), host("c")], RunOptions(forks=1), observers=[broken])
    assert time.monotonic() - started < 10
    assert [h.status for h in run.hosts] == [Status.OK] * 3


def test_no_new_host_is_started_after_the_deadline() -> None:
    hosts = [host("stuck", "hang"), *(host(f"later{i}") for i in range(3))]
    run_audit(hosts, RunOptions(forks=1, run_deadline=0.5))
    time.sleep(1.0)
    assert calls == ["connect stuck"]


def test_sections_that_came_back_before_a_timeout_are_kept() -> None:
    [check] = audit_host(host("mx1", "partial", "kept"), RunOptions()).results
    # The first section came back whole; the check judged it instead of losing it.
    assert check.status is Status.OK and check.summary == "kept"


def test_a_host_with_nothing_to_run_is_not_logged_into() -> None:
    from fleet.checks.smtp import SmtpCheck

    plan = replace(host("mx1"), checks=(CheckPlan("smtp", SmtpCheck().validate({"targets": []})),))
    [check] = audit_host(plan, RunOptions()).results
    assert check.status is Status.SKIPPED and calls == []


def test_each_check_carries_the_duration_of_the_command_that_gathered_it() -> None:
    [check] = audit_host(host("mx1"), RunOptions()).results
    assert check.duration > 0


class SlowReach:
    """A runner-side check that takes 0.5 s (a host whose login port is silent)."""

    name = "slowreach"

    def validate(self, params):
        return dict(params)

    def run(self, host, params, timeout):
        time.sleep(0.5)
        return [CheckResult(host.name, self.name, Status.OK, "slow but open")]


def test_runner_side_checks_run_ahead_of_the_login_slots(monkeypatch) -> None:
    # Silent hosts time out side by side: their reach probes must not queue
    # behind --forks, while the logins themselves stay bounded by it.
    add_check(monkeypatch, SlowReach)
    peak = count_logins(monkeypatch)
    plans = [host(f"mx{i}", first="slowreach") for i in range(8)]
    started = time.monotonic()
    run = run_audit(plans, RunOptions(forks=2))
    elapsed = time.monotonic() - started
    assert all(h.status is Status.OK for h in run.hosts)
    assert peak[0] <= 2
    assert elapsed < 1.5  # 8 x 0.5 s over 2 forks would take 2 s


def test_a_host_that_must_wait_for_a_login_slot_gives_up_reachs_connection() -> None:
    # Held through the wait, the connection would only sit on the host's sshd and go stale.
    import socket

    from fleet.runner import LoginSlots

    slots, waiting = LoginSlots(1), threading.Event()
    kept, other = socket.socketpair()
    seen: list[bool] = []

    def second_host() -> None:
        handoff = Handoff("198.18.0.12", 22, kept)
        waiting.set()
        with slots.claim(handoff.close) as granted:
            seen.append(granted)

    with slots.claim() as granted:
        assert granted
        thread = threading.Thread(target=second_host)
        thread.start()
        assert waiting.wait(5)
        deadline = time.monotonic() + 5
        while kept.fileno() != -1 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert kept.fileno() == -1  # closed while the first host still holds the slot
    thread.join(5)
    assert seen == [True]
    other.close()


class DownReach:
    """A runner-side check saying the host's login port (22) timed out."""

    name = "downreach"

    def validate(self, params):
        return dict(params)

    def run(self, host, params, timeout):
        return [
            CheckResult(
                host.name,
                "reach",
                Status.FAIL,
                "port 22 timed out",
                target="22",
                cause=causes.TIMEOUT,
            )
        ]


def test_a_host_whose_login_port_is_down_does_not_wait_for_a_login_slot(monkeypatch) -> None:
    add_check(monkeypatch, DownReach)
    original = FakeTransport.run

    def slow_run(self, command, timeout):
        time.sleep(1.0)
        return original(self, command, timeout)

    monkeypatch.setattr(FakeTransport, "run", slow_run)
    busy = host("busy")  # holds the only login slot for a second
    down = host("down", first="downreach")
    finished: dict[str, float] = {}
    started = time.monotonic()
    run = run_audit(
        [busy, down],
        RunOptions(forks=1),
        observers=[lambda h: finished.setdefault(h.host, time.monotonic() - started)],
    )
    assert finished["down"] < 0.5  # reported at once, not after the busy host's login
    assert finished["busy"] >= 1.0
    assert calls.count("connect down") == 0
    never_tried = run.host("down").results[1]
    assert (never_tried.status, never_tried.cause) == (Status.UNREACHABLE, causes.CONNECT_TIMEOUT)


class OpenReach(DownReach):
    """A runner-side check saying the host's login port (22) is open."""

    name = "openreach"

    def run(self, host, params, timeout):
        return [CheckResult(host.name, "openreach", Status.OK, "port 22 open", target="22")]


def test_a_run_deadline_keeps_what_a_host_waiting_for_a_login_slot_had_gathered(
    monkeypatch,
) -> None:
    add_check(monkeypatch, OpenReach)
    stuck = host("stuck", "hang")  # holds the only login slot past the deadline
    waiting = host("waiting", first="openreach")
    run = run_audit([stuck, waiting], RunOptions(forks=1, run_deadline=1.0))
    assert run.deadline_hit
    assert "connect waiting" not in calls  # it never logged in...
    reach, echo = run.host("waiting").results
    assert (reach.check, reach.status, reach.summary) == ("openreach", Status.OK, "port 22 open")
    assert echo.check == "echo" and echo.status is Status.ERROR  # ...and says why
    assert "run deadline" in echo.summary and echo.cause == causes.DEADLINE


def test_output_cut_at_the_cap_says_so() -> None:
    [check] = audit_host(host("mx1"), RunOptions(max_output=10)).results
    assert (check.status, check.cause) == (Status.ERROR, causes.OUTPUT_TRUNCATED)
    assert "truncated" in check.summary and "no results" not in check.summary


def test_a_check_whose_output_was_cut_at_the_cap_is_truncated_and_the_others_kept() -> None:
    words = ("short", "x" * 50_000)
    first, second = audit_host(host("mx1", "", *words), RunOptions(max_output=4096)).results
    assert (first.status, first.summary) == (Status.OK, "short")
    assert (second.status, second.cause) == (Status.ERROR, causes.OUTPUT_TRUNCATED)
    assert "truncated" in second.summary and "4096 bytes" in second.summary


def test_a_step_lost_past_the_cap_is_truncated_not_merely_missing() -> None:
    from fleet.checks.harness import output_problem

    cut = StepOutput("binding:ip", None, b"", truncated=True)
    assert output_problem(cut)[1] == causes.OUTPUT_TRUNCATED
    lost = StepOutput("binding:ip", None, b"")
    assert output_problem(lost)[1] == causes.OUTPUT_LOST


def test_an_interrupt_reports_a_host_with_an_open_reach_as_not_audited(monkeypatch) -> None:
    add_check(monkeypatch, OpenReach)
    stuck = host("stuck", "hang")  # holds the only login slot until the interrupt
    waiting = host("waiting", first="openreach")
    timer = threading.Timer(1.0, lambda: __import__("_thread").interrupt_main())
    timer.start()
    run = run_audit([stuck, waiting], RunOptions(forks=1))
    timer.cancel()
    reach, echo = run.host("waiting").results
    assert reach.status is Status.OK  # what reach saw stays true...
    assert (echo.status, echo.cause) == (Status.ERROR, causes.INTERRUPTED)
    assert run.host("waiting").stopped == causes.INTERRUPTED  # ...but the host was not audited
    assert run.host("waiting").status is not Status.OK


def test_the_audit_shares_one_context_with_every_transport(monkeypatch) -> None:
    from fleet.transports.base import AuditContext

    seen: list[object] = []
    original = FakeTransport.__init__

    def recording(self, host, options, context=None):
        seen.append(context)
        original(self, host, options, context)

    monkeypatch.setattr(FakeTransport, "__init__", recording)
    context = AuditContext()
    run_audit([host("a"), host("b")], RunOptions(forks=2), context=context)
    assert seen == [context, context]


@pytest.mark.lab
def test_lab_hosts_that_cannot_be_audited_carry_the_transports_cause(lab) -> None:
    # Real failures over real SSH and WinRM: the cause is set where the login failed.
    from pathlib import Path

    from fleet.inventory import load_inventory
    from fleet.playbook import build_plan, load_playbook

    playbook = Path(__file__).resolve().parent.parent / "playbooks" / "mail-connectivity.yml"
    inventory = load_inventory(lab.inventory.parent)
    plan = build_plan(load_playbook(playbook), inventory, "mx-down,mx-badkey,win-badpass,mx1")
    run = run_audit(plan, RunOptions(forks=4, connect_timeout=3))

    def causes_of(name: str) -> set[tuple[str, str]]:
        return {(r.status.value, r.cause) for r in run.host(name).results if r.check != "reach"}

    down_reach = [r for r in run.host("mx-down").results if r.check == "reach" and r.target == "22"]
    assert [r.cause for r in down_reach] == [causes.TIMEOUT]
    assert causes_of("mx-down") == {("unreachable", causes.CONNECT_TIMEOUT)}
    assert causes_of("mx-badkey") == {("unreachable", causes.HOST_KEY_CHANGED)}
    assert causes_of("win-badpass") == {("unreachable", causes.AUTH_REFUSED)}
    assert all(r.cause == "" for r in run.host("mx1").results if r.status is Status.OK)
