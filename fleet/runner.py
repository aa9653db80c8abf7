"""The runner: every host of the plan audited in a bounded pool, under hard deadlines.

(Over 500 lines: one host's audit and the pool share its slot, deadline and result rules.)

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
from typing import Any, Protocol, cast, runtime_checkable

from fleet import __version__, causes
from fleet.checks.base import HostCheck, RunnerCheck, Step, StepOutput, get_check, platform_probes
from fleet.checks.batch import new_nonce, split_sections
from fleet.errors import CommandTimeout, FleetError, TransportError, UnreachableError
from fleet.model import CheckResult, CommandResult, HostResult, RunResult, Status
from fleet.plan import CheckPlan, HostPlan, RunOptions
from fleet.transports.base import AuditContext, Transport, open_transport
from fleet.transports.handoff import TAKERS, Handoff, give_up
from fleet.transports.jump import BastionError

HostObserver = Callable[[HostResult], None]
# What audit_host waits in for a login slot: given what to give up before waiting,
# it yields True holding a slot, False when the run is stopping.
Slot = Callable[[Callable[[], None]], AbstractContextManager[bool]]
# Threads per login slot: how far the runner-side reach probes run ahead of the logins.
REACH_AHEAD = 4
# The cause of a host check that never ran because reach found the login port down.
_NOT_LOGGED_IN = {
    causes.REFUSED: causes.CONNECT_REFUSED,
    causes.TIMEOUT: causes.CONNECT_TIMEOUT,
    causes.UNREACHABLE: causes.HOST_UNREACHABLE,
    causes.NAME_UNRESOLVED: causes.NAME_UNRESOLVED,
}


class Interrupted(KeyboardInterrupt):
    """Raised in the main thread by the app's SIGTERM (and Ctrl-C) handler.  A
    KeyboardInterrupt, so no ``except Exception`` on the way swallows it."""


@runtime_checkable
class OpensLogin(Protocol):
    """A runner check that may leave its connection to the login port open for the
    login to take over (``reach``): its results, and that connection if it kept one."""

    def reach(
        self,
        host: HostPlan,
        params: Mapping[str, Any],
        timeout: float,
        login_port: int | None,
        keep: bool,
    ) -> tuple[list[CheckResult], Handoff | None]: ...


class Audit:
    """What one audit's hosts share, dropped with the audit: the transports' files
    (``context``: known_hosts, keys), the checks by name, and the batches."""

    def __init__(self, context: AuditContext | None = None) -> None:
        self.context = context or AuditContext()
        self._kinds: dict[str, tuple[HostCheck | None, RunnerCheck | None, bool]] = {}
        self._batches: dict[tuple[Any, ...], Batch] = {}

    def kind(self, name: str) -> tuple[HostCheck | None, RunnerCheck | None, bool]:
        """The check named ``name`` as (host check, runner check, whether it opens the
        login), one of the first two None.  Kept: an isinstance against a runtime
        Protocol costs more than a host's whole plan."""
        kind = self._kinds.get(name)
        if kind is None:
            check = get_check(name)
            if isinstance(check, HostCheck):
                kind = (check, None, False)
            elif isinstance(check, RunnerCheck):
                kind = (None, check, isinstance(check, OpensLogin))
            else:
                kind = (None, None, False)
            self._kinds[name] = kind
        return kind

    def batch(self, host: HostPlan, plans: Sequence[tuple[CheckPlan, HostCheck]]) -> Batch:
        """The batch for ``host``; hosts with the same platform and checks share one."""
        key = (host.platform, tuple((plan.name, repr(plan.params)) for plan, _ in plans))
        batch = self._batches.get(key)
        if batch is None:
            batch = Batch.build(host, plans)
            if len(self._batches) < 1024:  # every host different: do not grow without bound
                self._batches[key] = batch
        return batch


@dataclass(frozen=True)
class Batch:
    """Every host check's steps, keys made unique as ``<check index>/<step key>``."""

    checks: tuple[tuple[CheckPlan, HostCheck, tuple[Step, ...]], ...]
    steps: tuple[Step, ...]

    @classmethod
    def build(cls, host: HostPlan, plans: Iterable[tuple[CheckPlan, HostCheck]]) -> Batch:
        checks = []
        steps: list[Step] = []
        for index, (plan, check) in enumerate(plans):
            own = tuple(check.steps(host.platform, plan.params))
            checks.append((plan, check, own))
            steps.extend(replace(s, key=f"{index}/{s.key}") for s in own)
        return cls(tuple(checks), tuple(steps))

    def outputs_for(self, index: int, outputs: Mapping[str, StepOutput]) -> dict[str, StepOutput]:
        own = self.checks[index][2]
        return {s.key: _rekey(outputs[f"{index}/{s.key}"], s.key) for s in own}


def _rekey(output: StepOutput, key: str) -> StepOutput:
    return StepOutput(key, output.exit_status, output.stdout, output.truncated, output.read)


def _results_for_all(
    host: HostPlan,
    plans: Sequence[CheckPlan],
    status: Status,
    summary: str,
    cause: str,
    evidence: str = "",
    facts: Mapping[str, Any] | None = None,
) -> list[CheckResult]:
    return [
        CheckResult(
            host.name, p.name, status, summary, evidence=evidence, cause=cause, facts=facts or {}
        )
        for p in plans
    ]


def _runner_checks(
    host: HostPlan, options: RunOptions, audit: Audit, login_port: int | None, keep: bool
) -> tuple[list[CheckResult], Handoff | None]:
    """The runner-side checks' results, and (with ``keep``) reach's connection to the
    login port, for the login to take over."""
    results: list[CheckResult] = []
    handoff: Handoff | None = None
    for plan in host.checks:
        _, check, opens_login = audit.kind(plan.name)
        if check is None:
            continue
        if opens_login:
            found, kept = cast(OpensLogin, check).reach(
                host, plan.params, options.connect_timeout, login_port, keep and handoff is None
            )
            results.extend(found)
            handoff = handoff or kept
        else:
            results.extend(check.run(host, plan.params, options.connect_timeout))
    return results, handoff


def _management_down(port: int | None, reach: Sequence[CheckResult]) -> CheckResult | None:
    """The reach result saying the login port is closed or silent, if any."""
    if port is None:
        return None
    for result in reach:
        if result.target == str(port) and result.status is Status.FAIL:
            return result
    return None


def host_checks(host: HostPlan, audit: Audit | None = None) -> list[tuple[CheckPlan, HostCheck]]:
    """The host's checks that run on the host (not the runner-side ``reach``)."""
    audit = audit or Audit()
    return [(p, c) for p in host.checks if (c := audit.kind(p.name)[0]) is not None]


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


def _no_wait(on_wait: Callable[[], None]) -> AbstractContextManager[bool]:
    return contextlib.nullcontext(True)


def audit_host(
    host: HostPlan,
    options: RunOptions,
    slot: Slot = _no_wait,
    gathered: Callable[[Sequence[CheckResult]], None] = lambda results: None,
    audit: Audit | None = None,
) -> HostResult | None:
    """Every check of one host.  Never raises: failures become results.

    The runner-side checks (``reach``) run first and are handed to
    ``gathered`` (so a run that stops keeps them); then the host waits in
    ``slot()`` for one of the ``--forks`` login slots, giving up reach's
    connection if it must wait.  A slot that yields False (the run is
    stopping) makes this return None: the host never logged in.  The host's
    deadline counts from the slot, plus reach's time.
    """
    audit = audit or Audit()
    started = time.monotonic()
    results: list[CheckResult] = []
    handoff: Handoff | None = None
    try:
        transport = open_transport(host, options, audit.context)
        host_plans = host_checks(host, audit)
        # reach's connection is worth keeping when a login will take it over.
        keep = bool(host_plans) and host.connection in TAKERS
        reached, handoff = _runner_checks(host, options, audit, transport.port, keep)
        results.extend(reached)
        gathered(tuple(results))
        down = _management_down(transport.port, results) if host_plans else None
        if down is not None:  # no login to wait for
            cause = _NOT_LOGGED_IN.get(down.cause, causes.TRANSPORT_ERROR)
            plans = [p for p, _ in host_plans]
            results.extend(
                _results_for_all(
                    host, plans, Status.UNREACHABLE, down.summary, cause, down.evidence
                )
            )
        elif host_plans:
            waited = time.monotonic()
            with slot(functools.partial(give_up, handoff)) as granted:
                if not granted:
                    return None
                started += time.monotonic() - waited
                handed, handoff = handoff, None  # the transport's from here
                results.extend(
                    _audit_on_host(host, options, audit, transport, host_plans, started, handed)
                )
    except Exception as exc:  # noqa: BLE001 - one bad host never spoils the run
        done = {r.check for r in results}
        results.extend(
            _results_for_all(
                host,
                [p for p in host.checks if p.name not in done],
                Status.ERROR,
                f"internal error: {type(exc).__name__}: {exc}",
                exc.cause if isinstance(exc, FleetError) else causes.TRANSPORT_ERROR,
            )
        )
    finally:
        give_up(handoff)  # reach's connection, if no login took it
    return HostResult(
        host=host.name,
        address=host.address,
        connection=host.connection,
        platform=host.platform.value,
        results=tuple(results),
        duration=time.monotonic() - started,
        port=host.port,
        user=host.user or "",
    )


def _audit_on_host(
    host: HostPlan,
    options: RunOptions,
    audit: Audit,
    transport: Transport,
    host_plans: Sequence[tuple[CheckPlan, HostCheck]],
    started: float,
    handoff: Handoff | None,
) -> list[CheckResult]:
    plans = [p for p, _ in host_plans]
    missing, lost = "no output from the host for this check", causes.OUTPUT_LOST
    planned = audit.batch(host, host_plans)
    if not planned.steps:
        # Nothing to run there (e.g. no targets): no login, the checks say why.
        give_up(handoff)
        return _evaluate(host, planned, {}, missing, lost)
    command: CommandResult | None = None
    try:
        transport.connect(handoff)
        budget = max(
            1.0, min(options.command_timeout, options.host_deadline - (time.monotonic() - started))
        )
        batch, nonce, script = _script_for(host, planned, budget)
        command = transport.run(script, budget)
        stdout = command.stdout
    except UnreachableError as exc:  # through a bastion: its facts name it (fleet.transports.jump)
        facts = exc.facts if isinstance(exc, BastionError) else None
        return _results_for_all(host, plans, Status.UNREACHABLE, str(exc), exc.cause, facts=facts)
    except CommandTimeout as exc:
        # Keep every section that came back before the deadline.
        stdout, missing, lost = (
            exc.partial_stdout,
            f"the audit command was abandoned: {exc}",
            exc.cause,
        )
    except TransportError as exc:
        return _results_for_all(host, plans, Status.ERROR, f"transport error: {exc}", exc.cause)
    finally:
        transport.close()
    outputs = split_sections(stdout, nonce, batch.steps)
    if command is not None and command.truncated:
        # What is missing was cut at the output cap: said so, never "no results".
        missing = f"output truncated: the host printed more than {options.max_output} bytes"
        missing += " (the cap) and this check's output was cut off"
        lost, outputs = causes.OUTPUT_TRUNCATED, _cut_at_cap(outputs)
    if command is not None and all(o.exit_status is None for o in outputs.values()):
        stderr = command.stderr.decode("utf-8", "replace").strip()[:500]
        said = f"the audit script produced no results (exit status {command.exit_status})"
        if command.truncated:
            said = missing.replace("this check's output was", "every check's output was")
        return _results_for_all(host, plans, Status.ERROR, said, lost, stderr)
    results = _evaluate(host, batch, outputs, missing, lost)
    if command is None:
        return results
    # Every check's evidence came back in the one command: that is its duration.
    return [r if r.duration else replace(r, duration=command.duration) for r in results]


def _cut_at_cap(outputs: Mapping[str, StepOutput]) -> dict[str, StepOutput]:
    """The sections lost past the command's output cap, marked truncated (not merely missing)."""
    return {
        key: output if output.exit_status is not None else replace(output, truncated=True)
        for key, output in outputs.items()
    }


def _evaluate(
    host: HostPlan, batch: Batch, outputs: Mapping[str, StepOutput], missing: str, lost: str
) -> list[CheckResult]:
    """Each check judges its own sections; one check's failure never costs another's
    result.  A check none of whose sections came back is ``missing`` (cause ``lost``)."""
    results: list[CheckResult] = []
    for index, (plan, check, _steps) in enumerate(batch.checks):
        own = batch.outputs_for(index, outputs)
        if own and all(o.exit_status is None for o in own.values()):
            results.extend(_results_for_all(host, [plan], Status.ERROR, missing, lost))
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
                    exc.cause if isinstance(exc, FleetError) else causes.UNPARSED,
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
    host: HostPlan, why: str, cause: str, gathered: Sequence[CheckResult] = ()
) -> HostResult:
    """A host the run stopped for: what it had gathered (reach's results), and ``why``
    for each check that had not finished: an ``error`` (the check could not run),
    never ``skipped``, which would let the host pass as ok on reach alone."""
    done = {r.check for r in gathered}
    left = [p for p in host.checks if p.name not in done]
    return HostResult(
        host=host.name,
        address=host.address,
        connection=host.connection,
        platform=host.platform.value,
        results=(*gathered, *_results_for_all(host, left, Status.ERROR, why, cause)),
        port=host.port,
        user=host.user or "",
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
    def claim(self, on_wait: Callable[[], None] = lambda: None) -> Iterator[bool]:
        """Yields True holding a slot, or False once the run is stopping.  A host that
        must wait calls ``on_wait`` first: reach's connection, held through the wait,
        would only sit on the host's sshd and go stale (fleet.transports.handoff)."""
        with self._changed:
            if not self._free and not self._stopped:
                on_wait()
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
    context: AuditContext | None = None,
) -> RunResult:
    """Audit ``hosts`` with at most ``options.forks`` at once.

    ``context``: the files ``check_transport_settings`` already read (known_hosts,
    keys), else they are read during this audit.

    Returns when every host is done, at ``options.run_deadline``, or on
    KeyboardInterrupt/Interrupted (then ``interrupted`` is set); hosts that
    had not finished keep what they gathered (reach), and their other checks
    are ``error`` results saying they were not audited (cause ``interrupted``
    or ``deadline``).
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
    audit = Audit(context)

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
            result = audit_host(
                hosts[index], options, slots.claim, functools.partial(keep, index), audit
            )
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
    except KeyboardInterrupt:  # Ctrl-C, or Interrupted from SIGTERM
        interrupted = True
    stop.set()
    slots.stop()

    def result(interrupted: bool) -> RunResult:
        with finished:
            snapshot, partial = dict(done), dict(gathered)
        return RunResult(
            inventory=inventory,
            playbook=playbook,
            started=started_at,
            finished=_now(),
            hosts=_as_stopped(hosts, options, snapshot, partial, interrupted),
            interrupted=interrupted,
            deadline_hit=deadline_hit,
            fleet_version=__version__,
        )

    return _kept_through_interrupts(result, interrupted)


def _kept_through_interrupts(result: Callable[[bool], RunResult], interrupted: bool) -> RunResult:
    """``result(interrupted)``; an interrupt that lands while it is built marks the run
    interrupted and builds it again, so what finished is never lost to it."""
    while True:
        try:
            return result(interrupted)
        except KeyboardInterrupt:
            interrupted = True


def _as_stopped(
    hosts: Sequence[HostPlan],
    options: RunOptions,
    done: Mapping[int, HostResult],
    gathered: Mapping[int, Sequence[CheckResult]],
    interrupted: bool,
) -> tuple[HostResult, ...]:
    """Every host's result once the run stops: the finished hosts', and the others as
    not audited (interrupted, or at the deadline) with what they had gathered."""
    if interrupted:
        cause, why = causes.INTERRUPTED, "the run was stopped before this host finished"
    else:
        cause = causes.DEADLINE
        why = f"the run deadline of {options.run_deadline or 0:g}s passed before this host finished"
    why = f"not audited ({cause}): {why}"
    return tuple(
        done.get(i) or _unfinished(host, why, cause, gathered.get(i, ()))
        for i, host in enumerate(hosts)
    )
