"""`--format prom`: the run as a node_exporter textfile that prometheus-client parses back."""

from __future__ import annotations

from dataclasses import asdict, replace

import pytest
from prometheus_client.parser import text_string_to_metric_families

from fleet.app.request import DEFAULT_FORMATS, request_from_text
from fleet.checks.facts import PingResult, SmtpProbe
from fleet.model import CheckResult, HostResult, RunResult, Status
from fleet.render import write_reports
from fleet.render.prom import STATUS_VALUE, render_prom
from tests.lab.sample import sample_run


def families(text: str) -> dict[str, list]:
    return {f.name: f.samples for f in text_string_to_metric_families(text)}


@pytest.fixture(scope="module")
def run() -> RunResult:
    return sample_run("inventories/prod")


def test_every_host_and_check_has_a_status_series(run):
    samples = families(render_prom(run))["fleet_check_status"]
    seen = {(s.labels["host"], s.labels["check"], s.labels["target"]): s.value for s in samples}
    expected = {(r.host, r.check, r.target or "") for r in run.results}
    assert set(seen) == expected
    mx2 = run.host("mx2")
    for r in mx2.results:
        assert seen[("mx2", r.check, r.target or "")] == STATUS_VALUE[r.status]
    assert {s.labels["inventory"] for s in samples} == {"prod"}


def test_status_values_rise_with_severity():
    order = [Status.OK, Status.SKIPPED, Status.WARN, Status.ERROR, Status.FAIL, Status.UNREACHABLE]
    assert [STATUS_VALUE[s] for s in order] == sorted(STATUS_VALUE.values())


def test_pairs_carry_ping_loss_rtt_and_greeting_time_in_base_units():
    ping = PingResult("mx2", 4, 3, 0.2, 0.5, 0.9)
    smtp = SmtpProbe("mx2", 25, "ok", greeting_code=220, greeting_ms=1500.0)
    results = (
        CheckResult("mx1", "ping", Status.WARN, "3/4", target="mx2", facts=asdict(ping)),
        CheckResult("mx1", "smtp", Status.OK, "220", target="mx2", facts=asdict(smtp)),
    )
    run = RunResult("inv", "pb", "s", "f", (HostResult("mx1", "a", "ssh", "unix", results),))
    found = families(render_prom(run))
    pair = {"inventory": "inv", "source": "mx1", "target": "mx2"}
    assert [(s.labels, s.value) for s in found["fleet_ping_loss_ratio"]] == [(pair, 0.25)]
    assert [(s.labels, s.value) for s in found["fleet_ping_rtt_seconds"]] == [(pair, 0.0005)]
    assert [(s.labels, s.value) for s in found["fleet_smtp_greeting_seconds"]] == [(pair, 1.5)]


def test_run_counts_duration_and_times(run):
    found = families(render_prom(run))
    by_status = {s.labels["status"]: s.value for s in found["fleet_check_results"]}
    assert by_status == run.counts()
    by_cause = {s.labels["cause"]: s.value for s in found["fleet_check_results_by_cause"]}
    assert by_cause["auth-refused"] >= 1 and by_cause["apipa"] >= 1
    kinds = {s.labels["kind"]: s.value for s in found["fleet_findings"]}
    assert kinds["host-down"] == 1 and kinds["mail-service"] == 2
    assert found["fleet_run_duration_seconds"][0].value == 9.0
    started = 1714528800.0  # 2024-05-01T02:00:00Z
    assert found["fleet_last_success_timestamp_seconds"][0].value == started + 9
    assert found["fleet_run_complete"][0].value == 1


def test_an_interrupted_run_is_not_a_success(run):
    found = families(render_prom(replace(run, interrupted=True)))
    assert "fleet_last_success_timestamp_seconds" not in found
    assert found["fleet_run_complete"][0].value == 0
    assert found["fleet_last_run_timestamp_seconds"][0].value == 1714528809.0


def test_names_follow_prometheus_conventions(run):
    text = render_prom(run)
    for family in text_string_to_metric_families(text):
        assert family.name.startswith("fleet_") and family.name == family.name.lower()
        assert family.type == "gauge" and not family.name.endswith("_total")
        for unit in ("_ms", "_percent", "_milliseconds"):
            assert not family.name.endswith(unit)


def test_hostile_host_text_stays_inside_its_label():
    evil = 'mx"\n} 1\nfleet_fake 1\x1b[2J'
    result = CheckResult(evil, "smtp", Status.FAIL, "x", target=evil, cause="refused")
    run = RunResult("inv", "pb", "s", "f", (HostResult(evil, "a", "ssh", "unix", (result,)),))
    found = families(render_prom(run))
    assert "fleet_fake" not in found
    (sample,) = found["fleet_check_status"]
    assert "\x1b" not in sample.labels["host"] and "\n" not in sample.labels["host"]
    assert sample.labels["host"].startswith('mx"')


def test_two_results_for_one_label_set_make_one_series_the_worst():
    results = (
        CheckResult("mx1", "reach", Status.OK, "open", target="25"),
        CheckResult("mx1", "reach", Status.FAIL, "refused", target="25", cause="refused"),
    )
    run = RunResult("inv", "pb", "s", "f", (HostResult("mx1", "a", "ssh", "unix", results),))
    (sample,) = families(render_prom(run))["fleet_check_status"]
    assert sample.value == STATUS_VALUE[Status.FAIL]


def test_prom_is_a_default_format_written_whole_as_report_prom(run, tmp_path):
    assert "prom" in DEFAULT_FORMATS
    assert request_from_text({"format": "csv,prom"}).formats == ("csv", "prom")
    written = write_reports(run, tmp_path, ["prom"])
    assert written == {"prom": tmp_path / "report.prom"}
    # written under another name, then renamed: the collector reads only *.prom
    assert [p.name for p in tmp_path.iterdir()] == ["report.prom"]
    assert "fleet_check_status" in families(written["prom"].read_text(encoding="utf-8"))
