"""Results as data: what an audit found, in types every stage shares.

Renderers, the diagnosis and the history read only these.  They are frozen
dataclasses with an explicit ``Status``; no ``__bool__``.  ``RunResult`` has a
versioned JSON form that loads back into equal objects.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from functools import cached_property
from typing import Any

from fleet import causes

# The causes of a check the run stopped (or, with --dispatch, its zone's worker never
# finished) before it ran: the host was not audited, whatever its reach results say.
STOPPED = frozenset({causes.INTERRUPTED, causes.DEADLINE, causes.ZONE_UNAVAILABLE})

SCHEMA_VERSION = 2  # 2: every result carries a ``cause``
READABLE_SCHEMA_VERSIONS = (1, 2)  # version 1 results load with no cause


class Platform(str, Enum):
    """The family of a host's system: which shell the audit script is written for."""

    UNIX = "unix"
    WINDOWS = "windows"


class Status(str, Enum):
    """How one check (or one check against one target) ended."""

    OK = "ok"
    WARN = "warn"
    FAIL = "fail"
    ERROR = "error"  # the check could not run or its output made no sense
    UNREACHABLE = "unreachable"  # we could not log into the host
    SKIPPED = "skipped"

    @property
    def severity(self) -> int:
        return _SEVERITY[self]

    def __str__(self) -> str:
        return self.value


_SEVERITY = {
    Status.SKIPPED: 0,
    Status.OK: 1,
    Status.WARN: 2,
    Status.ERROR: 3,
    Status.FAIL: 4,
    Status.UNREACHABLE: 5,
}


def worst(statuses: Iterable[Status]) -> Status:
    """The most severe of ``statuses`` (``skipped`` when there are none)."""
    return max(statuses, key=lambda s: s.severity, default=Status.SKIPPED)


@dataclass(frozen=True)
class CommandResult:
    """What one remote (or local) command did.  Output is capped bytes."""

    command: str
    exit_status: int
    stdout: bytes
    stderr: bytes = b""
    duration: float = 0.0
    truncated: bool = False


@dataclass(frozen=True)
class CheckResult:
    """One check on one host, optionally against one target."""

    host: str
    check: str
    status: Status
    summary: str
    target: str | None = None
    facts: Mapping[str, Any] = field(default_factory=dict)
    evidence: str = ""
    duration: float = 0.0
    cause: str = ""  # a slug of fleet.causes; "" when ok (or read from a version 1 result)

    def to_dict(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "check": self.check,
            "target": self.target,
            "status": self.status.value,
            "cause": self.cause,
            "summary": self.summary,
            "facts": dict(self.facts),
            "evidence": self.evidence,
            "duration": round(self.duration, 6),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CheckResult:
        return cls(
            host=data["host"],
            check=data["check"],
            status=Status(data["status"]),
            summary=data["summary"],
            target=data.get("target"),
            facts=dict(data.get("facts") or {}),
            evidence=data.get("evidence", ""),
            duration=float(data.get("duration") or 0.0),
            cause=data.get("cause") or "",
        )


@dataclass(frozen=True)
class HostResult:
    """Every check result of one host."""

    host: str
    address: str
    connection: str
    platform: str  # "unix" | "windows"
    results: tuple[CheckResult, ...]
    duration: float = 0.0
    port: int | None = None  # the login port (ansible_port), None for the default
    user: str = ""  # the login user (ansible_user), "" when not set

    @property
    def status(self) -> Status:
        return worst(r.status for r in self.results)

    @property
    def unreachable(self) -> bool:
        return any(r.status is Status.UNREACHABLE for r in self.results)

    @property
    def stopped(self) -> str:
        """``interrupted`` or ``deadline`` when the run stopped before this host was
        audited (its reach results may still be ok); "" for a host that finished."""
        return next((r.cause for r in self.results if r.cause in STOPPED), "")

    def to_dict(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "address": self.address,
            "connection": self.connection,
            "platform": self.platform,
            "duration": round(self.duration, 6),
            "port": self.port,
            "user": self.user,
            "results": [r.to_dict() for r in self.results],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> HostResult:
        return cls(
            host=data["host"],
            address=data.get("address", ""),
            connection=data.get("connection", ""),
            platform=data.get("platform", "unix"),
            duration=float(data.get("duration") or 0.0),
            port=data["port"] if isinstance(data.get("port"), int) else None,
            user=str(data.get("user") or ""),
            results=tuple(CheckResult.from_dict(r) for r in data.get("results", ())),
        )


# Characters json leaves raw with ensure_ascii=False that a terminal or an editor would
# act on (DEL, C1, bidi controls, line separators) or that UTF-8 cannot encode (lone
# surrogates): written as \\u escapes, which load back into the same text.
_NOT_PRINTABLE = re.compile(
    "[\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029\ud800-\udfff]"
)


def _finite(value: Any) -> Any:
    """``value`` with every NaN or infinite float replaced by None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


@dataclass(frozen=True)
class Shard:
    """Part ``index`` (1-based) of ``total`` of an audit's selected hosts (``--shard K/N``)."""

    index: int
    total: int

    def __str__(self) -> str:
        return f"{self.index}/{self.total}"


@dataclass(frozen=True)
class Selection:
    """What an audit was asked to cover, so that the partial runs of one audit can be
    merged and runs of different audits told apart (``fleet merge``).

    ``inventory_digest`` covers the selected hosts' plans (name, connection, address,
    port, rendered check parameters); ``playbook_digest`` the playbook file's bytes;
    ``host_count`` is every host selected (after ``--limit``, before ``--shard``);
    ``hosts`` their names in inventory order, kept by a shard run only (a whole run's
    own hosts are those).
    """

    inventory_digest: str
    playbook_digest: str
    host_count: int
    shard: Shard | None = None
    hosts: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "inventory_digest": self.inventory_digest,
            "playbook_digest": self.playbook_digest,
            "host_count": self.host_count,
            "shard": str(self.shard) if self.shard else None,
            "hosts": list(self.hosts),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Selection:
        shard = None
        if data.get("shard"):
            index, _, total = str(data["shard"]).partition("/")
            shard = Shard(int(index), int(total))
        return cls(
            inventory_digest=str(data.get("inventory_digest") or ""),
            playbook_digest=str(data.get("playbook_digest") or ""),
            host_count=int(data.get("host_count") or 0),
            shard=shard,
            hosts=tuple(str(name) for name in data.get("hosts") or ()),
        )


@dataclass(frozen=True)
class RunResult:
    """A whole audit: what was asked, when, and every host's results."""

    inventory: str
    playbook: str
    started: str  # ISO 8601, UTC
    finished: str
    hosts: tuple[HostResult, ...]
    interrupted: bool = False
    deadline_hit: bool = False
    fleet_version: str = ""
    # None in results written before fleet could merge runs (they still load).
    selection: Selection | None = None

    @property
    def results(self) -> tuple[CheckResult, ...]:
        return tuple(r for h in self.hosts for r in h.results)

    def counts(self) -> dict[str, int]:
        """Number of check results per status, every status present."""
        out = {s.value: 0 for s in Status}
        for r in self.results:
            out[r.status.value] += 1
        return out

    @property
    def failed_hosts(self) -> tuple[str, ...]:
        return tuple(h.host for h in self.hosts if h.status in (Status.FAIL, Status.ERROR))

    @property
    def unreachable_hosts(self) -> tuple[str, ...]:
        return tuple(h.host for h in self.hosts if h.unreachable)

    def exit_code(self) -> int:
        """ansible-playbook's codes: 4 unreachable wins over 2 failed, 99 interrupted."""
        if self.interrupted:
            return 99
        if self.unreachable_hosts:
            return 4
        if self.failed_hosts:
            return 2
        return 0

    def host(self, name: str) -> HostResult:
        for h in self.hosts:
            if h.host == name:
                return h
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": "fleet.run",
            "schema_version": SCHEMA_VERSION,
            "fleet_version": self.fleet_version,
            "inventory": self.inventory,
            "playbook": self.playbook,
            "started": self.started,
            "finished": self.finished,
            "interrupted": self.interrupted,
            "deadline_hit": self.deadline_hit,
            "counts": self.counts(),
            "selection": self.selection.to_dict() if self.selection else None,
            "hosts": [h.to_dict() for h in self.hosts],
        }

    def to_json(self) -> str:
        return self._json

    @cached_property
    def _json(self) -> str:
        # Once per run (report.json and the history store the same text).  No indent:
        # json's C encoder only runs without one (much faster at fleet scale);
        # `jq . report.json` pretty-prints for a human.
        data = self.to_dict()
        try:
            text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        except ValueError:  # NaN or infinity in the facts: JSON has no such number
            text = json.dumps(_finite(data), ensure_ascii=False, separators=(",", ":"))
        return _NOT_PRINTABLE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunResult:
        if not isinstance(data, Mapping) or data.get("schema") != "fleet.run":
            raise ValueError('not a fleet run result (no "schema": "fleet.run")')
        version = data.get("schema_version")
        if version not in READABLE_SCHEMA_VERSIONS:
            readable = ", ".join(map(str, READABLE_SCHEMA_VERSIONS))
            raise ValueError(f"run result schema version {version!r}; this fleet reads {readable}")
        return cls(
            inventory=data["inventory"],
            playbook=data["playbook"],
            started=data["started"],
            finished=data["finished"],
            interrupted=bool(data.get("interrupted", False)),
            deadline_hit=bool(data.get("deadline_hit", False)),
            fleet_version=data.get("fleet_version", ""),
            hosts=tuple(HostResult.from_dict(h) for h in data.get("hosts", ())),
            selection=Selection.from_dict(data["selection"]) if data.get("selection") else None,
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> RunResult:
        return cls.from_dict(json.loads(text))
