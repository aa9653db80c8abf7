"""The coordinator: each zone's hosts sent to its queue, the zones' runs collected in time.

A zone is given up, its hosts ``error`` with cause ``zone-unavailable`` ("not
audited (zone worker unavailable)"), when no worker consumes its queue before
sending, when the worker that took the task stops answering, when a worker
refuses the task (another copy of the inventory), or when no result came by the
run's deadline.  Never a hang, never a silent gap: every planned host comes back.
The queue is a protocol (``ZoneQueue``); fleet.dispatch.celeryq is Celery's.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any, Protocol

from fleet import __version__, causes
from fleet.dispatch.zones import ZoneTask, queue_name, unavailable, zones_of
from fleet.model import HostResult, RunResult, Selection
from fleet.plan import HostPlan

# Seconds between looks at the zones' workers while waiting, and how many looks in a
# row may miss a zone's worker before the zone is given up (one slow reply is no death).
POLL = 1.0
MISSES = 2
# Seconds a worker's run ends before the coordinator's deadline, for its result to travel.
MARGIN = 2.0


class Pending(Protocol):
    """A task sent to a zone's queue."""

    def outcome(self, wait: float) -> Mapping[str, Any] | None:
        """The task's reply ({"run": ...} or {"refused": why}) if it came within ``wait``
        seconds, else None; a task that failed is a refusal saying why."""
        ...

    def worker(self) -> str | None:
        """The worker that started the task, once one has."""
        ...

    def cancel(self) -> None: ...


class ZoneQueue(Protocol):
    """The broker as the coordinator uses it."""

    def consumers(self) -> Mapping[str, set[str]]:
        """Queue name -> the live workers consuming it (empty when the broker is down)."""
        ...

    def send(self, zone: str, task: Mapping[str, Any], expires: float) -> Pending: ...


@dataclass
class _Zone:
    name: str
    hosts: list[HostPlan]
    pending: Pending | None = None
    misses: int = 0
    run: RunResult | None = None
    why: str = ""  # why the zone was given up


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def budget(hosts: int, forks: int, host_deadline: float, deadline: float | None) -> float:
    """How long the coordinator waits: ``--deadline``, else what a zone's run can take at
    most (its hosts in waves of ``forks``, each within ``--host-deadline``) and a minute."""
    if deadline is not None:
        return deadline
    return host_deadline * math.ceil(max(1, hosts) / max(1, forks)) + 60.0


def zone_runs(
    hosts: Sequence[HostPlan],
    queue: ZoneQueue,
    task: Callable[[str, Sequence[HostPlan], float], ZoneTask],
    wait: float,
    on_host: Callable[[HostResult], None] = lambda _: None,
    *,
    down: str = "",
) -> list[RunResult]:
    """One RunResult per zone (audited, or its hosts not audited and why), within ``wait``
    seconds.  ``task(zone, hosts, seconds)`` is the task for a zone's worker; ``down``
    says why the broker cannot be used (then no zone is sent)."""
    started, start_text = time.monotonic(), _now()
    zones = [_Zone(name, members) for name, members in zones_of(hosts).items()]
    consumers = {} if down else queue.consumers()
    for zone in zones:
        zone.why = down
        if not down and not consumers.get(queue_name(zone.name)):
            zone.why = f"no worker consumes queue {queue_name(zone.name)}"
        if zone.why:
            continue
        seconds = max(1.0, wait - MARGIN - (time.monotonic() - started))
        job = task(zone.name, zone.hosts, seconds).to_dict()
        try:
            zone.pending = queue.send(zone.name, job, expires=wait)
        except Exception as exc:  # noqa: BLE001 - a broker gone now: this zone is not audited
            zone.why = f"the broker failed sending the task: {type(exc).__name__}: {exc}"
    interrupted = False
    try:
        _collect(zones, queue, started + wait, on_host)
    except KeyboardInterrupt:
        interrupted = True
    for zone in zones:
        if zone.run is None and zone.pending is not None:
            zone.pending.cancel()
    return [_result(z, start_text, interrupted, wait) for z in zones]


def _collect(
    zones: list[_Zone], queue: ZoneQueue, end: float, on_host: Callable[[HostResult], None]
) -> None:
    """Wait for the zones sent, giving up those whose worker is gone, until ``end``."""
    last_look = time.monotonic()
    while True:
        waiting = [z for z in zones if z.pending is not None and z.run is None and not z.why]
        if not waiting or time.monotonic() >= end:
            return
        for zone in waiting:
            assert zone.pending is not None
            left = end - time.monotonic()
            try:
                reply = zone.pending.outcome(max(0.0, min(POLL / len(waiting), left)))
            except Exception as exc:  # noqa: BLE001 - a broker gone mid-run: the others go on
                zone.why = f"the broker failed while waiting: {type(exc).__name__}: {exc}"
                continue
            if reply is not None:
                _take(zone, reply, on_host)
        if time.monotonic() - last_look >= POLL:
            _look(waiting, queue.consumers())
            last_look = time.monotonic()


def _take(zone: _Zone, reply: Mapping[str, Any], on_host: Callable[[HostResult], None]) -> None:
    if "run" not in reply:
        zone.why = f"the worker refused the task: {reply.get('refused', 'no reason given')}"
        return
    try:
        zone.run = RunResult.from_dict(reply["run"])
    except (KeyError, TypeError, ValueError) as exc:
        zone.why = f"the worker's result is not a fleet run: {exc}"
        return
    planned = {h.name for h in zone.hosts}
    returned = {h.host for h in zone.run.hosts}
    if returned != planned:
        zone.run, zone.why = None, "the worker returned other hosts than those sent"
        return
    for host in zone.run.hosts:
        on_host(host)


def _look(waiting: Sequence[_Zone], consumers: Mapping[str, set[str]]) -> None:
    """Give up the zones whose worker (the one that started the task, else any of the
    queue's) missed ``MISSES`` looks in a row."""
    for zone in waiting:
        assert zone.pending is not None
        live = consumers.get(queue_name(zone.name), set())
        worker = zone.pending.worker()
        alive = worker in live if worker else bool(live)
        zone.misses = 0 if alive else zone.misses + 1
        if zone.misses >= MISSES and zone.run is None:
            who = f"worker {worker}" if worker else f"every worker of {queue_name(zone.name)}"
            zone.why = f"{who} stopped answering before the zone's result came"


def _result(zone: _Zone, started: str, interrupted: bool, wait: float) -> RunResult:
    if zone.run is not None:
        return zone.run
    if interrupted and not zone.why:
        hosts = unavailable(zone.hosts, "the run was stopped", causes.INTERRUPTED)
    else:
        why = zone.why or f"no result from the zone's worker within the run's {wait:g}s"
        hosts = unavailable(zone.hosts, f"zone {zone.name}: {why}")
    return RunResult(
        inventory="",
        playbook="",
        started=started,
        finished=_now(),
        hosts=tuple(hosts),
        interrupted=interrupted,
        deadline_hit=not zone.why and not interrupted,
        fleet_version=__version__,
    )


def labelled(
    runs: Sequence[RunResult], inventory: str, playbook: str, selection: Selection
) -> list[RunResult]:
    """The zones' runs as parts of the coordinator's audit: its inventory and playbook
    labels and its selection (the digests proved the workers' copies are the same files)."""
    return [
        replace(run, inventory=inventory, playbook=playbook, selection=selection) for run in runs
    ]
