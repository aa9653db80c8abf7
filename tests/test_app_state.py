"""What an audit reports and keeps when it is stopped, shares its report directory, or
cannot write: real ``fleet audit`` processes on this machine (the local connection)."""

from __future__ import annotations

import errno
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BINDING_ONLY = "- hosts: all\n  checks:\n    - binding: {}\n"


def world(tmp_path: Path, hosts: str, playbook: str = BINDING_ONLY) -> tuple[Path, Path]:
    inv, play = tmp_path / "fleet.ini", tmp_path / "play.yml"
    inv.write_text(f"[mail]\n{hosts}\n")
    play.write_text(playbook)
    return inv, play


def start_fleet(
    *args: str, hook: str = "", env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    """``fleet audit ARGS`` in a process of its own, ``hook`` run first (to slow a phase)."""
    program = f"import sys\n{hook}\nfrom fleet.cli import main\nsys.exit(main(sys.argv[1:]))\n"
    return subprocess.Popen(
        [sys.executable, "-c", program, "audit", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
    )


def until(condition: Callable[[], bool], seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.05)


def terminated(proc: subprocess.Popen[str]) -> tuple[str, str]:
    """SIGTERM ``proc``; its stdout and stderr once it has ended."""
    try:
        proc.send_signal(signal.SIGTERM)
        return proc.communicate(timeout=60)
    finally:
        proc.kill()


def test_sigterm_while_the_inventory_loads_exits_99(tmp_path: Path) -> None:
    inv, play = world(tmp_path, "here ansible_connection=local")
    hook = (
        "import time, fleet.inventory as inventory\n"
        "real = inventory.load_inventory\n"
        "def slow(*args, **kwargs):\n"
        "    print('loading', file=sys.stderr, flush=True)\n"
        "    time.sleep(60)\n"
        "    return real(*args, **kwargs)\n"
        "inventory.load_inventory = slow\n"
    )
    proc = start_fleet("-i", str(inv), "-p", str(play), "--report-dir", str(tmp_path), hook=hook)
    assert proc.stderr is not None
    assert "loading" in proc.stderr.readline()
    _, err = terminated(proc)
    assert proc.returncode == 99
    assert "Traceback" not in err and "interrupted" in err


def test_sigterm_while_mailing_exits_99_with_the_reports_written_and_the_table(
    tmp_path: Path,
) -> None:
    relay = socket.socket()  # accepts, never greets: a relay that stalls
    relay.bind(("127.0.0.1", 0))
    relay.listen(1)
    relay.settimeout(60)
    inv, play = world(tmp_path, "here ansible_connection=local")
    env = {
        "FLEET_SMTP_HOST": "127.0.0.1",
        "FLEET_SMTP_PORT": str(relay.getsockname()[1]),
        "FLEET_SMTP_STARTTLS": "no",
        "FLEET_MAIL_FROM": "fleet@example.com",
    }
    reports = tmp_path / "r"
    args = ("-i", str(inv), "-p", str(play), "--report-dir", str(reports), "-q")
    proc = start_fleet(*args, "--mail-to", "ops@example.com", env=env)
    try:
        connection, _ = relay.accept()  # fleet is mailing now
        out, err = terminated(proc)
        connection.close()
    finally:
        relay.close()
    assert proc.returncode == 99, err
    assert "NOT mailed" in err and "Traceback" not in err
    assert "here" in out and "binding" in out  # the table
    report = json.loads((reports / "fleet" / "latest" / "report.json").read_text())
    assert [h["host"] for h in report["hosts"]] == ["here"]


def test_an_interrupted_run_marks_nothing_resolved(tmp_path: Path) -> None:
    from fleet.deliver.history import History
    from fleet.render.reports import load_result

    closed = socket.socket()  # a port nothing listens on: smtp to it fails (refused)
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    playbook = (
        "- hosts: all\n  checks:\n"
        f"    - smtp: {{targets: ['127.0.0.1'], port: {port}}}\n"
        "    - ping: {targets: ['127.0.0.1'], gateway: false, timeout: 1,"
        " count: '{{ fleet_ping_count }}'}\n"
    )
    reports = tmp_path / "r"
    inv, play = world(tmp_path, "here ansible_connection=local fleet_ping_count=1", playbook)
    args = ("-i", str(inv), "-p", str(play), "--report-dir", str(reports), "-q")
    first = start_fleet(*args)
    first.communicate(timeout=120)
    assert first.returncode == 2  # smtp refused: a problem to keep in the history
    night1 = (reports / "fleet" / "latest" / "report.json").resolve()

    world(tmp_path, "here ansible_connection=local fleet_ping_count=37", playbook)
    second = start_fleet(*args)

    def pinging() -> bool:
        ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
        return "ping -n -c 37" in ps

    until(pinging)  # the host's audit is under way
    out, err = terminated(second)
    assert second.returncode == 99, err
    assert "not audited (interrupted)" in out and "all ok" not in out
    night2 = (reports / "fleet" / "latest" / "report.json").resolve()
    assert night2 != night1
    [here] = json.loads(night2.read_text())["hosts"]
    assert {(r["status"], r["cause"]) for r in here["results"]} == {("error", "interrupted")}

    diffed = subprocess.run(
        [sys.executable, "-m", "fleet", "diff", str(night1), str(night2)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert "resolved (0):" in diffed.stdout and diffed.returncode == 0
    history = History(reports / "fleet" / "history.sqlite")
    assert history.delta(load_result(night2)).resolved == ()
    with sqlite3.connect(history.path) as db:
        assert db.execute("SELECT count(*) FROM runs").fetchone()[0] == 2


def test_ten_concurrent_audits_on_one_report_directory_all_land(tmp_path: Path) -> None:
    inv, play = world(tmp_path, "here ansible_connection=local")
    reports = tmp_path / "r"
    args = ("-i", str(inv), "-p", str(play), "--report-dir", str(reports), "-q")
    procs = [start_fleet(*args) for _ in range(10)]
    errors = [proc.communicate(timeout=300)[1] for proc in procs]
    assert [proc.returncode for proc in procs] == [0] * 10, errors
    dirs = [p for p in (reports / "fleet").iterdir() if p.is_dir() and not p.is_symlink()]
    assert len(dirs) == 10 and all((d / "report.json").is_file() for d in dirs)
    with sqlite3.connect(reports / "fleet" / "history.sqlite") as db:
        assert db.execute("SELECT count(*) FROM runs").fetchone()[0] == 10


def test_an_inventory_named_dots_writes_its_reports_inside_the_report_dir(tmp_path: Path) -> None:
    inv = tmp_path / "...ini"
    inv.write_text("[mail]\nhere ansible_connection=local\n")
    play = tmp_path / "play.yml"
    play.write_text(BINDING_ONLY)
    reports = tmp_path / "a" / "b"
    proc = start_fleet("-i", str(inv), "-p", str(play), "--report-dir", str(reports), "-q")
    proc.communicate(timeout=120)
    assert proc.returncode == 0
    written = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("report.json"))
    assert len(written) == 1 and written[0].startswith("a/b/__/")


def test_a_full_disk_still_prints_the_table_tries_the_mail_and_keeps_latest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import fleet.deliver.mail
    import fleet.render.reports
    from fleet import cli

    inv, play = world(tmp_path, "here ansible_connection=local")
    reports = tmp_path / "r"
    args = ["audit", "-i", str(inv), "-p", str(play), "--report-dir", str(reports), "-q"]
    assert cli.main(args) == 0
    before = (reports / "fleet" / "latest").resolve()

    def disk_full(run, outdir, formats, **kwargs):
        (Path(outdir) / "report.json").write_text(run.to_json())
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    mailed: list[dict] = []
    monkeypatch.setattr(fleet.render.reports, "write_reports", disk_full)
    monkeypatch.setattr(
        fleet.deliver.mail, "send_report", lambda run, diagnosis, files, *a: mailed.append(files)
    )
    monkeypatch.setenv("FLEET_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("FLEET_MAIL_FROM", "fleet@example.com")
    capsys.readouterr()
    code = cli.main([*args, "--mail-to", "ops@example.com"])
    out, err = capsys.readouterr()
    assert code == 6  # the audit ran, its reports could not all be written
    assert "here" in out and "binding" in out  # the table
    assert "No space left on device" in err
    assert len(mailed) == 1  # the mail was tried, with what was written whole
    assert (reports / "fleet" / "latest").resolve() == before  # latest: the complete run
    kept = [p for p in (reports / "fleet").iterdir() if p.is_dir() and p.resolve() != before]
    assert [sorted(f.name for f in p.iterdir()) for p in kept if not p.is_symlink()] == [
        ["report.json"]
    ]
