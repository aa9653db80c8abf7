"""What changed between two runs of one inventory: the problems, and their diff.

A problem is identified by (host, check, target, status class), never by the
wording of its summary, so a check that stays failing is "still open", one that
passes again is "resolved", and one that starts failing is "new".  Status
classes fold statuses that mean the same to an operator: ``fail`` and
``error`` are both "broken"; ``ok`` and ``skipped`` are not problems at all.

Plain data that the history store (``fleet.deliver.history``) keeps and the
reports (``fleet.render``) show; neither of those needs the other for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePath

from fleet.model import CheckResult, RunResult, Status

# status -> class; statuses missing here are not problems
STATUS_CLASS = {
    Status.WARN: "warn",
    Status.FAIL: "fail",
    Status.ERROR: "fail",
    Status.UNREACHABLE: "unreachable",
}

ProblemKey = tuple[str, str, str, str]  # host, check, target ("" for none), status class


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


def inventory_label(inventory: str) -> str:
    """A short name for an inventory, the same for reports, history and mail:
    "inventories/prod.ini", "inventories/prod/", "inventories/prod/hosts" -> "prod";
    "prod.eu" stays "prod.eu".  Idempotent, so a label maps to itself."""
    text = inventory.rstrip("/\\") or "inventory"
    path = PurePath(text)
    if path.name in ("", ".", ".."):
        path = PurePath(Path(text).resolve())
    stem = path.name[: -len(path.suffix)] if path.suffix in _INVENTORY_SUFFIXES else path.name
    if stem in ("hosts", "inventory") and path.parent.name not in ("", ".", ".."):
        return path.parent.name
    return stem or "inventory"


def problem_key(result: CheckResult) -> ProblemKey | None:
    status_class = STATUS_CLASS.get(result.status)
    if status_class is None:
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


def audited(run: RunResult) -> set[str]:
    """Hosts the run really audited (not left unfinished by an interrupt)."""
    return {h.host for h in run.hosts if any(r.status is not Status.SKIPPED for r in h.results)}


def diff(a: RunResult, b: RunResult) -> Delta:
    """How run ``b`` differs from the earlier run ``a``.

    Only hosts both runs audited can have resolved problems: a ``--limit`` run
    says nothing about the hosts it left out.
    """
    audited_b = audited(b)
    both = audited(a) & audited_b
    old = {k: r for k, r in problems(a).items() if k[0] in both}
    new = {k: r for k, r in problems(b).items() if k[0] in audited_b}
    return Delta(
        new=tuple(change(r, k, b.started) for k, r in new.items() if k not in old),
        resolved=tuple(change(r, k, None) for k, r in old.items() if k not in new),
        still_open=tuple(change(r, k, a.started) for k, r in new.items() if k in old),
        previous_started=a.started,
    )
