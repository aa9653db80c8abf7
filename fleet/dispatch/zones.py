"""Zones: which runner can reach a host, named by the inventory (``fleet_zone``).

Pure: the plan's hosts grouped by zone, each zone's queue name, the task a
zone's worker receives (references only: no secret travels through the broker),
and the results of hosts whose zone could not be audited.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fleet import causes
from fleet.errors import ConfigError
from fleet.model import HostResult
from fleet.plan import HostPlan

ZONE_VAR = "fleet_zone"
QUEUE_PREFIX = "fleet."
TASK_NAME = "fleet.audit_zone"
_ZONE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$")
# What a coordinator may set on a worker's audit: timings and sizes, never a path,
# a credential or a safety switch (host key checking stays the worker's own).
TASK_OPTIONS = ("forks", "connect_timeout", "command_timeout", "host_deadline", "group_names")


def queue_name(zone: str) -> str:
    """The Celery queue a zone's workers consume: ``fleet.<zone>``."""
    return f"{QUEUE_PREFIX}{zone}"


def zone_of(host: HostPlan) -> str:
    """The host's zone; ConfigError when it has none or a name unfit for a queue."""
    zone = host.vars.get(ZONE_VAR)
    if zone is None or zone == "":
        raise ConfigError(
            f"host {host.name} has no {ZONE_VAR}: with --dispatch every host names the zone "
            f"whose workers reach it (e.g. {ZONE_VAR}: dmz in its group_vars; a default for "
            f"all in group_vars/all.yml)"
        )
    if not isinstance(zone, str) or not _ZONE_NAME.match(zone):
        raise ConfigError(
            f"host {host.name}: {ZONE_VAR} {str(zone)[:70]!r} is not a zone name "
            "(letters, digits, '-' and '_', at most 63)"
        )
    return zone


def zones_of(hosts: Sequence[HostPlan]) -> dict[str, list[HostPlan]]:
    """The hosts by zone, zones sorted by name, hosts in plan order."""
    found: dict[str, list[HostPlan]] = {}
    for host in hosts:
        found.setdefault(zone_of(host), []).append(host)
    return dict(sorted(found.items()))


def _files(source: Path) -> Iterator[Path]:
    """What an inventory is read from: the directory's files (hidden ones skipped, as
    the loader skips them), or the file and the group_vars/host_vars beside it."""
    if source.is_file():
        yield source
        trees = [source.parent / "group_vars", source.parent / "host_vars"]
    else:
        trees = [source]
    for tree in trees:
        if tree.is_dir():
            for path in tree.rglob("*"):
                parts = path.relative_to(tree).parts
                if path.is_file() and not any(p.startswith(".") for p in parts):
                    yield path


def source_digest(source: Path) -> str:
    """``sha256:<hex>`` of an inventory (or playbook) as files: names and bytes, so that a
    coordinator and a worker can tell they hold the same copy without sending it.
    Vaulted files count as their ciphertext: the digest reveals no secret."""
    source = source.resolve()
    base = source.parent if source.is_file() else source
    digest = hashlib.sha256()
    for path in sorted(set(_files(source))):
        name = path.relative_to(base).as_posix().encode()
        body = path.read_bytes()
        digest.update(b"%d:%s%d:" % (len(name), name, len(body)) + body)
    return f"sha256:{digest.hexdigest()}"


@dataclass(frozen=True)
class ZoneTask:
    """What travels through the broker to a zone's worker: references, never secrets.

    The worker holds its own copy of the inventory and playbook (and of any vault
    password and login key) and re-plans ``hosts`` from it; the digests prove both
    copies are the same.  ``inventory``/``playbook`` are the labels the report shows.
    """

    zone: str
    inventory: str
    inventory_digest: str
    playbook: str
    playbook_digest: str
    hosts: tuple[str, ...]
    options: Mapping[str, Any] = field(default_factory=dict)
    deadline: float | None = None  # seconds the worker's run may take

    def to_dict(self) -> dict[str, Any]:
        return {
            "zone": self.zone,
            "inventory": self.inventory,
            "inventory_digest": self.inventory_digest,
            "playbook": self.playbook,
            "playbook_digest": self.playbook_digest,
            "hosts": list(self.hosts),
            "options": {k: v for k, v in self.options.items() if k in TASK_OPTIONS},
            "deadline": self.deadline,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ZoneTask:
        """The task from the broker's JSON; ValueError for anything else."""
        try:
            hosts = tuple(str(h) for h in data["hosts"])
            given = dict(data.get("options") or {})
            options = {k: v for k, v in given.items() if k in TASK_OPTIONS}
            deadline = data.get("deadline")
            return cls(
                zone=str(data["zone"]),
                inventory=str(data["inventory"]),
                inventory_digest=str(data["inventory_digest"]),
                playbook=str(data["playbook"]),
                playbook_digest=str(data["playbook_digest"]),
                hosts=hosts,
                options=options,
                deadline=None if deadline is None else float(deadline),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a fleet zone task: {exc}") from exc


def unavailable(
    hosts: Sequence[HostPlan], why: str, cause: str = causes.ZONE_UNAVAILABLE
) -> list[HostResult]:
    """The results of hosts no worker audited: every planned check an ``error`` saying
    so (never skipped, never a gap), as the runner marks hosts a run stopped for."""
    from fleet.runner import _unfinished

    words = causes.CAUSES.get(cause, cause)
    return [_unfinished(host, f"not audited ({words}): {why}", cause) for host in hosts]
