"""Zones: an audit's hosts dispatched to runners inside each network zone.

``fleet audit --dispatch`` plans as usual, sends each zone's hosts (the
inventory variable ``fleet_zone``) to the task queue ``fleet.<zone>`` and
collects the zones' runs within the run's deadline (coordinator); ``fleet worker
--zone Z`` consumes that queue and audits from its own copy of the inventory
(worker).  Only references travel through the broker, never secrets.  Celery
(the ``zones`` extra) is imported by ``celeryq`` alone: a single runner needs none
of this package.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from fleet.dispatch.coordinator import budget, labelled, zone_runs
from fleet.dispatch.zones import TASK_OPTIONS, ZoneTask, source_digest, zones_of
from fleet.model import RunResult, Selection

if TYPE_CHECKING:
    from fleet.app.request import AuditRequest
    from fleet.plan import HostPlan

__all__ = ["dispatched_runs"]


def dispatched_runs(
    hosts: Sequence[HostPlan],
    request: AuditRequest,
    *,
    inventory: Path,
    playbook: Path,
    label: str,
    selection: Selection,
    observers: Sequence[object] = (),
) -> list[RunResult]:
    """The zones' runs of an audit (one per zone, for fleet.app to merge), each under the
    coordinator's labels and ``selection`` (what the whole audit covers); hosts whose
    zone could not be audited are ``zone-unavailable``."""
    from fleet.dispatch.celeryq import coordinator_queue

    zones_of(hosts)  # every host has a zone: a ConfigError before anything is sent
    queue, down = coordinator_queue()
    inventory_digest, playbook_digest = source_digest(inventory), source_digest(playbook)
    options = {name: getattr(request, name) for name in TASK_OPTIONS}

    def task(zone: str, members: Sequence[HostPlan], seconds: float) -> ZoneTask:
        return ZoneTask(
            zone=zone,
            inventory=label,
            inventory_digest=inventory_digest,
            playbook=str(playbook),
            playbook_digest=playbook_digest,
            hosts=tuple(h.name for h in members),
            options=options,
            deadline=seconds,
        )

    def on_host(result: object) -> None:
        for observer in observers:
            observer(result)  # type: ignore[operator]

    biggest = max(len(m) for m in zones_of(hosts).values())
    wait = budget(biggest, request.forks, request.host_deadline, request.deadline)
    runs = zone_runs(hosts, queue, task, wait, on_host, down=down)
    return labelled(runs, label, str(playbook), selection)
