"""The runner: every host of the plan audited in a bounded pool, under hard deadlines.

Per host: the runner-side checks (``reach``), one login, ONE batched command
carrying every host check's steps, parse and judge.  Whatever happens on one
host becomes that host's results (``error``/``unreachable``); it never ends
the run.  The pool's threads are daemons so a run deadline or Ctrl-C can
return with what finished, however stuck a host is.
"""

from __future__ import annotations

import contextlib
import functools
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any

from fleet import __version__
from fleet.checks.base import (
    HostCheck,
    RunnerCheck,
    Step,
    StepOutput,
    get_check,
    platform_probes,
)
from fleet.checks.batch import new_nonce, split_sections
from fleet.errors import CommandTimeout, TransportError, UnreachableError
from fleet.model import CheckResult, CommandResult, HostResult, RunResult, Status
from fleet.plan import CheckPlan, HostPlan, RunOptions
from fleet.transports import handoff
from fleet.transports.base import Transport, open_transport

HostObserver = Callable[[HostResult], None]
# Threads per login slot: how far the runner-side reach probes run ahead of the logins.
REACH_AHEAD = 4


class Interrupted(Exception):
    """Raised in the main thread by the SIGTERM handler (Ctrl-C is KeyboardInterrupt)."""


@dataclass(frozen=True)
class Batch:
    """Every host check's steps, keys made unique as ``<check index>/<step key>``."""

    checks: tuple[tuple[CheckPlan, HostCheck, tuple[Step, ...]], ...]
    steps: tuple[Step, ...]

    @classmethod
    def build(cls, host: HostPlan, plans: Iterable[tuple[CheckPlan, HostCheck]]) -> Batch:
        """The batch for ``host``; hosts with the same platform and checks share one."""
        plans = tuple(plans)
        key = (host.platform, tuple((plan.name, repr(plan.params)) for plan, _ in plans))
        batch = _BATCHES.get(key)
        if batch is None:
            if len(_BATCHES) > 1024:  # every host different: do not grow without bound
                _BATCHES.clear()
            batch = _BATCHES[key] = cls._build(host, plans)
        return batch

    @classmethod
    def _build(cls, host: HostPlan, plans: Iterable[tuple[CheckPlan, HostCheck]]) -> Batch:
        checks = []
        steps: list[Step] = []
        for index, (plan, check) in enumerate(plans):
            own = tuple(check.steps(host.platform, plan.params))
            checks.append((plan, check, own))
            steps.extend(Step(f"{index}/{s.key}", s.script, s.target, s.params) for s in own)
        return cls(tuple(checks), tuple(steps))

    def outputs_for(self, index: int, outputs: Mapping[str, StepOutput]) -> dict[str, StepOutput]:
        own = self.checks[index][2]
        return {s.key: _rekey(outputs[f"{index}/{s.key}"], s.key) for s in own}


_BATCHES: dict[tuple[Any, ...], Batch] = {}


def _rekey(output: StepOutput, key: str) -> StepOutput:
    return StepOutput(key, output.exit_status, output.stdout, output.truncated, output.read)


def _results_for_all(
    host: HostPlan, plans: Sequence[CheckPlan], status: Status, summary: str, evidence: str = ""
) -> list[CheckResult]:
    return [
        CheckResult(host=host.name, check=p.name, status=status, summary=summary, evidence=evidence)
        for p in plans
    ]


@functools.cache
def _kind_of(name: str) -> tuple[HostCheck | None, RunnerCheck | None]:
    """The check named ``name`` as (host check, runner check), one of them None.  Cached:
    an isinstance against a runtime Protocol costs more than a host's whole plan."""
    check = get_check(name)
    if isinstance(check, HostCheck):
        return check, None
    return None, check if isinstance(check, RunnerCheck) else None


def _runner_checks(host: HostPlan, options: RunOptions) -> list[CheckResult]:
    results: list[CheckResult] = []
    for plan in host.checks:
        check = _kind_of(plan.name)[1]
        if check is not None:
            results.extend(check.run(host, plan.params, options.connect_timeout))
    return results


def _management_down(host: HostPlan, reach: Sequence[CheckResult]) -> CheckResult | None:
    """The reach result saying the login port is closed or silent, if any."""
    if host.management_port is None:
        return None
    port = str(host.management_port)
    for result in reach:
        if result.target == port and result.status is Status.FAIL:
            return result
    return None


def host_checks(host: HostPlan) -> list[tuple[CheckPlan, HostCheck]]:
    """The host's checks that run on the host (not the runner-side ``reach``)."""
    return [(p, c) for p in host.checks if (c := _kind_of(p.name)[0]) is not None]


def host_script(
    host: HostPlan, host_plans: Sequence[tuple[CheckPlan, HostCheck]], budget: float
) -> tuple[Batch, str, str]:
    """The one script sent to ``host`` (its batch, nonce and text) for a command deadline of
    ``budget`` seconds.  The benchmark sends exactly this through other tools."""
    return _script_for(host, Batch.build(host, host_plans), budget)


def _script_for(host: HostPlan, batch: Batch, budget: float) -> tuple[Batch, str, str]:
    nonce = new_nonce()
    # Steps end on their own before the command's deadline, leaving room for the
    # shell (or powershell.exe) to start and for the sections to come back.
    step_timeout = max(1.0, budget - max(3.0, budget * 0.15))
    return batch, nonce, platform_probes(host.platform).compose(batch.steps, nonce, step_timeout)


def audit_host(
    host: HostPlan,
    options: RunOptions,
    slot: Callable[[], AbstractContextManager[bool]] = lambda: contextlib.nullcontext(True),
    gathered: Callable[[Sequence[CheckResult]], None] = lambda results: None,
) -> HostResult | None:
    """Every check of one host.  Never raises: failures become results.

    The runner-side checks (``reach``) run first and are handed to
    ``gathered`` (so a run that stops keeps them); then the host waits in
    ``slot()`` for one of the ``--forks`` login slots.  A slot that yields
    False (the run is stopping) makes this return None: the host never
    logged in.  The host's deadline counts from the slot, plus reach's time.
    """
    started = time.monotonic()
    results: list[CheckResult] = []
    try:
        results.extend(_runner_checks(host, options))
        gathered(tuple(results))
        host_plans = host_checks(host)
        down = _management_down(host, results) if host_plans else None
        if down is not None:  # no login to wait for
            plans = [p for p, _ in host_plans]
            results.extend(
                _results_for_all(host, plans, Status.UNREACHABLE, down.summary, down.evidence)
            )
        elif host_plans:
            waited = time.monotonic()
            with slot() as granted:
                if not granted:
                    return None
                started += time.monotonic() - waited
                results.extend(_audit_on_host(host, options, host_plans, started))
    except Exception as exc:  # noqa: BLE001 - one bad host never spoils the run
        done = {r.check for r in results}
        results.extend(
            _results_for_all(
                host,
                [p for p in host.checks if p.name not in done],
                Status.ERROR,
                f"internal error: {type(exc).__name__}: {exc}",
            )
        )
    finally:
        handoff.discard()  # reach's connection, if no login took it
    return HostResult(
        host=host.name,
        address=host.address,
        connection=host.connection,
        platform=host.platform.value,
        results=tuple(results),
        duration=time.monotonic() - started,
    )


def _audit_on_host(
    host: HostPlan,
    options: RunOptions,
    host_plans: Sequence[tuple[CheckPlan, HostCheck]],
    started: float,
) -> list[CheckResult]:
    plans = [p for p, _ in host_plans]
    missing = "no output from the host for this check"
    planned = Batch.build(host, host_plans)
    if not planned.steps:
        # Nothing to run there (e.g. no targets): no login, the checks say why.
        return _evaluate(host, planned, {}, missing)
    command: CommandResult | None = None
    transport: Transport = open_transport(host, options)
    try:
        transport.connect()
        budget = max(
            1.0, min(options.command_timeout, options.host_deadline - (time.monotonic() - started))
        )
        batch, nonce, script = _script_for(host, planned, budget)
        command = transport.run(script, budget)
        stdout = command.stdout
    except UnreachableError as exc:
        return _results_for_all(host, plans, Status.UNREACHABLE, str(exc))
    except CommandTimeout as exc:
        # Keep every section that came back before the deadline.
        stdout, missing = exc.partial_stdout, f"the audit command was abandoned: {exc}"
    except TransportError as exc:
        return _results_for_all(host, plans, Status.ERROR, f"transport error: {exc}")
    finally:
        transport.close()
    outputs = split_sections(stdout, nonce, batch.steps)
    if command is not None and all(o.exit_status is None for o in outputs.values()):
        stderr = command.stderr.decode("utf-8", "replace").strip()[:500]
        return _results_for_all(
            host,
            plans,
            Status.ERROR,
            f"the audit script produced no results (exit status {command.exit_status})",
            stderr,
        )
    results = _evaluate(host, batch, outputs, missing)
    if command is None:
        return results
    # Every check's evidence came back in the one command: that is its duration.
    return [r if r.duration else replace(r, duration=command.duration) for r in results]


def _evaluate(
    host: HostPlan, batch: Batch, outputs: Mapping[str, StepOutput], missing: str
) -> list[CheckResult]:
    """Each check judges its own sections; one check's failure never costs another's result."""
    results: list[CheckResult] = []
    for index, (plan, check, _steps) in enumerate(batch.checks):
        own = batch.outputs_for(index, outputs)
        if own and all(o.exit_status is None for o in own.values()):
            results.extend(_results_for_all(host, [plan], Status.ERROR, missing))
            continue
        try:
            results.extend(check.evaluate(host.name, host.platform, plan.params, own))
        except Exception as exc:  # noqa: BLE001 - a parser bug must not lose the other checks
            results.extend(
                _results_for_all(
                    host,
                    [plan],
                    Status.ERROR,
                    f"could not read the host's output: {type(exc).__name__}: {str(exc)[:200]}",
                )
            )
    return results


def _notify(observers: Sequence[HostObserver], result: HostResult) -> None:
    """Observers watch; a broken one (e.g. a closed stderr) must not stop the audit."""
    for observe in observers:
        try:
            observe(result)
        except Exception:  # noqa: BLE001, S112 - progress is optional, results are not
            continue


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _unfinished(
    host: HostPlan, status: Status, why: str, gathered: Sequence[CheckResult] = ()
) -> HostResult:
    """A host the run stopped for: what it had gathered (reach's results), and
    ``why`` for each check that had not finished."""
    done = {r.check for r in gathered}
    left = [p for p in host.checks if p.name not in done]
    return HostResult(
        host=host.name,
        address=host.address,
        connection=host.connection,
        platform=host.platform.value,
        results=(*gathered, *_results_for_all(host, left, status, why)),
    )


class LoginSlots:
    """The ``--forks`` login slots.  Waiters sleep until a slot frees or ``stop()``
    (no timed polling: at forks x 4 waiting threads, polling cost real CPU)."""

    def __init__(self, forks: int) -> None:
        self._free = max(1, forks)
        self._stopped = False
        self._changed = threading.Condition()

    def stop(self) -> None:
        with self._changed:
            self._stopped = True
            self._changed.notify_all()

    @contextlib.contextmanager
    def claim(self) -> Iterator[bool]:
        """Yields True holding a slot, or False once the run is stopping.  A host that
        must wait gives up reach's connection first (fleet.transports.handoff): held
        through the wait, it would only sit on the host's sshd and go stale."""
        with self._changed:
            if not self._free and not self._stopped:
                handoff.discard()
            while not self._free and not self._stopped:
                self._changed.wait()
            granted = not self._stopped
            if granted:
                self._free -= 1
        try:
            yield granted
        finally:
            if granted:
                with self._changed:
                    self._free += 1
                    self._changed.notify()


def _wait_for_all(
    done: Mapping[int, HostResult],
    count: int,
    finished: threading.Condition,
    run_deadline: float | None,
    started: float,
) -> bool:
    """Wait until ``count`` hosts are done; True if the run deadline came first."""
    with finished:
        while len(done) < count:
            remaining = None
            if run_deadline is not None:
                remaining = run_deadline - (time.monotonic() - started)
                if remaining <= 0:
                    return True
            # A bounded wait keeps the main thread responsive to signals.
            finished.wait(timeout=min(remaining, 0.5) if remaining is not None else 0.5)
    return False


def run_audit(
    hosts: Sequence[HostPlan],
    options: RunOptions,
    *,
    inventory: str = "",
    playbook: str = "",
    observers: Sequence[HostObserver] = (),
) -> RunResult:
    """Audit ``hosts`` with at most ``options.forks`` at once.

    Returns when every host is done, at ``options.run_deadline``, or on
    KeyboardInterrupt/Interrupted (then ``interrupted`` is set); hosts that
    had not finished keep what they gathered (reach), and their other checks
    say why they did not run (``skipped`` on interrupt, ``error`` at the deadline).
    """
    started_at = _now()
    started = time.monotonic()
    todo: queue.SimpleQueue[int] = queue.SimpleQueue()
    for index in range(len(hosts)):
        todo.put(index)
    done: dict[int, HostResult] = {}
    gathered: dict[int, Sequence[CheckResult]] = {}  # reach's results, before the login
    finished = threading.Condition()
    stop = threading.Event()  # set at the deadline or on interrupt: start no new host
    slots = LoginSlots(options.forks)

    def keep(index: int, results: Sequence[CheckResult]) -> None:
        if results:
            with finished:
                gathered[index] = results

    def worker() -> None:
        while not stop.is_set():
            try:
                index = todo.get_nowait()
            except queue.Empty:
                return
            result = audit_host(hosts[index], options, slots.claim, functools.partial(keep, index))
            if result is None:
                return
            with finished:
                done[index] = result
                finished.notify_all()
            if not stop.is_set():
                _notify(observers, result)

    # --forks bounds the logins; reach runs ahead of them, so hosts that are down
    # time out side by side instead of holding login slots one after another.
    for _ in range(max(1, min(options.forks * REACH_AHEAD, len(hosts)))):
        threading.Thread(target=worker, daemon=True, name="fleet-worker").start()

    interrupted = deadline_hit = False
    try:
        deadline_hit = _wait_for_all(done, len(hosts), finished, options.run_deadline, started)
    except (KeyboardInterrupt, Interrupted):
        interrupted = True
    stop.set()
    slots.stop()

    with finished:
        snapshot, partial = dict(done), dict(gathered)
    if interrupted:
        status, why = Status.SKIPPED, "interrupted before this host finished"
    else:  # the run deadline: the checks could not run, which is an error
        status = Status.ERROR
        why = f"run deadline of {options.run_deadline or 0:g}s reached before this host finished"
    results = tuple(
        snapshot.get(i) or _unfinished(host, status, why, partial.get(i, ()))
        for i, host in enumerate(hosts)
    )
    return RunResult(
        inventory=inventory,
        playbook=playbook,
        started=started_at,
        finished=_now(),
        hosts=results,
        interrupted=interrupted,
        deadline_hit=deadline_hit,
        fleet_version=__version__,
    )
