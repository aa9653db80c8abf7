"""The HTML report: one self-contained file an operator opens from the nightly mail.

It leads with news: the findings (grouped by cause, each with its fix), then what
is new and what was resolved since the previous run; the problems still open are
counted and folded away.  Then the host x check table, the connectivity matrix
and every host's details with the raw evidence folded away.  Times read as people
say them ("3 nights ago, 2026-12-02 02:30 UTC"), counted from the run itself so
that a mail read days later still says the same.  Inline CSS only: no JavaScript,
no external fetch (a Content-Security-Policy says so to the browser too); wide
tables scroll in their own box, so a phone never scrolls the page sideways.  Every
value the template prints loses its control characters (``fleet.text``) and is
autoescaped, so whatever a host printed shows as plain text.

``report_view`` turns a RunResult into plain data for the template; it is pure
and is what the tests look at when they want more than the final markup.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import jinja2
import markupsafe

from fleet.changes import Change, Delta, inventory_label
from fleet.diagnose import CAUSES, Diagnosis, PairVerdict, diagnose
from fleet.model import CheckResult, HostResult, RunResult, Status, worst
from fleet.text import clean

# Checks in the order of the KB's procedure; others follow in the order met.
CHECK_ORDER = ("binding", "ipconfig", "ping", "smtp", "reach")


@dataclass(frozen=True)
class Cell:
    """One host x check cell: the worst status of the check's results on the host."""

    status: str
    text: str
    title: str
    new: bool = False


@dataclass(frozen=True)
class HostRow:
    host: str
    anchor: str
    address: str
    platform: str
    status: str
    cells: tuple[Cell | None, ...]


@dataclass(frozen=True)
class ResultRow:
    check: str
    target: str
    status: str
    summary: str
    duration: str
    evidence: str
    facts: str  # pretty JSON, "" when none
    new: bool


@dataclass(frozen=True)
class HostDetail:
    host: str
    anchor: str
    address: str
    connection: str
    platform: str
    status: str
    duration: str
    results: tuple[ResultRow, ...]


def _checks(run: RunResult) -> tuple[str, ...]:
    seen = dict.fromkeys(r.check for r in run.results)
    known = [c for c in CHECK_ORDER if c in seen]
    return tuple(known + [c for c in seen if c not in CHECK_ORDER])


def _is_new(delta: Delta | None, r: CheckResult) -> bool:
    return delta is not None and delta.is_new(r.host, r.check, r.target)


def _cell(results: Sequence[CheckResult], delta: Delta | None) -> Cell | None:
    if not results:
        return None
    status = worst(r.status for r in results)
    if len(results) == 1:
        text = status.value
    else:
        ok = sum(r.status in (Status.OK, Status.SKIPPED) for r in results)
        text = f"{status.value} {ok}/{len(results)}"
    title = "\n".join(
        f"{r.target + ': ' if r.target else ''}{r.status.value}: {r.summary}" for r in results
    )
    return Cell(status.value, text, title, any(_is_new(delta, r) for r in results))


def _host_row(h: HostResult, anchor: str, checks: Sequence[str], delta: Delta | None) -> HostRow:
    cells = tuple(_cell([r for r in h.results if r.check == c], delta) for c in checks)
    return HostRow(h.host, anchor, h.address, h.platform, h.status.value, cells)


def _facts_text(facts: Mapping[str, Any]) -> str:
    """One ``key: JSON`` line per fact (json's C encoder; ``indent`` would take its
    pure-Python one, the biggest cost of a 200-host report)."""
    return "\n".join(
        f"{key}: {json.dumps(facts[key], sort_keys=True, default=str, ensure_ascii=False)}"
        for key in sorted(facts)
    )


FOLD_OK_TARGETS = 20  # beyond this many healthy probes of one check, one summary row


def _result_row(r: CheckResult, delta: Delta | None) -> ResultRow:
    return ResultRow(
        check=r.check,
        target=r.target or "",
        status=r.status.value,
        summary=r.summary,
        duration=f"{r.duration:.2f}s",
        evidence=r.evidence,
        # Raw facts of every healthy probe would make a mail of tens of MB at
        # fleet scale: keep them where someone will look (problems, host-level).
        facts=_facts_text(r.facts) if r.status is not Status.OK or not r.target else "",
        new=_is_new(delta, r),
    )


def _host_detail(h: HostResult, anchor: str, delta: Delta | None) -> HostDetail:
    healthy: dict[str, list[str]] = {}
    for r in h.results:
        if r.target and r.status is Status.OK:
            healthy.setdefault(r.check, []).append(r.target)
    folded = {c for c, targets in healthy.items() if len(targets) > FOLD_OK_TARGETS}
    rows = [
        _result_row(r, delta)
        for r in h.results
        if not (r.check in folded and r.target and r.status is Status.OK)
    ]
    for check in sorted(folded):
        names = healthy[check]
        shown = ", ".join(names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "")
        rows.append(
            ResultRow(check, f"{len(names)} targets", "ok", f"all ok: {shown}", "", "", "", False)
        )
    return HostDetail(
        h.host,
        anchor,
        h.address,
        h.connection,
        h.platform,
        h.status.value,
        f"{h.duration:.1f}s",
        tuple(rows),
    )


MATRIX_CELLS = 2500  # beyond a 50 x 50 matrix, one row per target instead of a grid
SHOWN_SOURCES = 10  # failed sources named per target row; the rest are counted


@dataclass(frozen=True)
class TargetRow:
    """One target of a large group: how many sources tried it, reached it, and which failed."""

    target: str
    anchor: str  # "" when the target is not a host of this run
    status: str  # the worst status of its pairs
    tried: int
    ping: str  # "3/4": sources whose ping got replies / sources that pinged; "" for none
    port25: str  # the same for port 25's greeting
    reached: bool  # some source got an answer
    failed: str  # "mx1, mx7 and 3 more"; "mx1 (host-down), mx7 (local-stack)" when they differ
    causes: str  # the distinct verdicts of its failed pairs


def _failed(pair: PairVerdict) -> bool:
    return pair.status is not Status.OK


def _ratio(outcomes: Sequence[str]) -> str:
    """How many outcomes are "ok" out of those tried ("" was not tried): "3/4"."""
    tried = [o for o in outcomes if o]
    return f"{tried.count('ok')}/{len(tried)}" if tried else ""


def _target_row(target: str, pairs: Sequence[PairVerdict], anchor: str) -> TargetRow:
    failed = [p for p in pairs if _failed(p)]
    causes = list(dict.fromkeys(p.cause for p in failed))
    # each source's verdict only when they differ: the verdict column says the one
    named = [
        p.source if len(causes) == 1 else f"{p.source} ({p.cause})" for p in failed[:SHOWN_SOURCES]
    ]
    more = len(failed) - len(named)
    return TargetRow(
        target=target,
        anchor=anchor,
        status=worst(p.status for p in pairs).value,
        tried=len(pairs),
        ping=_ratio([p.ping for p in pairs]),
        port25=_ratio([p.port25 for p in pairs]),
        reached=any(p.ping == "ok" or p.port25 == "ok" for p in pairs),
        failed=", ".join(named) + (f" and {more} more" if more else ""),
        causes=", ".join(causes),
    )


def _per_target(diagnosis: Diagnosis, anchors: Mapping[str, str]) -> dict[str, Any]:
    """The connectivity of a large group, one row per target with a failed pair (those
    nobody reached first, then in the run's order); the healthy targets in one line."""
    by_target: dict[str, list[PairVerdict]] = {}
    for p in diagnosis.pairs:
        by_target.setdefault(p.target, []).append(p)
    rows = [
        _target_row(target, pairs, anchors.get(target, ""))
        for target, pairs in by_target.items()
        if any(_failed(p) for p in pairs)
    ]
    rank = {host: i for i, host in enumerate(anchors)}  # the run's host order, others after
    rows.sort(key=lambda r: (r.reached, rank.get(r.target, len(rank)), r.target))
    healthy = [pairs for pairs in by_target.values() if not any(_failed(p) for p in pairs)]
    tried = sorted({len(pairs) for pairs in healthy})
    span = f"{tried[0]}" if len(tried) == 1 else f"{tried[0]} to {tried[-1]}" if tried else ""
    return {
        "per_target": rows,
        "healthy_targets": len(healthy),
        "healthy_sources": span,
        "note": (
            f"{len(diagnosis.pairs)} pairs from {len(diagnosis.sources)} sources to "
            f"{len(by_target)} targets: one row per target that a source failed to reach"
        ),
    }


def _matrix(diagnosis: Diagnosis, anchors: Mapping[str, str]) -> dict[str, Any]:
    """The source x target grid of a small group; a large one's, summarised per target."""
    sources, targets = diagnosis.sources, diagnosis.targets
    if len(sources) * len(targets) > MATRIX_CELLS:
        return {"targets": (), "rows": [], **_per_target(diagnosis, anchors)}
    index = {(p.source, p.target): p for p in diagnosis.pairs}
    rows: list[tuple[str, list[PairVerdict | None]]] = [
        (s, [index.get((s, t)) for t in targets]) for s in sources
    ]
    return {"targets": targets, "rows": rows, "note": "", "per_target": None}


def _moment(text: str | None) -> datetime | None:
    """An ISO time as an aware UTC datetime (a naive one is taken as UTC); None if none."""
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


def _ago(moment: datetime, now: datetime) -> str:
    seconds = (now - moment).total_seconds()
    if seconds < 90:
        return "just now" if seconds > -90 else "later"
    if seconds < 3600:
        return f"{round(seconds / 60)} minutes ago"
    days = (now.date() - moment.date()).days
    if days == 0 or seconds < 12 * 3600:
        hours = round(seconds / 3600)
        return "an hour ago" if hours == 1 else f"{hours} hours ago"
    if days == 1:
        return "yesterday"
    if days < 14:
        return f"{days} nights ago"  # the audit runs nightly: a night is a run
    if days < 60:
        return f"{days // 7} weeks ago"
    if days < 730:
        return f"{days // 30} months ago"
    return f"{days // 365} years ago"


def when_text(when: str | None, now: str | None = None) -> str:
    """``when`` as people read it: "3 nights ago, 2026-12-02 02:30 UTC", counted from
    ``now`` (both ISO times); only the date and time without ``now``; "" for none, and
    the text itself when it is not an ISO time."""
    moment = _moment(when)
    if moment is None:
        return when or ""
    exact = moment.strftime("%Y-%m-%d %H:%M UTC")
    reference = _moment(now)
    return exact if reference is None else f"{_ago(moment, reference)}, {exact}"


@dataclass(frozen=True)
class ChangeRow:
    """One problem of the news: new, resolved or still open."""

    host: str
    anchor: str  # "" when the host is not in this run
    check: str
    target: str
    status: str  # the status class: warn, fail, unreachable
    summary: str
    since: str  # as people read it, "" when unknown


def _change_rows(
    changes: Sequence[Change], anchors: Mapping[str, str], now: str
) -> tuple[ChangeRow, ...]:
    return tuple(
        ChangeRow(
            c.host,
            anchors.get(c.host, ""),
            c.check,
            c.target or "",
            c.status_class,
            c.summary,
            when_text(c.since, now),
        )
        for c in changes
    )


def _news(delta: Delta | None, run: RunResult, anchors: Mapping[str, str]) -> dict[str, Any]:
    """What changed since the previous run, for the report's second section; {} without
    a history.  Problems still open are counted, with the oldest's "since"."""
    if delta is None:
        return {}
    opened = [m for c in delta.still_open if (m := _moment(c.since)) is not None]
    oldest = min(opened).isoformat() if opened else None
    return {
        "previous": when_text(delta.previous_started, run.started),
        "first_run": delta.previous_started is None,
        "new": _change_rows(delta.new, anchors, run.started),
        "resolved": _change_rows(delta.resolved, anchors, run.started),
        "still_open": _change_rows(delta.still_open, anchors, run.started),
        "oldest": when_text(oldest, run.started),
    }


def _headline(run: RunResult) -> dict[str, int]:
    statuses = [h.status for h in run.hosts]
    return {
        "hosts": len(run.hosts),
        "ok": sum(s in (Status.OK, Status.SKIPPED) for s in statuses),
        "warn": sum(s is Status.WARN for s in statuses),
        "failing": len(run.failed_hosts),
        "unreachable": len(run.unreachable_hosts),
    }


def report_view(
    run: RunResult, diagnosis: Diagnosis | None = None, delta: Delta | None = None
) -> dict[str, Any]:
    """Everything the template shows, as plain data."""
    diagnosis = diagnosis if diagnosis is not None else diagnose(run)
    checks = _checks(run)
    anchors = {h.host: f"host-{i}" for i, h in enumerate(run.hosts)}
    return {
        "run": run,
        "label": inventory_label(run.inventory),
        "headline": _headline(run),
        "counts": run.counts(),
        "groups": [(CAUSES[c], fs) for c, fs in diagnosis.by_cause().items()],
        "finding_count": len(diagnosis.findings),
        "checks": checks,
        "rows": [_host_row(h, anchors[h.host], checks, delta) for h in run.hosts],
        "matrix": _matrix(diagnosis, anchors),
        "details": [_host_detail(h, anchors[h.host], delta) for h in run.hosts],
        "anchors": anchors,
        "news": _news(delta, run, anchors),
        "started": when_text(run.started),
        "took": _took(run),
    }


def _took(run: RunResult) -> str:
    start, end = _moment(run.started), _moment(run.finished)
    if start is None or end is None:
        return ""
    seconds = round((end - start).total_seconds())
    return f"{seconds} s" if seconds < 120 else f"{round(seconds / 60)} min"


def _shown(value: Any) -> Any:
    """Every printed value, before escaping: text without controls; the template's own
    markup (``|safe``) as it is."""
    if isinstance(value, str) and not isinstance(value, markupsafe.Markup):
        return clean(value)
    return value


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("fleet.render", "templates"),
        autoescape=True,  # every host value is untrusted text
        finalize=_shown,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        bytecode_cache=_bytecode_cache(),
    )


class _BestEffortCache(jinja2.FileSystemBytecodeCache):
    """Jinja's per-user cache of compiled templates, private to that user, whose
    failures (a full or read-only /tmp) only cost a compile, never the report."""

    def load_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        with contextlib.suppress(OSError, ValueError, EOFError):
            super().load_bytecode(bucket)

    def dump_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        with contextlib.suppress(OSError):
            super().dump_bytecode(bucket)


def _bytecode_cache() -> jinja2.BytecodeCache | None:
    """Compiled templates kept between runs: compiling them cost more than rendering
    a 200-host report.  None if the cache directory cannot be made.

    Jinja keys a compiled template by its source alone, yet the code compiled depends
    on the environment (``finalize`` is compiled in): the file names carry a digest of
    this module, so a fleet whose environment changed never runs an older compile."""
    tag = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:16]
    try:
        return _BestEffortCache(pattern=f"__fleet_{tag}_%s.cache")
    except (OSError, RuntimeError):
        return None


def render_html(
    run: RunResult, diagnosis: Diagnosis | None = None, delta: Delta | None = None
) -> str:
    """The whole report as one HTML document."""
    template = _environment().get_template("report.html.j2")
    return template.render(**report_view(run, diagnosis, delta))
