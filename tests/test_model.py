"""fleet.model: results as data, and their versioned JSON form."""

from __future__ import annotations

import json

import pytest

from fleet import causes
from fleet.model import CheckResult, HostResult, RunResult, Status


def _run(*results: CheckResult) -> RunResult:
    host = HostResult("mx1", "198.18.0.11", "ssh", "unix", results)
    return RunResult("lab", "mail-connectivity.yml", "2026-12-05T02:30:00+00:00", "x", (host,))


def test_a_cause_survives_the_json_round_trip():
    failed = CheckResult("mx1", "smtp", Status.FAIL, "421 busy", "mx2", cause=causes.BAD_GREETING)
    loaded = RunResult.from_json(_run(failed).to_json())
    assert loaded.results[0].cause == causes.BAD_GREETING
    assert loaded == _run(failed)


def test_a_version_1_result_loads_with_no_cause():
    data = json.loads(_run(CheckResult("mx1", "binding", Status.OK, "bound")).to_json())
    data["schema_version"] = 1
    for host in data["hosts"]:
        for result in host["results"]:
            del result["cause"]
    loaded = RunResult.from_dict(data)
    assert loaded.results[0].cause == ""
    assert loaded.results[0].status is Status.OK


def test_an_unknown_schema_version_is_refused_in_one_line():
    data = json.loads(_run().to_json())
    data["schema_version"] = 99
    with pytest.raises(ValueError, match="schema version 99; this fleet reads 1, 2"):
        RunResult.from_dict(data)


def test_every_cause_has_words_for_the_report():
    slugs = {v for k, v in vars(causes).items() if k.isupper() and isinstance(v, str)}
    assert slugs == set(causes.CAUSES)
    assert set(causes.CAUSES) >= causes.NOT_AUDITED
