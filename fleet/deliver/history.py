"""What changed since last night: a SQLite history of runs, and ``fleet diff``.

Problems and the diff of two runs are ``fleet.changes``; the store adds what
only history knows: since when a problem has been open, run after run.  It
keeps each run's JSON, so ``previous`` gives back a full RunResult and
``delta`` is ``diff`` plus that "since when".
"""

from __future__ import annotations

import sqlite3
import sys
from collections.abc import Callable, Iterable
from contextlib import closing
from dataclasses import replace
from pathlib import Path
from typing import TextIO

from fleet.changes import (
    Change,
    Delta,
    ProblemKey,
    audited_checks,
    change,
    diff,
    inventory_label,
    problems,
)
from fleet.errors import ConfigError, FleetError
from fleet.model import RunResult
from fleet.text import safe_text  # host text must not drive the terminal

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY,
    inventory TEXT NOT NULL,
    started TEXT NOT NULL,
    finished TEXT NOT NULL,
    result TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS runs_by_inventory ON runs (inventory, started);
CREATE TABLE IF NOT EXISTS problems (
    run_id INTEGER NOT NULL REFERENCES runs (id),
    host TEXT NOT NULL,
    check_name TEXT NOT NULL,
    target TEXT NOT NULL,
    status_class TEXT NOT NULL,
    PRIMARY KEY (run_id, host, check_name, target, status_class)
);
-- Which hosts a run audited: a --limit run says nothing about the others.
CREATE TABLE IF NOT EXISTS run_hosts (
    run_id INTEGER NOT NULL REFERENCES runs (id),
    host TEXT NOT NULL,
    PRIMARY KEY (run_id, host)
);
-- Which checks a run really audited (an interrupted run, a failed login: not all).
-- Runs recorded before this table have no rows in it: their run_hosts count.
CREATE TABLE IF NOT EXISTS run_checks (
    run_id INTEGER NOT NULL REFERENCES runs (id),
    host TEXT NOT NULL,
    check_name TEXT NOT NULL,
    target TEXT NOT NULL,
    PRIMARY KEY (run_id, host, check_name, target)
);
"""
# Concurrent runs on one report directory share this file: each waits its turn
# instead of failing with "database is locked".
_BUSY_TIMEOUT = 60.0


class HistoryError(FleetError):
    """The history store cannot be read or written."""


def default_path(run: RunResult, root: Path = Path("reports")) -> Path:
    """``reports/<inventory>/history.sqlite``."""
    return root / inventory_label(run.inventory) / "history.sqlite"


class History:
    """The runs of one or more inventories, in one SQLite file."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def _connect(self) -> sqlite3.Connection:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, timeout=_BUSY_TIMEOUT)
            # WAL: readers never block the writer; one writer at a time, waiting its turn.
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as e:
            raise HistoryError(f"history {self.path}: {e}") from e
        return db

    def record(self, run: RunResult) -> int:
        """Store ``run``; its id in the store."""
        with closing(self._connect()) as db, db:
            cursor = db.execute(
                "INSERT INTO runs (inventory, started, finished, result) VALUES (?, ?, ?, ?)",
                (inventory_label(run.inventory), run.started, run.finished, run.to_json()),
            )
            run_id = int(cursor.lastrowid or 0)
            db.executemany(
                "INSERT OR IGNORE INTO problems VALUES (?, ?, ?, ?, ?)",
                [(run_id, *key) for key in problems(run)],
            )
            checks = audited_checks(run)
            db.executemany(
                "INSERT OR IGNORE INTO run_hosts VALUES (?, ?)",
                [(run_id, host) for host in sorted({host for host, _, _ in checks})],
            )
            db.executemany(
                "INSERT OR IGNORE INTO run_checks VALUES (?, ?, ?, ?)",
                [(run_id, *check) for check in sorted(checks)],
            )
        return run_id

    def previous(self, inventory: str, before: str) -> RunResult | None:
        """The latest run of ``inventory`` that started before ``before`` (ISO time)."""
        with closing(self._connect()) as db:
            row = db.execute(
                "SELECT result FROM runs WHERE inventory = ? AND started < ?"
                " ORDER BY started DESC, id DESC LIMIT 1",
                (inventory_label(inventory), before),
            ).fetchone()
        return RunResult.from_json(row[0]) if row else None

    def delta(self, run: RunResult) -> Delta:
        """``diff`` against the previous run, with "since when" for problems still open."""
        before = self.previous(run.inventory, run.started)
        if before is None:
            new = tuple(change(r, k, run.started) for k, r in problems(run).items())
            return Delta(new=new, resolved=(), still_open=())
        delta = diff(before, run)
        # A check the previous run did not audit (--limit, interrupted): its problems
        # may be old ones.
        audited_before = audited_checks(before)
        unseen = [c for c in delta.new if c.key[:3] not in audited_before]
        keys = [c.key for c in delta.still_open + delta.resolved + tuple(unseen)]
        first = self._first_seen(run.inventory, run.started, keys)
        older = [c for c in unseen if c.key in first]
        new = tuple(c for c in delta.new if c not in older)
        still_open = tuple(
            replace(c, since=first.get(c.key, c.since)) for c in (*delta.still_open, *older)
        )
        resolved = tuple(replace(c, since=first.get(c.key)) for c in delta.resolved)
        return replace(delta, new=new, still_open=still_open, resolved=resolved)

    def _first_seen(
        self, inventory: str, before: str, keys: Iterable[ProblemKey]
    ) -> dict[ProblemKey, str]:
        """For each key: when its unbroken streak of runs up to ``before`` began."""
        wanted = set(keys)
        if not wanted:
            return {}
        with closing(self._connect()) as db:
            runs = db.execute(
                "SELECT id, started FROM runs WHERE inventory = ? AND started < ?"
                " ORDER BY started DESC, id DESC",
                (inventory_label(inventory), before),
            ).fetchall()
            since: dict[ProblemKey, str] = {}
            for run_id, started in runs:
                present = {
                    tuple(row)
                    for row in db.execute(
                        "SELECT host, check_name, target, status_class FROM problems"
                        " WHERE run_id = ?",
                        (run_id,),
                    )
                }
                looked = _audited_in(db, run_id)
                # A run that audited the check without the problem ended its streak; a
                # run that did not audit it (--limit, interrupted) says nothing.
                absent = {k for k in wanted if looked is None or looked(k)} - present
                wanted -= absent
                if not wanted:
                    break
                since.update({key: started for key in wanted & present})
        return since


def _audited_in(db: sqlite3.Connection, run_id: int) -> Callable[[ProblemKey], bool] | None:
    """Whether run ``run_id`` audited a problem's check; None when the store cannot say
    (a run recorded before hosts and checks were)."""
    checks = set(
        db.execute(
            "SELECT host, check_name, target FROM run_checks WHERE run_id = ?", (run_id,)
        ).fetchall()
    )
    if checks:
        return lambda key: key[:3] in checks
    hosts = {row[0] for row in db.execute("SELECT host FROM run_hosts WHERE run_id = ?", (run_id,))}
    if hosts:
        return lambda key: key[0] in hosts
    return None


def format_delta(delta: Delta) -> str:
    """The delta as text, for ``fleet diff`` and the plain-text mail body."""

    def line(c: Change) -> str:
        target = f" -> {c.target}" if c.target else ""
        since = f" (since {c.since})" if c.since else ""
        line = f"  {c.host} {c.check}{target}: {c.status_class}: {c.summary}{since}"
        return safe_text(line, limit=None)

    out = []
    for title, changes in (
        ("new", delta.new),
        ("resolved", delta.resolved),
        ("still open", delta.still_open),
    ):
        out.append(f"{title} ({len(changes)}):")
        out.extend(line(c) for c in changes)
    return "\n".join(out)


def diff_command(a: Path, b: Path, out: TextIO | None = None) -> int:
    """``fleet diff A.json B.json``: print what changed from A to B.

    Exit code: 0 when B has no new problem, 2 when it has (so a script can
    alert on regressions), 5 when a file cannot be read.
    """
    from fleet.render.reports import load_result

    out = out or sys.stdout
    try:
        older, newer = load_result(Path(a)), load_result(Path(b))
    except ConfigError as e:  # names the file and what is wrong with it
        print(f"fleet diff: {e}", file=sys.stderr)
        return 5
    delta = diff(older, newer)
    print(safe_text(f"{a} ({older.started}) -> {b} ({newer.started})", limit=None), file=out)
    print(format_delta(delta), file=out)
    return 2 if delta.new else 0
