"""The HTML report: findings first, every host value escaped, renders cleanly in a browser."""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import replace
from html.parser import HTMLParser
from pathlib import Path

import pytest

from fleet.changes import Change, Delta
from fleet.diagnose import diagnose
from fleet.model import CheckResult, HostResult, RunResult, Status
from fleet.render.htmlreport import render_html, report_view, when_text
from tests.lab.sample import sample_run

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


class _Collector(HTMLParser):
    """Tags, attributes and text of a document, as a browser would parse them."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def parse(html: str) -> _Collector:
    c = _Collector()
    c.feed(html)
    return c


@pytest.fixture(scope="module")
def html() -> str:
    return render_html(sample_run())


def test_greeting_with_script_tag_shows_as_text_not_markup(html):
    doc = parse(html)
    assert [t for t, _ in doc.tags if t == "script"] == []
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html
    assert any('<script>alert("x")</script>' in t for t in doc.text)


def test_hostile_host_name_and_summary_are_escaped_everywhere():
    evil = '"><img src=x onerror=alert(1)>'
    result = CheckResult(evil, "binding", Status.FAIL, f"<b>{evil}</b>", evidence=evil)
    run = RunResult("inv", "pb", "s", "f", (HostResult(evil, evil, "ssh", "unix", (result,)),))
    doc = parse(render_html(run))
    assert not any(t in ("img", "b") for t, _ in doc.tags)
    assert not any("onerror" in attrs for _, attrs in doc.tags)


def test_no_javascript_and_no_external_resource(html):
    doc = parse(html)
    for tag, attrs in doc.tags:
        assert tag != "script"
        assert not any(k.startswith("on") for k in attrs), (tag, attrs)
        for key in ("src", "href"):
            value = attrs.get(key) or ""
            assert not value or value.startswith("#"), (tag, attrs)
    csp = [a for t, a in doc.tags if t == "meta" and a.get("http-equiv")]
    assert csp[0]["content"].startswith("default-src 'none'")


def test_findings_come_before_the_tables_grouped_by_cause_with_fix(html):
    headings = re.findall(r"<h[23][^>]*>([^<]+)", html)
    assert headings.index("Findings") < headings.index("Hosts and checks")
    assert headings.index("Host down (1)") < headings.index("Mail service (2)")
    assert "mx3 answers nobody: down or disconnected" in html
    assert "ipconfig /renew" in html  # win1's APIPA fix


def test_headline_counts_hosts_by_state(html):
    view = report_view(sample_run())
    assert view["headline"] == {"hosts": 6, "ok": 0, "warn": 0, "failing": 4, "unreachable": 2}
    assert "<strong>2</strong>unreachable" in html


def test_host_check_table_colours_each_cell_by_status():
    view = report_view(sample_run())
    assert view["checks"] == ("binding", "ipconfig", "ping", "smtp", "reach")
    row = {r.host: r for r in view["rows"]}
    assert row["win1"].cells[1].status == "fail"  # ipconfig
    assert row["mx1"].cells[0].status == "ok"
    assert row["mx3"].cells[2] is None  # not audited: no ping results at all
    assert row["mx2"].cells[3].text == "fail 1/3"


def test_connectivity_matrix_shows_ping_port_and_greeting(html):
    view = report_view(sample_run())
    targets = view["matrix"]["targets"]
    assert targets == ("mx2", "mx3", "mx4", "mx1")
    cells = dict(view["matrix"]["rows"])
    mx1_to_mx3 = cells["mx1"][targets.index("mx3")]
    assert (mx1_to_mx3.ping, mx1_to_mx3.port25, mx1_to_mx3.cause) == (
        "no reply",
        "timeout",
        "host-down",
    )
    assert "220 mx1.lab ESMTP Postfix" in html


def test_raw_evidence_is_folded_away(html):
    assert re.search(r"<details><summary>evidence</summary><pre>PING mx2", html)


def news_delta(run: RunResult, open_problems: int = 1) -> Delta:
    return Delta(
        new=(Change("mx2", "smtp", "mx1", "fail", "port 25 refused", run.started),),
        resolved=(Change("mx9", "ping", "mx1", "fail", "0/3 replies", "2024-04-28T02:00:00"),),
        still_open=tuple(
            Change(f"mx{i}", "reach", "22", "fail", "no answer", f"2024-04-{30 - i % 3}T02:30:00")
            for i in range(open_problems)
        ),
        previous_started="2024-04-30T02:00:00+00:00",
    )


def test_delta_marks_new_problems_and_lists_resolved_with_since():
    run = sample_run()
    html = render_html(run, diagnose(run), news_delta(run))
    assert "Since the previous run (yesterday, 2024-04-30 02:00 UTC)" in html
    assert html.count('<span class="new">new</span>') >= 2  # host table + results
    assert "3 nights ago, 2024-04-28 02:00 UTC" in html and "mx9" in html


def test_report_leads_with_findings_then_what_is_new_and_resolved():
    run = sample_run()
    html = render_html(run, diagnose(run), news_delta(run))
    headings = re.findall(r"<h[23][^>]*>([^<]+)", html)
    order = [
        "Findings",
        "Host down (1)",
        "Since the previous run (yesterday, 2024-04-30 02:00 UTC)",
        "New (1)",
        "Resolved (1)",
        "Hosts and checks",
    ]
    assert [h for h in headings if h in order] == order
    # Nothing before the findings lists a problem row.
    assert html.index("<h2>Findings</h2>") < html.index('<table class="delta">')


def test_problems_still_open_are_counted_and_folded_away_oldest_first_said():
    run = sample_run()
    html = render_html(run, diagnose(run), news_delta(run, open_problems=45))
    folded = re.search(
        r'<details class="still-open"><summary>([^<]+)</summary>(.*?)</details>', html, re.S
    )
    assert folded is not None
    assert folded.group(1) == "45 still open, oldest since 3 nights ago, 2024-04-28 02:30 UTC"
    assert folded.group(2).count("<tr>") == 46  # header + 45, inside the fold
    assert html.index("<h3>Resolved (1)</h3>") < folded.start()


def test_first_run_says_so_and_folds_its_problems():
    run = sample_run()
    first = Delta(new=news_delta(run).new, resolved=(), still_open=())
    html = render_html(run, diagnose(run), first)
    assert "No earlier run to compare with" in html
    assert '<details class="still-open"><summary>1 open, all seen for the first time' in html
    assert "<h3>New" not in html


def test_times_read_as_people_say_them():
    now = "2026-12-05T02:30:00+00:00"
    assert when_text("2026-12-02T02:30:00+00:00", now) == "3 nights ago, 2026-12-02 02:30 UTC"
    assert when_text("2026-12-04T02:30:00+00:00", now) == "yesterday, 2026-12-04 02:30 UTC"
    assert when_text("2026-12-05T02:10:00+00:00", now) == "20 minutes ago, 2026-12-05 02:10 UTC"
    assert when_text("2026-12-05T04:30:00+02:00", now) == "just now, 2026-12-05 02:30 UTC"
    assert when_text("2026-10-01T02:30:00", now).startswith("2 months ago, ")
    assert when_text("2026-12-05T02:30:00+00:00") == "2026-12-05 02:30 UTC"
    assert when_text("not a time", now) == "not a time" and when_text(None, now) == ""


needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium not installed (apt-get install chromium)"
)


def chromium(page: Path, profile: Path, *flags: str) -> str:
    """Open ``page`` in headless Chromium; its console's lines (errors, CSP violations)."""
    assert CHROMIUM is not None
    proc = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={profile}",
            "--enable-logging=stderr",
            "--v=0",
            *flags,
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return "\n".join(line for line in proc.stderr.splitlines() if ":CONSOLE" in line)


@needs_chromium
def test_report_renders_in_headless_chromium_without_console_errors(tmp_path):
    def render(page: Path) -> tuple[Path, str]:
        shot = page.with_suffix(".png")
        console = chromium(
            page, tmp_path / "profile", "--window-size=1280,2000", f"--screenshot={shot}"
        )
        return shot, console

    # the method must see console errors when there are some
    control = tmp_path / "control.html"
    control.write_text("<!DOCTYPE html><p>x</p><script>console.error('control-42')</script>")
    _, console = render(control)
    assert "control-42" in console

    page = tmp_path / "report.html"
    page.write_text(render_html(sample_run()), encoding="utf-8")
    shot, console = render(page)
    assert console == ""  # no error, no CSP violation, not even a log line
    data = shot.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(data) > 100_000  # tables and colours; a blank page of this size is ~12 kB


# Measures a page from inside (a copy of the report: the report itself runs no script).
_MEASURE = (
    "<script>console.log('page-width ' + document.documentElement.scrollWidth"
    " + ' of ' + window.innerWidth)</script>"
)


def page_width(tmp_path: Path, html: str, width: int) -> tuple[int, int]:
    """How wide ``html`` lays out in a ``width`` px viewport: (content, viewport).  The
    page sits in an iframe of that width (a headless window is at least 500 px wide)."""
    measured = re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", html)
    page = tmp_path / f"page-{width}.html"
    page.write_text(measured.replace("</body>", f"{_MEASURE}</body>"), encoding="utf-8")
    frame = tmp_path / f"frame-{width}.html"
    frame.write_text(
        f"<!DOCTYPE html><body style='margin:0'><iframe src='{page.name}' width='{width}'"
        " height='900' style='border:0'></iframe></body>"
    )
    shot = f"--screenshot={tmp_path / f'frame-{width}.png'}"  # headless exits when it is taken
    console = chromium(frame, tmp_path / "profile", "--window-size=1400,1000", shot)
    found = re.search(r"page-width (\d+) of (\d+)", console)
    assert found, console
    return int(found.group(1)), int(found.group(2))


def wide_run() -> RunResult:
    """The sample fleet plus a host whose name and greeting are long unbroken words."""
    run = sample_run()
    word = "mx-" + "a" * 120 + ".example.com"
    long = CheckResult(
        word, "smtp", Status.FAIL, "554 " + "b" * 300, target="mx1", cause="bad-greeting"
    )
    host = HostResult(word, "198.18.0.99", "ssh", "unix", (long,))
    return replace(run, hosts=(*run.hosts, host))


@needs_chromium
@pytest.mark.parametrize("width", [390, 1280], ids=["phone", "desktop"])
def test_report_fits_a_phone_and_a_desktop_without_sideways_scrolling(tmp_path, width):
    # the method must see a page wider than the screen
    assert page_width(tmp_path, "<body><div style='width:2000px'>x</div></body>", width)[0] > width
    run = wide_run()
    html = render_html(run, diagnose(run), news_delta(run, open_problems=45))
    content, viewport = page_width(tmp_path, html, width)
    assert viewport == width and content <= width


@needs_chromium
def test_the_per_target_connectivity_of_a_large_group_fits_a_phone(tmp_path):
    from tests.planned import DOWN, MUTE, NO_SMTP, faulty_group, simulate

    run = simulate(faulty_group(200, {DOWN: 2, MUTE: 1, NO_SMTP: 1}, "phone"))
    html = render_html(run, diagnose(run))
    assert "Connectivity (per target)" in html
    content, viewport = page_width(tmp_path, html, 390)
    assert viewport == 390 and content <= 390


def test_report_of_an_empty_run_still_renders():
    run = RunResult("inv", "pb", "s", "f", ())
    html = render_html(run)
    assert "No problem found" in html
    assert "<strong>0</strong>hosts" in html


def test_a_large_all_pairs_fleet_stays_a_mailable_report():
    from dataclasses import asdict

    from fleet.checks.facts import PingResult
    from fleet.model import CheckResult, HostResult, RunResult, Status
    from fleet.render.htmlreport import render_html

    names = [f"mx{i}" for i in range(80)]
    hosts = tuple(
        HostResult(
            n,
            "198.18.0.1",
            "ssh",
            "unix",
            tuple(
                CheckResult(
                    n,
                    "ping",
                    Status.OK if t != "mx7" else Status.FAIL,
                    "p",
                    target=t,
                    facts=asdict(PingResult(t, 2, 2 if t != "mx7" else 0)),
                )
                for t in names
                if t != n
            ),
        )
        for n in names
    )
    html = render_html(RunResult("big", "p", "s", "f", hosts))
    assert len(html) < 2_000_000  # 6,320 probes; the healthy ones are folded
    assert "78 targets" in html and "all ok: " in html  # folded rows say what they hold
    # one row per target, not an 80 x 80 grid: mx7 is the only target a source failed
    assert "Connectivity (per target)" in html and "source \\ target" not in html
    assert "79 other targets reached by every source that tried them (79 sources each)" in html


def test_a_broken_template_cache_never_costs_the_report(tmp_path, monkeypatch) -> None:
    # Jinja's bytecode cache is an optimisation: a full disk or a corrupt entry only
    # costs a compile, never the report.
    import jinja2

    from fleet.render import htmlreport
    from tests.lab.sample import sample_run

    def full_disk(self, bucket):
        raise OSError(28, "No space left on device")

    def corrupt(self, bucket):
        raise ValueError("bad marshal data")

    monkeypatch.setattr(jinja2.FileSystemBytecodeCache, "dump_bytecode", full_disk)
    monkeypatch.setattr(jinja2.FileSystemBytecodeCache, "load_bytecode", corrupt)
    monkeypatch.setattr(
        htmlreport, "_bytecode_cache", lambda: htmlreport._BestEffortCache(str(tmp_path))
    )
    assert "<html" in htmlreport.render_html(sample_run())
    # Jinja's own cache would have failed the report.
    monkeypatch.setattr(
        htmlreport, "_bytecode_cache", lambda: jinja2.FileSystemBytecodeCache(str(tmp_path))
    )
    with pytest.raises(ValueError, match="bad marshal"):
        htmlreport.render_html(sample_run())


def test_a_large_groups_connectivity_is_summarised_per_target() -> None:
    from tests.planned import DOWN, MUTE, faulty_group, simulate

    group = faulty_group(1000, {DOWN: 1, MUTE: 1}, "html")
    [down] = [h for h, kind in group.truth.items() if kind == DOWN]
    [mute] = [h for h, kind in group.truth.items() if kind == MUTE]
    run = simulate(group)
    view = report_view(run)
    matrix = view["matrix"]
    assert matrix["rows"] == []  # no 1000 x 1000 grid
    rows = {r.target: r for r in matrix["per_target"]}
    # the down host first: every source that tried it failed, each named with the verdict
    first = matrix["per_target"][0]
    assert first.target == down and not first.reached
    sources = [s for s in group.names if down in group.plan.targets_of(s)]
    assert (first.tried, first.ping, first.port25) == (
        len(sources),
        f"0/{len(sources)}",
        f"0/{len(sources)}",
    )
    assert all(s in first.failed for s in sources) and first.causes == "host-down"
    # the broken stack's targets: reached by their other sources, failed from the mute one
    for target in group.plan.targets_of(mute):
        if target != down:
            assert mute in rows[target].failed and rows[target].reached
            assert rows[target].causes == "local-stack"
    assert len(rows) <= 1 + len(group.plan.targets_of(mute))  # healthy targets: one line
    html = render_html(run, diagnose(run))
    assert f"{matrix['healthy_targets']} other targets reached by every source" in html
    assert f'<a href="#{view["anchors"][down]}">{down}</a>' in html
    assert len(html) < 4_000_000


def test_a_target_failed_by_many_sources_names_ten_and_counts_the_rest(monkeypatch) -> None:
    from fleet.render import htmlreport

    monkeypatch.setattr(htmlreport, "MATRIX_CELLS", 10)

    def pinged_the_gateway(name: str) -> HostResult:
        ping = CheckResult(name, "ping", Status.FAIL, "no reply", target="gateway 198.18.0.1")
        return HostResult(name, "198.18.0.1", "ssh", "unix", (ping,))

    hosts = tuple(pinged_the_gateway(f"mx{i}") for i in range(60))
    view = report_view(RunResult("big", "p", "s", "f", hosts))
    [row] = view["matrix"]["per_target"]
    assert row.tried == 60 and row.failed.endswith(f"and {60 - htmlreport.SHOWN_SOURCES} more")
    assert row.failed.startswith("mx0, mx1, ") and row.ping == "0/60" and row.port25 == ""
