"""CSV, JUnit XML and the report files: spreadsheet-safe, valid XML, whatever hosts say."""

from __future__ import annotations

import csv
import io
import json
import xml.etree.ElementTree as ET

import pytest

from fleet.errors import ConfigError
from fleet.model import CheckResult, HostResult, RunResult, Status
from fleet.render import FORMATS, parse_formats, report_command, write_reports
from fleet.render.csvreport import COLUMNS, neutralise, render_csv
from fleet.render.junit import render_junit, xml_text
from tests.lab.sample import sample_run


def one_host(*results: CheckResult, name="mx1") -> RunResult:
    host = HostResult(name, "198.18.0.11", "ssh", "unix", results, 1.5)
    return RunResult("inventories/prod", "pb.yml", "2024-05-01T02:00:00Z", "x", (host,))


# --------------------------------------------------------------------------- CSV


def test_csv_has_one_row_per_host_check_target():
    run = sample_run()
    rows = list(csv.DictReader(io.StringIO(render_csv(run))))
    assert len(rows) == len(run.results)
    assert tuple(rows[0]) == COLUMNS
    mx1_ping = [r for r in rows if (r["host"], r["check"], r["target"]) == ("mx1", "ping", "mx3")]
    assert mx1_ping[0]["status"] == "fail"
    assert mx1_ping[0]["reason"] == "0/3 replies"
    assert mx1_ping[0]["address"] == "198.18.0.11"
    assert mx1_ping[0]["duration"] == "2.000"


@pytest.mark.parametrize("start", ["=", "+", "-", "@", "\t", "\r", "\n"])
def test_csv_cells_that_a_spreadsheet_would_run_are_neutralised(start):
    evil = f'{start}HYPERLINK("http://x","y")'
    run = one_host(CheckResult("mx1", "smtp", Status.FAIL, evil, target=evil))
    (row,) = csv.DictReader(io.StringIO(render_csv(run)))
    shown = evil.replace("\r", "\n")  # a line end is kept as a newline, the cell quoted
    assert row["reason"] == "'" + shown
    assert row["target"] == "'" + shown


def test_csv_cells_lose_control_characters_and_terminal_escapes():
    evil = "220 mx\x1b[2J\x1b]0;owned\x07 hi\x00\x0b\x0c\x85\u202egnp.exe"
    run = one_host(CheckResult("mx1\x07", "smtp", Status.FAIL, evil, target="mx2\x1b[31m"))
    (row,) = csv.DictReader(io.StringIO(render_csv(run)))
    assert (row["host"], row["target"], row["reason"]) == ("mx1", "mx2", "220 mx hignp.exe")


def test_neutralise_leaves_ordinary_text_alone():
    assert neutralise("220 mx1 ESMTP") == "220 mx1 ESMTP"
    assert neutralise("a=b") == "a=b"


def test_csv_survives_commas_quotes_and_newlines_in_host_text():
    text = 'line one, "quoted"\nline two'
    run = one_host(CheckResult("mx1", "binding", Status.FAIL, text))
    (row,) = csv.DictReader(io.StringIO(render_csv(run)))
    assert row["reason"] == text


# --------------------------------------------------------------------------- JUnit


def test_junit_has_a_suite_per_host_and_a_case_per_check_and_target():
    root = ET.fromstring(render_junit(sample_run()))
    suites = {s.get("name"): s for s in root.iter("testsuite")}
    assert set(suites) == {"mx1", "mx2", "mx3", "mx4", "win1", "win2"}
    names = [c.get("name") for c in suites["mx1"].iter("testcase")]
    assert "ping -> mx3" in names and "binding" in names
    assert suites["mx1"].get("tests") == str(len(names))


def test_junit_failures_and_errors_carry_the_reason():
    run = one_host(
        CheckResult("mx1", "smtp", Status.FAIL, "port 25 refused", target="mx2"),
        CheckResult("mx1", "binding", Status.ERROR, "output made no sense"),
        CheckResult("mx1", "reach", Status.SKIPPED, "not asked", target="25"),
        CheckResult("mx1", "ipconfig", Status.WARN, "DNS server unreachable"),
        CheckResult("mx1", "ping", Status.OK, "3/3", target="mx2"),
    )
    suite = ET.fromstring(render_junit(run)).find("testsuite")
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("5", "1", "1")
    assert suite.get("skipped") == "1"
    cases = {c.get("name"): c for c in suite.iter("testcase")}
    assert cases["smtp -> mx2"].find("failure").get("message") == "port 25 refused"
    assert cases["binding"].find("error").get("message") == "output made no sense"
    assert cases["reach -> 25"].find("skipped") is not None
    assert cases["ipconfig"].find("system-out").text == "warn: DNS server unreachable"
    assert list(cases["ping -> mx2"]) == []


def test_unreachable_host_is_a_junit_error_not_a_failure():
    run = one_host(CheckResult("mx1", "binding", Status.UNREACHABLE, "authentication failed"))
    error = ET.fromstring(render_junit(run)).find("testsuite/testcase/error")
    assert error.get("type") == "unreachable"
    assert error.get("message") == "authentication failed"


def test_junit_is_valid_xml_for_any_host_text():
    nasty = "bell\x07 nul\x00 esc\x1b[31m ff\x0c <&>\"' \ud800 \ufffe ok\u00e9\U0001f600"
    run = one_host(
        CheckResult(nasty, nasty, Status.FAIL, nasty, target=nasty, evidence=nasty), name=nasty
    )
    text = render_junit(run)
    root = ET.fromstring(text.encode("utf-8"))  # raises on any invalid character
    failure = root.find("testsuite/testcase/failure")
    assert failure.get("message") == "bell nul esc ff <&>\"'   ok\u00e9\U0001f600"


def test_xml_text_keeps_tabs_and_newlines():
    assert xml_text("a\tb\nc\rd") == "a\tb\nc\rd"


def test_xml_text_removes_exactly_what_xml_1_0_forbids():
    # XML 1.0, production [2] Char: #x9 | #xA | #xD | [#x20-#xD7FF] | [#xE000-#xFFFD]
    # | [#x10000-#x10FFFF].  Every code point is checked against it.
    def allowed(c: int) -> bool:
        return c in (0x9, 0xA, 0xD) or 0x20 <= c <= 0xD7FF or 0xE000 <= c <= 0xFFFD or c >= 0x10000

    text = "".join(map(chr, range(0x110000)))
    assert xml_text(text) == "".join(chr(c) for c in range(0x110000) if allowed(c))


# --------------------------------------------------------------------------- files


def test_write_reports_writes_each_requested_format(tmp_path):
    run = sample_run()
    written = write_reports(run, tmp_path / "out", ["json", "csv", "html", "junit", "prom"])
    assert {k: p.name for k, p in written.items()} == FORMATS
    saved = RunResult.from_json(written["json"].read_text(encoding="utf-8"))
    assert saved == RunResult.from_json(run.to_json())  # facts' tuples come back as lists
    assert written["html"].read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    ET.parse(written["junit"])
    assert written["csv"].read_bytes().startswith(b"host,address,platform,check")
    assert b"\r\n" in written["csv"].read_bytes()  # RFC 4180 line ends survive the write
    assert not list((tmp_path / "out").glob("*.partial"))


def test_formats_accept_a_comma_list_and_the_xml_alias():
    assert parse_formats("html, csv,xml") == ("html", "csv", "junit")


def test_unknown_format_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown report format 'pdf'"):
        parse_formats("html,pdf")


def test_report_command_renders_a_saved_result(tmp_path, capsys):
    saved = tmp_path / "result.json"
    saved.write_text(sample_run().to_json(), encoding="utf-8")
    assert report_command(saved, "html,csv,junit", tmp_path / "r") == 0
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == [
        "report.csv",
        "report.html",
        "report.xml",
    ]
    assert str(tmp_path / "r" / "report.html") in capsys.readouterr().out


def test_report_command_refuses_a_file_that_is_not_a_result(tmp_path, capsys):
    bad = tmp_path / "other.json"
    bad.write_text(json.dumps({"hello": 1}))
    assert report_command(bad, "html", tmp_path) == 5
    assert "not a fleet" in capsys.readouterr().err
    assert report_command(tmp_path / "missing.json", "html", tmp_path) == 5
    assert report_command(bad, "pdf", tmp_path) == 5
