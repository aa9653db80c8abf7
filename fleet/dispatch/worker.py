"""A zone's worker: a task from the broker -> the audit of its hosts, from its own copy.

The worker was started with its own inventory and playbook (and vault password,
login keys); a task names hosts and carries the coordinator's digests of both
files.  The worker refuses a task whose digests differ from its copy's, or whose
hosts it does not plan in its own zone, and otherwise runs the application's own
audit path (``audit``, given by fleet.cli: fleet.app's prepare and run) and replies
with the run as report.json's JSON.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from fleet.dispatch.zones import ZoneTask, source_digest, zone_of
from fleet.errors import ConfigError, FleetError
from fleet.model import RunResult
from fleet.plan import HostPlan

# The application's audit of some hosts: request overrides, and a check of the planned
# hosts that runs before any of them is contacted (raising ConfigError to refuse).
Audit = Callable[[Mapping[str, Any], Callable[[Sequence[HostPlan]], None]], RunResult]


@dataclass(frozen=True)
class ZoneWorker:
    zone: str
    inventory: Path
    playbook: Path
    audit: Audit

    def __call__(self, data: Mapping[str, Any]) -> dict[str, Any]:
        """``{"run": report.json's dict}``, or ``{"refused": why}`` (errors as values)."""
        try:
            task = ZoneTask.from_dict(data)
            self.check_task(task)
            overrides = {**task.options, "limit": ":".join(task.hosts), "deadline": task.deadline}
            run = self.audit(overrides, functools.partial(self.check_plan, task))
        except (ValueError, FleetError) as exc:
            return {"refused": str(exc)}
        return {"run": replace(run, inventory=task.inventory, playbook=task.playbook).to_dict()}

    def check_task(self, task: ZoneTask) -> None:
        """The task is for this zone and the same inventory and playbook as this copy."""
        if task.zone != self.zone:
            raise ConfigError(f"task for zone {task.zone!r} sent to a worker of zone {self.zone!r}")
        for what, path, theirs in (
            ("inventory", self.inventory, task.inventory_digest),
            ("playbook", self.playbook, task.playbook_digest),
        ):
            ours = source_digest(path)
            if ours != theirs:
                raise ConfigError(
                    f"this worker's {what} ({path}, {ours[:19]}) differs from the "
                    f"coordinator's ({theirs[:19]}): give both the same copy"
                )

    def check_plan(self, task: ZoneTask, hosts: Sequence[HostPlan]) -> None:
        """The worker planned exactly the hosts sent, each in its own zone."""
        planned = {h.name for h in hosts}
        if planned != set(task.hosts):
            missing = sorted(set(task.hosts) - planned)[:5]
            extra = sorted(planned - set(task.hosts))[:5]
            raise ConfigError(f"this worker plans other hosts: missing {missing}, extra {extra}")
        strangers = sorted(h.name for h in hosts if zone_of(h) != self.zone)[:5]
        if strangers:
            raise ConfigError(f"hosts outside zone {self.zone!r} here: {', '.join(strangers)}")
