"""Host text in every output: no control character, no escape sequence, lines kept where
they mean something; report.json strict JSON that loads back into the same run."""

from __future__ import annotations

import json
import re

from fleet.model import CheckResult, HostResult, RunResult, Status
from fleet.render.htmlreport import render_html
from fleet.text import clean, is_clean, safe_text

EVIL = "220 mx\x1b[2J\x1b]0;owned\x07\x00\x0b\x0c\x85\x9b31m\u202egnp.exe\u2066 ok"
# Any C0 but tab, newline and CR; DEL; C1; the bidi controls
CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def evil_run() -> RunResult:
    result = CheckResult(
        "mx1" + EVIL, "smtp", Status.FAIL, EVIL, target="mx2" + EVIL, evidence=EVIL,
        facts={"greeting": [EVIL], "rtt_avg_ms": float("nan"), "max": float("inf")},
    )  # fmt: skip
    host = HostResult("mx1" + EVIL, "198.18.0.11", "ssh", "unix", (result,), float("nan"))
    return RunResult("inventories/prod", "pb.yml", "s", "f", (host,))


def test_clean_removes_sequences_whole_and_keeps_lines():
    assert clean("a\x1b[31mred\x1b[0m\r\nb\x00\u202ec\x1b]0;title\x07d") == "ared\nbcd"
    assert safe_text("a\nb\tc") == "a b c"
    assert safe_text("x" * 10, 5) == "xxxx…"
    assert is_clean(clean(EVIL)) and not is_clean(EVIL)


def test_html_report_holds_no_control_character():
    html = render_html(evil_run())
    assert CONTROL.search(html) is None
    assert "gnp.exe" in html


def test_report_json_is_strict_json_without_nan_or_raw_controls():
    text = evil_run().to_json()
    assert "NaN" not in text and "Infinity" not in text
    assert CONTROL.search(text.replace("\\u", "")) is None
    data = json.loads(text, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))
    assert data["hosts"][0]["results"][0]["facts"]["rtt_avg_ms"] is None
    assert RunResult.from_json(text).hosts[0].results[0].summary == EVIL  # nothing lost
    text.encode("utf-8")  # a lone surrogate would not encode


def test_a_lone_surrogate_from_undecodable_output_still_writes():
    odd = b"\xff".decode("utf-8", "surrogateescape")
    host = HostResult("h", "a", "ssh", "unix", (CheckResult("h", "smtp", Status.FAIL, odd),))
    run = RunResult("i", "p", "s", "f", (host,))
    run.to_json().encode("utf-8")


def test_host_port_and_user_survive_json():
    host = HostResult("h", "a", "ssh", "unix", (), port=2222, user="audit")
    run = RunResult("i", "p", "s", "f", (host,))
    assert RunResult.from_json(run.to_json()).hosts[0] == host


def test_a_template_compiled_by_an_older_fleet_is_not_run(tmp_path):
    """Jinja's bytecode cache keys a template by its source only; an older fleet's
    compile (made without the sanitising ``finalize``) must never be loaded."""
    import jinja2

    from fleet.render import htmlreport

    cache = jinja2.FileSystemBytecodeCache()  # the default directory and file names
    plain = jinja2.Environment(
        loader=jinja2.PackageLoader("fleet.render", "templates"),
        autoescape=True,
        bytecode_cache=cache,
    )
    plain.get_template("report.html.j2")  # what a fleet without finalize left behind
    assert htmlreport._bytecode_cache().pattern != cache.pattern
    assert CONTROL.search(render_html(evil_run())) is None
