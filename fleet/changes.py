"""What changed between two runs of one inventory: the problems, and their diff.

A problem is identified by (host, check, target, status class), never by the
wording of its summary, so a check that stays failing is "still open", one that
passes again is "resolved" (only when a later run really audited that check), and
one that starts failing is "new".  Status
classes fold statuses that mean the same to an operator: ``fail`` and
``error`` are both "broken"; ``ok`` and ``skipped`` are not problems at all.

Plain data that the history store (``fleet.deliver.history``) keeps and the
reports (``fleet.render``) show; neither of those needs the other for it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path, PurePath

from fleet import causes
from fleet.model import STOPPED, CheckResult, RunResult, Status

# status -> class; statuses missing here are not problems
STATUS_CLASS = {
    Status.WARN: "warn",
    Status.FAIL: "fail",
    Status.ERROR: "fail",
    Status.UNREACHABLE: "unreachable",
}

ProblemKey = tuple[str, str, str, str]  # host, check, target ("" for none), status class
AuditedCheck = tuple[str, str, str]  # host, check, target ("" for none)


@dataclass(frozen=True)
class Change:
    """One problem in a Delta."""

    host: str
    check: str
    target: str | None
    status_class: str
    summary: str  # in the newer run for new/still open, the older run for resolved
    since: str | None = None  # ISO time the problem was first seen (unbroken), if known

    @property
    def key(self) -> ProblemKey:
        return (self.host, self.check, self.target or "", self.status_class)


@dataclass(frozen=True)
class Delta:
    """Problems that appeared, went away, or stayed between two runs."""

    new: tuple[Change, ...]
    resolved: tuple[Change, ...]
    still_open: tuple[Change, ...]
    previous_started: str | None = None  # None: no earlier run to compare with

    def is_new(self, host: str, check: str, target: str | None) -> bool:
        return any(
            (c.host, c.check, c.target or "") == (host, check, target or "") for c in self.new
        )

    def new_hosts(self) -> frozenset[str]:
        return frozenset(c.host for c in self.new)


_INVENTORY_SUFFIXES = (".ini", ".yml", ".yaml", ".json")
# What a label keeps: anything else (a separator, a control character) becomes "_".
_UNSAFE_IN_LABEL = re.compile(r"[^\w.+-]")
_LABEL_LIMIT = 100


def inventory_label(inventory: str) -> str:
    """A short name for an inventory, the same for reports, history and mail:
    "inventories/prod.ini", "inventories/prod/", "inventories/prod/hosts" -> "prod";
    "prod.eu" stays "prod.eu".  Idempotent, so a label maps to itself.

    Reports are written under ``<report dir>/<label>/``: the label is always one
    safe path component ("...ini" is "__", never "..")."""
    text = inventory.rstrip("/\\") or "inventory"
    path = PurePath(text)
    if path.name in ("", ".", ".."):
        path = PurePath(Path(text).resolve())
    stem = path.name[: -len(path.suffix)] if path.suffix in _INVENTORY_SUFFIXES else path.name
    if stem in ("hosts", "inventory") and path.parent.name not in ("", ".", ".."):
        stem = path.parent.name
    return _safe_component(stem) or "inventory"


def _safe_component(name: str) -> str:
    """``name`` as one directory name that stays where it is put: no separators or
    control characters, no leading dot (neither "." nor ".." nor hidden), bounded."""
    name = _UNSAFE_IN_LABEL.sub("_", name)[:_LABEL_LIMIT]
    dots = len(name) - len(name.lstrip("."))
    return "_" * dots + name[dots:]


def problem_key(result: CheckResult) -> ProblemKey | None:
    """The problem ``result`` shows; None when it shows none, or when the run stopped
    before the check ran (that is the run's state, not the host's)."""
    status_class = STATUS_CLASS.get(result.status)
    if status_class is None or result.cause in STOPPED:
        return None
    return (result.host, result.check, result.target or "", status_class)


def problems(run: RunResult) -> dict[ProblemKey, CheckResult]:
    """Every problem of ``run``, the first result that shows it."""
    found: dict[ProblemKey, CheckResult] = {}
    for r in run.results:
        key = problem_key(r)
        if key is not None:
            found.setdefault(key, r)
    return found


def change(r: CheckResult, key: ProblemKey, since: str | None) -> Change:
    return Change(r.host, r.check, r.target, key[3], r.summary, since)


def was_audited(result: CheckResult) -> bool:
    """The check really ran on the host: not skipped, not a failed login, not left
    undone by a stopped run.  (A result without a cause, from an older report,
    counts by its status.)"""
    return (
        result.status not in (Status.SKIPPED, Status.UNREACHABLE)
        and result.cause not in causes.NOT_AUDITED
    )


def audited_checks(run: RunResult) -> set[AuditedCheck]:
    """(host, check, target) that ``run`` really audited: only these can resolve a problem."""
    return {(r.host, r.check, r.target or "") for r in run.results if was_audited(r)}


def audited(run: RunResult) -> set[str]:
    """Hosts the run really audited (at least one check)."""
    return {host for host, _, _ in audited_checks(run)}


def diff(a: RunResult, b: RunResult) -> Delta:
    """How run ``b`` differs from the earlier run ``a``.

    A problem of ``a`` is resolved only when ``b`` really audited that check (on
    that host, against that target) and did not see it: a ``--limit`` run, an
    interrupted one, or a login that failed says nothing about what it did not look at.
    """
    seen = audited_checks(b)
    old, new = problems(a), problems(b)
    return Delta(
        new=tuple(change(r, k, b.started) for k, r in new.items() if k not in old),
        resolved=tuple(
            change(r, k, None) for k, r in old.items() if k not in new and k[:3] in seen
        ),
        still_open=tuple(change(r, k, a.started) for k, r in new.items() if k in old),
        previous_started=a.started,
    )
