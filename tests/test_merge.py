"""fleet.app.merge: partial runs of one audit made one, or refused in one line."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from fleet.app.merge import merge_runs
from fleet.diagnose import diagnose
from fleet.errors import MergeError
from fleet.model import RunResult, Selection, Shard
from tests.lab.sample import sample_run

WHOLE = sample_run()
NAMES = tuple(h.host for h in WHOLE.hosts)


def _shards(total: int, run: RunResult = WHOLE, **selection: object) -> list[RunResult]:
    """``run`` cut into ``total`` shards by position, each recording the whole selection."""
    parts = []
    for index in range(1, total + 1):
        hosts = run.hosts[index - 1 :: total]
        chosen = Selection("inv-digest", "pb-digest", len(run.hosts), Shard(index, total), NAMES)
        parts.append(
            replace(
                run,
                hosts=hosts,
                started=f"2024-05-01T02:00:0{index}+00:00",
                finished=f"2024-05-01T02:0{index}:00+00:00",
                selection=replace(chosen, **selection),
            )
        )
    return parts


def test_shards_merge_into_the_whole_run_in_inventory_order():
    merged = merge_runs(list(reversed(_shards(3))))
    assert merged.hosts == WHOLE.hosts
    assert merged.started == "2024-05-01T02:00:01+00:00"
    assert merged.finished == "2024-05-01T02:03:00+00:00"
    assert merged.selection == Selection("inv-digest", "pb-digest", len(NAMES))


def test_the_merged_runs_diagnosis_is_the_whole_runs():
    assert diagnose(merge_runs(_shards(2))) == diagnose(WHOLE)


def test_a_part_interrupted_or_cut_marks_the_merged_run():
    parts = _shards(2)
    parts[1] = replace(parts[1], interrupted=True, deadline_hit=True)
    merged = merge_runs(parts)
    assert merged.interrupted and merged.deadline_hit


def test_a_shard_given_twice_is_refused():
    parts = _shards(2)
    with pytest.raises(MergeError, match=r"^overlapping shards: 2/2 given twice$"):
        merge_runs([*parts, parts[1]])


def test_a_missing_shard_is_refused():
    with pytest.raises(MergeError, match=r"^missing shards: 2/3 \(have 1/3, 3/3\)$"):
        merge_runs([p for p in _shards(3) if p.selection and p.selection.shard != Shard(2, 3)])


def test_shards_of_different_counts_are_refused():
    with pytest.raises(MergeError, match="mixed shard counts: shards of 2 and 3"):
        merge_runs([_shards(2)[0], *_shards(3)[1:]])


def test_a_host_in_two_parts_is_refused():
    parts = _shards(2)
    parts[1] = replace(parts[1], hosts=(*parts[1].hosts, parts[0].hosts[0]))
    with pytest.raises(MergeError, match=rf"^overlapping hosts: {NAMES[0]} \(shard 1/2 and"):
        merge_runs(parts)


def test_a_selected_host_in_no_part_is_refused_by_name():
    parts = _shards(2)
    parts[0] = replace(parts[0], hosts=parts[0].hosts[1:])
    with pytest.raises(MergeError, match=rf"^missing hosts: {NAMES[0]} selected but in no part$"):
        merge_runs(parts)


def test_parts_without_names_must_hold_the_selected_count():
    parts = _shards(2, hosts=())
    parts[0] = replace(parts[0], hosts=parts[0].hosts[1:])
    with pytest.raises(MergeError, match=f"the parts hold {len(NAMES) - 1} of the {len(NAMES)}"):
        merge_runs(parts)


@pytest.mark.parametrize(
    ("field", "words"),
    [
        ("playbook_digest", r"^mixed playbooks: shard 1/2 has 'pb-digest', shard 2/2 has 'x'"),
        ("inventory_digest", r"^mixed inventories: shard 1/2 has 'inv-digest', shard 2/2"),
    ],
)
def test_mixed_playbooks_or_inventories_are_refused(field: str, words: str):
    parts = _shards(2)
    assert parts[1].selection is not None
    parts[1] = replace(parts[1], selection=replace(parts[1].selection, **{field: "x"}))
    with pytest.raises(MergeError, match=words):
        merge_runs(parts)


def test_parts_of_differently_named_inventories_are_refused():
    with pytest.raises(MergeError, match=r"^mixed inventories"):
        merge_runs([_shards(2)[0], replace(_shards(2)[1], inventory="inventories/other")])


def test_a_part_without_a_selection_is_refused():
    with pytest.raises(MergeError, match="records no selection"):
        merge_runs([WHOLE])


def test_nothing_to_merge_is_refused():
    with pytest.raises(MergeError, match="nothing to merge"):
        merge_runs([])


def test_a_long_refusal_stays_one_line():
    host = WHOLE.hosts[0]
    many = tuple(replace(host, host=f"mx{n:02}") for n in range(40))
    parts = _shards(2, hosts=tuple(h.host for h in many))
    parts = [replace(p, hosts=()) for p in parts]
    with pytest.raises(MergeError) as raised:
        merge_runs(parts)
    assert str(raised.value) == (
        "missing hosts: mx00, mx01, mx02, mx03, mx04 and 35 more selected but in no part"
    )


def test_the_selection_survives_the_json_round_trip():
    part = _shards(2)[1]
    assert RunResult.from_json(part.to_json()).selection == part.selection
    assert json.loads(part.to_json())["selection"]["shard"] == "2/2"


def test_a_result_written_before_selections_loads_without_one():
    data = json.loads(WHOLE.to_json())
    del data["selection"]
    assert RunResult.from_dict(data).selection is None


def test_last_nights_shard_beside_tonights_is_refused_as_stale():
    parts = _shards(2)
    parts[0] = replace(parts[0], started="2024-04-30T02:00:01+00:00")
    with pytest.raises(MergeError, match=r"^stale part: shard 1/2 started 24 h before shard 2/2"):
        merge_runs(parts)


def test_shards_started_hours_apart_on_a_slow_night_still_merge():
    parts = _shards(2)
    parts[1] = replace(parts[1], started="2024-05-01T08:00:00+00:00")
    assert merge_runs(parts).hosts == WHOLE.hosts
