"""The console script as ops meet it: exit codes, one-line errors, reports on disk."""

from __future__ import annotations

import argparse
import inspect
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import run_module

ROOT = Path(__file__).resolve().parent.parent


def fleet(*args: str, cwd: Path = ROOT, env: dict | None = None) -> subprocess.CompletedProcess:
    return run_module("fleet", *args, cwd=cwd, env=env)


def refused(done: subprocess.CompletedProcess) -> str:
    """The one clean line (no traceback, no usage block) of a run refused with exit 5."""
    assert done.returncode == 5
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    return lines[0]


def test_malformed_inventory_is_one_line_naming_file_and_line_exit_5(tmp_path: Path) -> None:
    bad = tmp_path / "hosts"
    bad.write_text("[mail]\nmx1\n[mail:children\nmx2\n")
    line = refused(fleet("audit", "-i", str(bad), "--report-dir", str(tmp_path / "r")))
    assert str(bad) in line and ":3" in line


def test_missing_inventory_says_where_it_looked(tmp_path: Path) -> None:
    done = fleet("audit", "-i", "nosuchfleet", "--report-dir", str(tmp_path))
    assert "nosuchfleet" in refused(done)


def test_bad_option_exits_5() -> None:
    assert "--forks" in refused(fleet("audit", "--forks", "many"))


def test_bad_playbook_exits_5_before_contacting_hosts(tmp_path: Path) -> None:
    play = tmp_path / "p.yml"
    play.write_text("- hosts: all\n  checks:\n    - traceroute: {}\n")
    done = fleet("audit", "-p", str(play), "--report-dir", str(tmp_path))
    assert f"{play}:3: unknown check 'traceroute'" in refused(done)
    assert not list(tmp_path.glob("local/*"))


@pytest.mark.parametrize(
    ("relay", "mail_to", "words"),
    [
        pytest.param("", "ops@example.com", "FLEET_SMTP_HOST", id="no_relay_settings"),
        pytest.param("127.0.0.1", "not an address", "not a mail address", id="bad_recipient"),
    ],
)
def test_bad_mail_settings_are_refused_before_the_audit(
    tmp_path: Path, relay: str, mail_to: str, words: str
) -> None:
    env = {"FLEET_SMTP_HOST": relay}
    done = fleet("audit", "--mail-to", mail_to, "--report-dir", str(tmp_path), env=env)
    assert words in refused(done)


def test_inventory_list_masks_secrets(tmp_path: Path) -> None:
    inv = tmp_path / "hosts"
    inv.write_text("[windows]\nex1 ansible_connection=winrm ansible_password=Hunter2-Secret\n")
    done = fleet("inventory", "-i", str(inv), "--list")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["windows"]["hosts"] == ["ex1"]
    assert data["_meta"]["hostvars"]["ex1"]["ansible_password"] == "********"
    assert "Hunter2-Secret" not in done.stdout


@pytest.mark.skipif(os.geteuid() != 0, reason="ping and the audit of this machine want root")
def test_audit_of_this_machine_writes_reports(tmp_path: Path) -> None:
    # The bundled local inventory also pings this machine's real gateway; tests
    # never send traffic outside loopback, so this copy turns that off.
    local = tmp_path / "inventories" / "local"
    local.parent.mkdir()
    local.write_text(
        "[mail]\nlocalhost ansible_connection=local fleet_ping_gateway=false "
        "fleet_ping_targets='[\"127.0.0.1\"]' fleet_smtp_targets='[\"127.0.0.1\"]'\n"
    )
    done = fleet("audit", "-i", str(local), "--report-dir", str(tmp_path), "-q", "--verbose")
    assert done.returncode in (0, 2), done.stderr
    assert "localhost" in done.stdout and "binding" in done.stdout  # the full table
    latest = tmp_path / "local" / "latest"
    assert latest.is_symlink()
    names = sorted(p.name for p in latest.resolve().iterdir())
    assert {"report.json", "report.csv", "report.html", "report.xml"} <= set(names)
    data = json.loads((latest / "report.json").read_text())
    checks = {r["check"] for h in data["hosts"] for r in h["results"]}
    assert {"binding", "ipconfig", "reach", "ping", "smtp"} <= checks
    ping = [r for h in data["hosts"] for r in h["results"] if r["check"] == "ping"]
    assert [(r["target"], r["status"]) for r in ping] == [("127.0.0.1", "ok")]
    # and the saved JSON re-renders
    again = fleet(
        "report", str(latest / "report.json"), "--format", "csv", "-o", str(tmp_path / "re")
    )
    assert again.returncode == 0, again.stderr
    assert (tmp_path / "re" / "report.csv").read_text() == (latest / "report.csv").read_text()


def test_sigterm_writes_what_finished_and_exits_99(tmp_path: Path) -> None:
    import signal
    import socket
    import time

    mute = socket.socket()  # accepts TCP, never speaks SSH: the host that hangs
    mute.bind(("127.0.0.1", 0))
    mute.listen(8)
    inv = tmp_path / "hosts"
    inv.write_text(
        "[mail]\n"
        "here ansible_connection=local fleet_ping_gateway=false\n"
        f"stuck ansible_host=127.0.0.1 ansible_port={mute.getsockname()[1]}\n"
    )
    play = tmp_path / "play.yml"
    play.write_text("- hosts: all\n  checks:\n    - binding: {}\n")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "fleet",
            "audit",
            "-i",
            str(inv),
            "-p",
            str(play),
            "--connect-timeout",
            "60",
            "--report-dir",
            str(tmp_path / "r"),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        deadline = time.monotonic() + 30
        while "[1/2]" not in proc.stderr.readline() and time.monotonic() < deadline:
            pass  # wait until the healthy host has finished
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    finally:
        proc.kill()
        mute.close()
    assert proc.returncode == 99
    [latest] = (tmp_path / "r").glob("*/latest")
    data = json.loads((latest / "report.json").read_text())
    first = {h["host"]: h["results"][0] for h in data["hosts"]}
    statuses = {name: (r["status"], r["cause"]) for name, r in first.items()}
    assert statuses == {"here": ("ok", ""), "stuck": ("error", "interrupted")}
    assert data["interrupted"] is True


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--forks", "0"], "--forks"),
        (["--command-timeout", "nan"], "--command-timeout"),
        (["--report-dir", "/proc/fleet-reports"], "cannot write reports"),
        (["--known-hosts", "no-such-known-hosts"], "no such file"),
    ],
)
def test_bad_values_are_refused_before_any_host(tmp_path: Path, args: list, words: str) -> None:
    assert words in refused(fleet("audit", *args))


def test_a_run_deadline_leaves_no_local_command_behind(tmp_path: Path) -> None:
    inv = tmp_path / "hosts"
    inv.write_text("[mail]\nhere ansible_connection=local\n")
    play = tmp_path / "play.yml"
    play.write_text(
        "- hosts: all\n  checks:\n"
        "    - ping: {targets: ['127.0.0.1'], gateway: false, count: 37, timeout: 1}\n"
    )
    done = fleet(
        "audit",
        "-i",
        str(inv),
        "-p",
        str(play),
        "--deadline",
        "2",
        "--report-dir",
        str(tmp_path / "r"),
        "-q",
    )
    assert done.returncode == 2  # the unfinished host is an error, reported
    procs = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    left = [line for line in procs.splitlines() if "ping -n -c 37" in line]
    assert left == [], f"still running after fleet exited: {left}"


def test_an_audit_tunes_the_process_for_the_run_and_undoes_it_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    # The collector's full passes skip the inventory and plans during the run, and
    # the open-files limit is lifted for reach's sockets; a caller in the same
    # process (invoke audit, tests) gets its collector and its limit back.
    import gc
    import resource

    from fleet import cli, runner

    local = tmp_path / "local"
    local.write_text(
        "[mail]\nlocalhost ansible_connection=local fleet_ping_gateway=false "
        "fleet_ping_targets='[\"127.0.0.1\"]' fleet_smtp_targets='[]'\n"
    )
    during: list[tuple[int, int]] = []
    real = runner.run_audit

    def watched(*args, **kwargs):
        during.append((gc.get_freeze_count(), resource.getrlimit(resource.RLIMIT_NOFILE)[0]))
        return real(*args, **kwargs)

    monkeypatch.setattr(runner, "run_audit", watched)
    reports = tmp_path / "reports"
    before = resource.getrlimit(resource.RLIMIT_NOFILE)
    hard = before[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(256, hard), hard))
    try:
        code = cli.main(["audit", "-i", str(local), "--report-dir", str(reports), "-q"])
        after = resource.getrlimit(resource.RLIMIT_NOFILE)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, before)
    assert code in (0, 2), capsys.readouterr().err
    [(frozen, soft)] = during
    assert frozen > 1000  # modules, inventory and plans: frozen
    assert soft == (65536 if hard == resource.RLIM_INFINITY else hard)
    assert gc.get_freeze_count() == 0
    assert after == (min(256, hard), hard)


# -- invoke audit is fleet audit ------------------------------------------

EVERY_OPTION = [
    *("-i", "inv", "-p", "play", "-l", "mail:!mx-old*", "-f", "7"),
    *("--connect-timeout", "3", "--command-timeout", "4.5", "--host-deadline", "6"),
    *("--deadline", "8", "--no-host-key-checking", "--known-hosts", "kh"),
    *("--report-dir", "rd", "--format", "csv,html", "--mail-to", "a@x.example"),
    *("--mail-to", "b@x.example,c@x.example", "--no-history", "-q", "--no-colour"),
    *("--shard", "2/3"),
]


def audit_options_of_fleet() -> list[argparse.Action]:
    from fleet.cli import build_parser

    [sub] = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return [a for a in sub.choices["audit"]._actions if "--help" not in a.option_strings]


def test_invoke_audit_help_lists_every_fleet_audit_option_with_its_help() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "invoke", "--help", "audit"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 0, done.stderr
    shown = " ".join(done.stdout.split())
    options = audit_options_of_fleet()
    assert len(options) >= 16
    for action in options:
        for flag in action.option_strings:
            assert f"{flag}," in shown or f"{flag}=" in shown or f"{flag} " in shown, flag
        assert " ".join(str(action.help).split()) in shown, action.option_strings


def requests_made(monkeypatch: pytest.MonkeyPatch, argv: list[str]) -> list:
    """The requests ``fleet audit ARGV`` and ``invoke audit ARGV`` hand to the app."""
    from invoke import Program

    import tasks
    from fleet import app, cli

    made: list = []
    monkeypatch.setattr(app, "audit", lambda request: made.append(request) or 0)
    assert cli.main(["audit", *argv]) == 0
    Program(namespace=tasks.ns).run(["invoke", "audit", *argv], exit=False)
    return made


@pytest.mark.parametrize("argv", [[], EVERY_OPTION], ids=["defaults", "every-option"])
def test_invoke_audit_builds_the_request_fleet_audit_builds(
    monkeypatch: pytest.MonkeyPatch, argv: list[str]
) -> None:
    from fleet.app import AuditRequest
    from fleet.model import Shard

    fleets, invokes = requests_made(monkeypatch, argv)
    assert fleets == invokes
    if not argv:
        assert fleets == AuditRequest()
    else:
        assert fleets.mail_to == ("a@x.example", "b@x.example", "c@x.example")
        assert (fleets.forks, fleets.command_timeout, fleets.colour) == (7, 4.5, False)
        assert fleets.shard == Shard(2, 3)


def test_every_request_field_has_an_option() -> None:
    from dataclasses import fields

    from fleet.app import AUDIT_OPTIONS, AuditRequest

    assert sorted(o.field for o in AUDIT_OPTIONS) == sorted(f.name for f in fields(AuditRequest))


def test_invoke_audit_refuses_a_bad_value_in_one_line_exit_5() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "invoke", "audit", "--forks", "many"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert "--forks" in refused(done) and "many" in done.stderr


# -- the bundled playbook and inventory ------------------------------------


def test_the_repositorys_playbooks_and_local_inventory_are_the_bundled_ones() -> None:
    bundled = ROOT / "fleet" / "bundled"
    assert (ROOT / "playbooks").resolve() == bundled / "playbooks"
    assert (ROOT / "inventories" / "local").resolve() == bundled / "inventories" / "local"


def test_the_bundled_local_inventory_is_found_by_name_from_any_directory(tmp_path: Path) -> None:
    done = fleet("inventory", "--list", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["mail"]["hosts"] == ["localhost"]


def test_a_local_inventory_in_the_working_directory_wins(tmp_path: Path) -> None:
    (tmp_path / "inventories").mkdir()
    (tmp_path / "inventories" / "local").write_text("[mail]\nhere ansible_connection=local\n")
    done = fleet("inventory", "-i", "local", "--list", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["mail"]["hosts"] == ["here"]


def test_the_bundled_playbook_is_found_by_name_and_a_working_directory_one_wins(
    tmp_path: Path,
) -> None:
    hosts = tmp_path / "lonely"
    hosts.write_text(
        "[mail]\nhere ansible_connection=local fleet_ping_gateway=false "
        "fleet_ping_targets=[] fleet_smtp_targets=[]\n"
    )
    elsewhere = tmp_path / "work"
    elsewhere.mkdir()

    def checks_run() -> set[str]:
        done = fleet("audit", "-i", str(hosts), "-q", "--format", "json", cwd=elsewhere)
        assert done.returncode in (0, 2), done.stderr
        data = json.loads((elsewhere / "reports/lonely/latest/report.json").read_text())
        return {r["check"] for h in data["hosts"] for r in h["results"]}

    assert checks_run() == {"reach", "binding", "ipconfig", "ping", "smtp"}
    (elsewhere / "playbooks").mkdir()
    (elsewhere / "playbooks" / "mail-connectivity.yml").write_text(
        "- hosts: all\n  checks:\n    - binding: {}\n"
    )
    assert checks_run() == {"binding"}


def test_a_bad_option_is_one_line_naming_it_and_where_help_is(tmp_path: Path) -> None:
    line = refused(fleet("audit", "--forks", "many", "--report-dir", str(tmp_path)))
    assert line == (
        "fleet audit: argument -f/--forks: 'many' is not a whole number >= 1 "
        "(see fleet audit --help)"
    )


def shown(*argv: str) -> str:
    """What a command prints, its words re-joined where a help column wrapped them."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "100"}
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stderr
    return re.sub(r"-\s+", "-", " ".join(done.stdout.split()))


def test_invoke_list_and_fleet_help_describe_each_command_in_the_same_words() -> None:
    import tasks
    from fleet.cli import ARGUMENTS, COMMANDS

    listed = shown(sys.executable, "-m", "invoke", "--list")
    helped = shown(sys.executable, "-m", "fleet", "--help")
    assert set(COMMANDS) == {"audit", "merge", "inventory", "report", "diff", "config", "worker"}
    for name, text in COMMANDS.items():
        assert inspect.getdoc(tasks.ns.tasks[name]) == text
        assert f" {name} {text}" in listed and f" {name} {text}" in helped, name
    for name, arguments in ARGUMENTS.items():
        by_invoke = shown(sys.executable, "-m", "invoke", "--help", name)
        by_fleet = shown(sys.executable, "-m", "fleet", name, "--help")
        for argument, text in arguments.items():
            assert text in by_fleet, (name, text)
            if (name, argument) != ("inventory", "list"):  # invoke inventory always lists
                assert text in by_invoke, (name, text)
