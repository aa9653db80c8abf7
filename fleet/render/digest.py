"""The mail's body: a digest of the run that stays a few tens of KB at any fleet size.

The subject, the counts, the findings by cause, what is new and resolved since
the previous run, the worst hosts, and where the full report lies.  Every list
is bounded (the rest is counted, and is in the full report), every host value
is folded onto one bounded line by ``fleet.text.safe_text`` and, in HTML,
autoescaped.  The HTML is tables with inline styles only (no stylesheet, grid,
flex or script), so Outlook's Word engine, Gmail and a phone all show it; the
plain-text alternative keeps one line per item.

``digest`` builds plain data (what the tests look at); ``digest_html`` and
``digest_text`` render it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import jinja2

from fleet.changes import Change, Delta, inventory_label
from fleet.diagnose import CAUSES, Diagnosis, Finding
from fleet.model import HostResult, RunResult, Status
from fleet.text import safe_text

MAX_FINDINGS = 30  # findings named in all (at least one per cause); the others are counted
DETAILED = 2  # findings per cause shown with evidence and fix; the next ones by title only
MAX_HOSTS_NAMED = 12  # host names shown per finding
MAX_EVIDENCE = 3  # evidence lines per finding
MAX_FIX = 4  # fix commands per finding
MAX_CHANGES = 12  # new, and resolved, problems listed each
MAX_WORST = 10  # worst hosts listed
LINE = 200  # characters of one line of host text


def subject(run: RunResult, delta: Delta | None = None) -> str:
    """ "fleet prod: 3 failing (1 new), 1 unreachable", or "fleet prod: all ok".

    Counts are hosts; "new" counts failing hosts with a problem the previous
    run did not have.
    """
    label = safe_text(inventory_label(run.inventory), None)
    failing, unreachable = run.failed_hosts, run.unreachable_hosts
    parts = []
    if failing:
        new = f" ({len(set(failing) & delta.new_hosts())} new)" if delta is not None else ""
        parts.append(f"{len(failing)} failing{new}")
    if unreachable:
        parts.append(f"{len(unreachable)} unreachable")
    if run.interrupted:
        parts.append("interrupted")
    return f"fleet {label}: {', '.join(parts) or 'all ok'}"


@dataclass(frozen=True)
class FindingLine:
    title: str
    hosts: str  # "mx1, mx2 and 40 more"; "" for a finding about one host
    evidence: tuple[str, ...]  # empty for a finding shown by title only
    fix: tuple[str, ...]
    severity: str


@dataclass(frozen=True)
class CauseGroup:
    heading: str
    total: int
    shown: tuple[FindingLine, ...]


@dataclass(frozen=True)
class ChangeLine:
    what: str  # "mx1 smtp -> mx2"
    status: str
    summary: str
    since: str


@dataclass(frozen=True)
class Changes:
    previous_started: str  # "" when there was no earlier run
    new: tuple[ChangeLine, ...]
    new_total: int
    resolved: tuple[ChangeLine, ...]
    resolved_total: int
    still_open_total: int
    oldest_since: str


@dataclass(frozen=True)
class WorstHost:
    host: str
    status: str
    problems: int
    first: str  # the first problem's check and summary


@dataclass(frozen=True)
class ReportPlace:
    """Where the full report is: attached (names), and/or a path or URL."""

    attached: tuple[str, ...] = ()
    location: str = ""  # a path, or a URL when ``is_url``
    is_url: bool = False
    note: str = ""  # why some or all of it is not attached


@dataclass(frozen=True)
class Digest:
    subject: str
    label: str
    started: str
    finished: str
    headline: tuple[tuple[str, int, str], ...]  # (word, count, status for colour)
    groups: tuple[CauseGroup, ...]
    findings_total: int
    changes: Changes | None
    worst: tuple[WorstHost, ...]
    hosts_with_problems: int
    report: ReportPlace


def _line(text: object) -> str:
    return safe_text(text, LINE)


def _named(hosts: Sequence[str]) -> str:
    shown = ", ".join(_line(h) for h in hosts[:MAX_HOSTS_NAMED])
    rest = len(hosts) - MAX_HOSTS_NAMED
    return f"{shown} and {rest} more" if rest > 0 else shown


def _finding(f: Finding, detailed: bool) -> FindingLine:
    return FindingLine(
        _line(f.title),
        _named(f.hosts) if len(f.hosts) > 1 else "",
        tuple(_line(e) for e in f.evidence[:MAX_EVIDENCE]) if detailed else (),
        tuple(_line(s) for s in f.fix.splitlines()[:MAX_FIX] if s.strip()) if detailed else (),
        f.severity.value,
    )


def _groups(diagnosis: Diagnosis) -> tuple[CauseGroup, ...]:
    groups, budget = [], MAX_FINDINGS
    for cause, findings in diagnosis.by_cause().items():
        shown = tuple(
            _finding(f, detailed=i < DETAILED) for i, f in enumerate(findings[: max(budget, 1)])
        )
        budget -= len(shown)
        groups.append(CauseGroup(CAUSES[cause], len(findings), shown))
    return tuple(groups)


def _change(c: Change) -> ChangeLine:
    target = f" -> {c.target}" if c.target else ""
    return ChangeLine(
        _line(f"{c.host} {c.check}{target}"), c.status_class, _line(c.summary), _line(c.since or "")
    )


def _changes(delta: Delta | None) -> Changes | None:
    if delta is None:
        return None
    since = [c.since for c in delta.still_open if c.since]
    return Changes(
        previous_started=_line(delta.previous_started or ""),
        new=tuple(_change(c) for c in delta.new[:MAX_CHANGES]),
        new_total=len(delta.new),
        resolved=tuple(_change(c) for c in delta.resolved[:MAX_CHANGES]),
        resolved_total=len(delta.resolved),
        still_open_total=len(delta.still_open),
        oldest_since=_line(min(since)) if since else "",
    )


def _problems(h: HostResult) -> list:
    return [r for r in h.results if r.status not in (Status.OK, Status.SKIPPED)]


def _worst(run: RunResult) -> tuple[tuple[WorstHost, ...], int]:
    ranked = []
    for h in run.hosts:
        problems = _problems(h)
        if problems:
            ranked.append((h.status.severity, len(problems), h, problems))
    ranked.sort(key=lambda item: (-item[0], -item[1], item[2].host))
    worst = tuple(
        WorstHost(
            _line(h.host),
            h.status.value,
            count,
            _line(f"{problems[0].check}: {problems[0].summary}"),
        )
        for _, count, h, problems in ranked[:MAX_WORST]
    )
    return worst, len(ranked)


def _headline(run: RunResult) -> tuple[tuple[str, int, str], ...]:
    statuses = [h.status for h in run.hosts]
    return (
        ("hosts", len(statuses), ""),
        ("ok", sum(s in (Status.OK, Status.SKIPPED) for s in statuses), "ok"),
        ("warn", sum(s is Status.WARN for s in statuses), "warn"),
        ("failing", len(run.failed_hosts), "fail"),
        ("unreachable", len(run.unreachable_hosts), "unreachable"),
    )


def digest(
    run: RunResult, diagnosis: Diagnosis, delta: Delta | None, report: ReportPlace
) -> Digest:
    """What the mail's body says, bounded whatever the fleet's size."""
    worst, with_problems = _worst(run)
    return Digest(
        subject=subject(run, delta),
        label=_line(inventory_label(run.inventory)),
        started=_line(run.started),
        finished=_line(run.finished),
        headline=_headline(run),
        groups=_groups(diagnosis),
        findings_total=len(diagnosis.findings),
        changes=_changes(delta),
        worst=worst,
        hosts_with_problems=with_problems,
        report=ReportPlace(
            tuple(_line(name) for name in report.attached),
            safe_text(report.location, None),
            report.is_url,
            safe_text(report.note, None),
        ),
    )


# Every text of a Digest is already one clean line (``digest`` made it so): the template
# only has to escape it.
_ENVIRONMENT = jinja2.Environment(
    loader=jinja2.PackageLoader("fleet.render", "templates"),
    autoescape=True,  # every host value is untrusted text
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def digest_html(d: Digest) -> str:
    """The digest as an HTML document for mail clients."""
    return _ENVIRONMENT.get_template("digest.html.j2").render(d=d)


def _text_changes(c: Changes) -> list[str]:
    since = f" ({c.previous_started})" if c.previous_started else ""
    lines = [f"Since the previous run{since}:"]
    for title, shown, total in (
        ("new", c.new, c.new_total),
        ("resolved", c.resolved, c.resolved_total),
    ):
        lines.append(f"{title} ({total}):")
        lines += [f"  {x.what}: {x.status}: {x.summary}" for x in shown]
        if total > len(shown):
            lines.append(f"  ... and {total - len(shown)} more in the full report")
    oldest = f", the oldest since {c.oldest_since}" if c.oldest_since else ""
    lines.append(f"still open ({c.still_open_total}){oldest}")
    return [*lines, ""]


def _text_report(r: ReportPlace) -> list[str]:
    lines = []
    if r.attached:
        lines.append(f"The full report is attached: {', '.join(r.attached)}.")
    if r.note:
        lines.append(r.note)
    if r.location:
        lines.append(f"The full report: {r.location}")
    return lines


def _problems_text(w: WorstHost) -> str:
    return f"{w.problems} problem{'s' if w.problems != 1 else ''}"


def digest_text(d: Digest) -> str:
    """The digest as plain text: one line per item, host text on lines of its own."""
    lines = [d.subject, f"started {d.started}, finished {d.finished}", ""]
    lines.append(", ".join(f"{count} {word}" for word, count, _ in d.headline))
    lines.append("")
    for g in d.groups:
        lines.append(f"{g.heading} ({g.total}):")
        for f in g.shown:
            lines += [f"* {f.title}", *([f"    hosts: {f.hosts}"] if f.hosts else [])]
            lines += [f"    - {e}" for e in f.evidence]
            lines += [f"    $ {step}" for step in f.fix]
        if g.total > len(g.shown):
            lines.append(f"  ... and {g.total - len(g.shown)} more in the full report")
        lines.append("")
    if not d.groups:
        lines += ["No problem found.", ""]
    if d.changes is not None:
        lines += _text_changes(d.changes)
    if d.worst:
        lines.append(f"Worst hosts ({len(d.worst)} of {d.hosts_with_problems} with problems):")
        lines += [f"  {w.host}: {w.status}, {_problems_text(w)}; {w.first}" for w in d.worst]
        lines.append("")
    lines += _text_report(d.report)
    return "\n".join(safe_text(line, None) for line in lines) + "\n"
