"""Partial runs of one audit (``--shard K/N`` parts, or zones) combined into one run,
and ``fleet merge``, which writes, records and mails it as an audit would.

``merge_runs`` is pure: it reads only the parts and raises ``MergeError`` (one line)
when they do not make one audit.  The diagnosis is not carried by a run: it is made
again from the merged run, so a target probed from several parts is judged on all of
its sources.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from pathlib import Path

from fleet.errors import ConfigError, MergeError
from fleet.model import HostResult, RunResult, Selection

_NAMED = 5  # names quoted in a refusal before "and N more"
# Parts of one night's audit start within minutes of each other; a part that started
# this much earlier or later than the others is a stale one (last night's, left in a
# shared directory), whose digests match tonight's.
STALE_AFTER_S = 12 * 3600


def merge_runs(parts: Sequence[RunResult]) -> RunResult:
    """One run from partial runs of the same audit: hosts in the selection's order
    (else part by part, shards by index), started the earliest, finished the latest,
    interrupted or cut by the deadline if any part was.

    Refused (``MergeError``): no parts, a part that records no selection, mixed
    playbooks or inventories, overlapping or missing shards, a host in two parts, a
    selected host in none.
    """
    if not parts:
        raise MergeError("nothing to merge: no partial runs given")
    ordered = sorted(parts, key=_shard_index)
    selection = _common_selection(ordered)
    _check_shards(ordered)
    _check_fresh(ordered)
    hosts = _merged_hosts(ordered, selection)
    first = ordered[0]
    return RunResult(
        inventory=first.inventory,
        playbook=first.playbook,
        started=min((p.started for p in ordered), key=_instant),
        finished=max((p.finished for p in ordered), key=_instant),
        hosts=hosts,
        interrupted=any(p.interrupted for p in ordered),
        deadline_hit=any(p.deadline_hit for p in ordered),
        fleet_version=", ".join(dict.fromkeys(p.fleet_version for p in ordered if p.fleet_version)),
        selection=Selection(
            selection.inventory_digest, selection.playbook_digest, selection.host_count
        ),
    )


def part_name(run: RunResult, position: int | None = None) -> str:
    """``shard 2/3``, else ``part #2 (started ...)``: how a refusal names a part."""
    if run.selection is not None and run.selection.shard is not None:
        return f"shard {run.selection.shard}"
    where = f" #{position}" if position is not None else ""
    return f"part{where} (started {run.started})"


def _shard_index(run: RunResult) -> int:
    shard = run.selection.shard if run.selection else None
    return shard.index if shard else 0


def _instant(stamp: str) -> tuple[int, object]:
    """ISO 8601 times compared as instants (offsets differ between runners); text that
    is no time sorts as text, after every time."""
    try:
        return (0, datetime.fromisoformat(stamp).timestamp())
    except ValueError:
        return (1, stamp)


def _common_selection(parts: Sequence[RunResult]) -> Selection:
    selections = []
    for position, part in enumerate(parts, 1):
        if part.selection is None:
            raise MergeError(
                f"{part_name(part, position)} records no selection (written by a fleet that "
                "could not merge): audit it again"
            )
        selections.append(part.selection)
    _same(parts, "playbooks", lambda p: p.selection.playbook_digest if p.selection else "")
    _same(parts, "inventories", lambda p: p.inventory)
    _same(parts, "inventories", lambda p: p.selection.inventory_digest if p.selection else "")
    _same(parts, "inventories", lambda p: str(p.selection.host_count) if p.selection else "")
    return selections[0]


def _same(parts: Sequence[RunResult], what: str, key: Callable[[RunResult], str]) -> None:
    """Refuse parts that differ by ``key``: ``mixed playbooks: shard 1/2 ... shard 2/2``."""
    first = parts[0]
    for position, part in enumerate(parts[1:], 2):
        if key(part) != key(first):
            raise MergeError(
                f"mixed {what}: {part_name(first, 1)} has {_short(key(first))}, "
                f"{part_name(part, position)} has {_short(key(part))} "
                "(audit every part from the same inventory, --limit and playbook)"
            )


def _short(value: str) -> str:
    return repr(value[:19] + "…" if len(value) > 20 else value)


def _check_fresh(parts: Sequence[RunResult]) -> None:
    """Refuse a part that started STALE_AFTER_S apart from the first: not the same run."""
    timed: list[tuple[float, int, RunResult]] = []
    for position, part in enumerate(parts, 1):
        kind, when = _instant(part.started)
        if kind == 0 and isinstance(when, float):
            timed.append((when, position, part))
    if len(timed) < 2:
        return
    earliest, latest = min(timed, key=lambda t: t[0]), max(timed, key=lambda t: t[0])
    hours = (latest[0] - earliest[0]) / 3600
    if hours * 3600 > STALE_AFTER_S:
        raise MergeError(
            f"stale part: {part_name(earliest[2], earliest[1])} started {hours:.0f} h before "
            f"{part_name(latest[2], latest[1])}; merge only one run's parts (give each "
            "night's shards a fresh directory)"
        )


def _check_shards(parts: Sequence[RunResult]) -> None:
    shards = [p.selection.shard for p in parts if p.selection is not None]
    given = [s for s in shards if s is not None]
    if not given:
        return  # zones, or parts cut otherwise: the hosts alone must add up
    if len(given) != len(shards):
        raise MergeError("mixed parts: some are shards (--shard K/N), some are not")
    totals = sorted({s.total for s in given})
    if len(totals) > 1:
        raise MergeError(f"mixed shard counts: shards of {' and '.join(map(str, totals))}")
    total = totals[0]
    twice = sorted(index for index, n in Counter(s.index for s in given).items() if n > 1)
    if twice:
        raise MergeError(
            f"overlapping shards: {_listed([f'{i}/{total}' for i in twice])} given twice"
        )
    missing = sorted(set(range(1, total + 1)) - {s.index for s in given})
    if missing:
        raise MergeError(
            f"missing shards: {_listed([f'{i}/{total}' for i in missing])} "
            f"(have {_listed([str(s) for s in given])})"
        )


def _merged_hosts(parts: Sequence[RunResult], selection: Selection) -> tuple[HostResult, ...]:
    owner: dict[str, str] = {}
    hosts: dict[str, HostResult] = {}
    twice: list[str] = []
    for position, part in enumerate(parts, 1):
        for host in part.hosts:
            if host.host in owner:
                twice.append(f"{host.host} ({owner[host.host]} and {part_name(part, position)})")
            owner.setdefault(host.host, part_name(part, position))
            hosts.setdefault(host.host, host)
    if twice:
        raise MergeError(f"overlapping hosts: {_listed(twice)} in two parts")
    names = next((p.selection.hosts for p in parts if p.selection and p.selection.hosts), ())
    if names:
        missing = [name for name in names if name not in hosts]
        if missing:
            raise MergeError(f"missing hosts: {_listed(missing)} selected but in no part")
        strangers = sorted(set(hosts) - set(names))
        if strangers:
            raise MergeError(f"mixed inventories: {_listed(strangers)} in a part, not selected")
        return tuple(hosts[name] for name in names)
    if len(hosts) != selection.host_count:
        raise MergeError(
            f"missing hosts: the parts hold {len(hosts)} of the {selection.host_count} "
            "hosts selected"
        )
    return tuple(hosts.values())


def _listed(items: Sequence[str]) -> str:
    shown = ", ".join(items[:_NAMED])
    return shown + (f" and {len(items) - _NAMED} more" if len(items) > _NAMED else "")


# -- fleet merge -----------------------------------------------------------


def load_parts(sources: Sequence[Path]) -> list[RunResult]:
    """The runs ``fleet merge`` was given (files, or directories of shard reports).
    Unreadable parts raise ConfigError (exit 5); a part that records no selection,
    MergeError (exit 7)."""
    from fleet.render.reports import load_result

    files = part_files(sources)
    parts = [load_result(path) for path in files]
    for path, part in zip(files, parts, strict=True):
        if part.selection is None:
            raise MergeError(
                f"{path}: records no selection (written by a fleet that could not merge)"
            )
    return parts


def part_files(sources: Iterable[Path]) -> list[Path]:
    """The report.json files to merge: each file given, and in each directory given the
    report.json of every run beneath it; where a directory holds a ``latest`` link
    (fleet's report directory of an inventory), only the run it points at."""
    found: dict[Path, Path] = {}
    for source in sources:
        if source.is_dir():
            runs = list(_runs_beneath(source))
            if not runs:
                raise ConfigError("no report.json beneath it", path=source)
        elif source.is_file():
            runs = [source]
        else:
            raise ConfigError("no such file or directory", path=source)
        for path in runs:
            found.setdefault(path.resolve(), path)
    return list(found.values())


def _runs_beneath(top: Path) -> Iterable[Path]:
    for here, dirs, files in os.walk(top):
        base = Path(here)
        if (base / "latest").is_symlink():
            dirs.clear()  # the older runs of this inventory are not tonight's parts
            if (base / "latest" / "report.json").is_file():
                yield base / "latest" / "report.json"
            continue
        dirs.sort()
        if "report.json" in files:
            yield base / "report.json"
