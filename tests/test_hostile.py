"""Hostile peers: fake SSH and SMTP servers on loopback, each with one bad behaviour.

Each is audited by the real command line, through the real transports (libssh2 and
paramiko) and the real SMTP probe (run on the runner by the local transport).  The
run must end within bounds, each hostile host must get a result that says what went
wrong (a status that is not ok, and a cause), and no control character the peers
sent may reach a report file, the table on stdout or stderr.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest

from fleet.model import Status

# What a peer sends to hurt: terminal escapes (clear screen, set title), bell, NUL,
# an 8-bit CSI, a bidi override.
NASTY = b"\x1b[2J\x1b]0;owned\x07\x00\xc2\x9b31m\xe2\x80\xae"
# Any C0 but tab, newline and CR; DEL; C1; the bidi controls.
CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")

Behaviour = Callable[[socket.socket, threading.Event], None]


class Peer:
    """A loopback server that treats every connection with one ``behaviour``."""

    def __init__(self, behaviour: Behaviour) -> None:
        self.behaviour = behaviour
        self.stop = threading.Event()
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            self.conns.append(conn)
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError):  # the client gave up: that is what we want
            self.behaviour(conn, self.stop)

    def close(self) -> None:
        self.stop.set()
        self.server.close()
        for conn in self.conns:
            conn.close()


def _hold(conn: socket.socket, stop: threading.Event) -> None:
    """Read and ignore whatever comes, until the client or the test ends."""
    conn.settimeout(0.2)
    while not stop.is_set():
        try:
            if not conn.recv(65536):
                return
        except TimeoutError:
            continue


# -- SSH peers


def ssh_escapes_then_garbage(conn: socket.socket, stop: threading.Event) -> None:
    conn.sendall(b"\x1b[31mWelcome" + NASTY + b"\r\nSSH-2.0-evil" + NASTY + b"\r\n")
    conn.sendall(bytes(range(256)) * 64)
    _hold(conn, stop)


def ssh_stalls_in_key_exchange(conn: socket.socket, stop: threading.Event) -> None:
    conn.sendall(b"SSH-2.0-OpenSSH_9.6\r\n")
    _hold(conn, stop)  # never a KEXINIT


def ssh_floods(conn: socket.socket, stop: threading.Event) -> None:
    conn.sendall(b"SSH-2.0-OpenSSH_9.6\r\n")
    junk = (NASTY + b"flood") * 6000
    deadline = time.monotonic() + 30
    while not stop.is_set() and time.monotonic() < deadline:
        conn.sendall(junk)


# -- SMTP peers


def smtp_escapes_in_greeting(conn: socket.socket, stop: threading.Event) -> None:
    conn.sendall(b"220-mx" + NASTY + b"\r\n220 ready" + NASTY + b"\r\n")
    conn.settimeout(5)
    reader = conn.makefile("rb")
    for line in reader:
        if line.upper().startswith((b"EHLO", b"HELO")):
            conn.sendall(b"250-mx" + NASTY + b"\r\n250 STARTTLS\r\n")
        elif line.upper().startswith(b"QUIT"):
            conn.sendall(b"221 bye" + NASTY + b"\r\n")
            return
        else:
            conn.sendall(b"502 no\r\n")


def smtp_huge_greeting_line(conn: socket.socket, stop: threading.Event) -> None:
    conn.sendall(b"220 " + NASTY + b"A" * (10 * 1024 * 1024) + b"\r\n")
    _hold(conn, stop)


def smtp_slow_drip(conn: socket.socket, stop: threading.Event) -> None:
    for byte in b"220 " + NASTY + b" mx.example ESMTP ready, very slowly" * 10:
        if stop.wait(0.5):
            return
        conn.sendall(bytes([byte]))


# -- the audit


@pytest.fixture
def peers() -> Iterator[Callable[[Behaviour], Peer]]:
    started: list[Peer] = []

    def start(behaviour: Behaviour) -> Peer:
        started.append(Peer(behaviour))
        return started[-1]

    yield start
    for peer in started:
        peer.close()


def audit(tmp_path: Path, inventory: str, playbook: str, *args: str) -> tuple[int, str, str]:
    (tmp_path / "hosts.ini").write_text(inventory)
    (tmp_path / "audit.yml").write_text(playbook)
    (tmp_path / "known_hosts").touch()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    env.pop("FLEET_DEBUG", None)
    done = subprocess.run(
        [sys.executable, "-m", "fleet", "audit", "-i", str(tmp_path / "hosts.ini"),
         "-p", str(tmp_path / "audit.yml"), "--report-dir", str(tmp_path / "reports"),
         "--no-history", "--known-hosts", str(tmp_path / "known_hosts"), *args],
        capture_output=True, env=env, timeout=120, cwd=tmp_path,
    )  # fmt: skip
    return done.returncode, done.stdout.decode("utf-8", "replace"), done.stderr.decode()


def reports(tmp_path: Path) -> dict[str, str]:
    files = [p for p in (tmp_path / "reports").rglob("report.*") if p.is_file()]
    return {p.name: p.read_text("utf-8") for p in files}


def assert_clean(tmp_path: Path, stdout: str, stderr: str) -> dict:
    found = reports(tmp_path)
    assert {"report.json", "report.html", "report.csv", "report.xml"} <= set(found)
    for name, text in [*found.items(), ("stdout", stdout), ("stderr", stderr)]:
        bad = CONTROL.search(text)
        assert bad is None, f"{name} holds {bad.group()!r} near {text[bad.start() - 40 :][:80]!r}"
    assert "Traceback" not in stderr
    return json.loads(found["report.json"])


def audit_peers(
    tmp_path: Path,
    peers: Callable[[Behaviour], Peer],
    behaviours: Mapping[str, Behaviour],
    host_vars: str,
    playbook: str,
    *args: str,
) -> tuple[int, str, str, float]:
    """Audit one host per behaviour, each's ``host_vars`` naming its peer's ``{port}``:
    the exit code, stdout, stderr, and the seconds the audit took."""
    lines = [f"{name} {host_vars.format(port=peers(b).port)}" for name, b in behaviours.items()]
    started = time.monotonic()
    code, out, err = audit(tmp_path, "\n".join(["[mail]", *lines, ""]), playbook, *args)
    return code, out, err, time.monotonic() - started


def results_of(report: dict, host: str) -> list[dict]:
    return next(h["results"] for h in report["hosts"] if h["host"] == host)


LOGIN_PLAYBOOK = "- name: hostile\n  hosts: all\n  checks:\n    - binding: {}\n"


@pytest.mark.parametrize("connection", ["ssh", "paramiko"])
def test_hostile_ssh_servers_end_in_bounded_time_with_a_clean_cause(tmp_path, peers, connection):
    behaviours = {
        "escapes": ssh_escapes_then_garbage,
        "stall": ssh_stalls_in_key_exchange,
        "flood": ssh_floods,
    }
    login = f"ansible_host=127.0.0.1 ansible_port={{port}} ansible_connection={connection}"
    login += " ansible_user=nobody"
    code, out, err, took = audit_peers(
        tmp_path, peers, behaviours, login, LOGIN_PLAYBOOK, "--connect-timeout", "3"
    )
    assert took < 45
    assert code == 4, err
    report = assert_clean(tmp_path, out, err)
    for name in behaviours:
        (result,) = results_of(report, name)
        assert result["status"] == Status.UNREACHABLE.value, result
        assert result["cause"], result


SMTP_PLAYBOOK = """\
- name: hostile SMTP
  hosts: all
  checks:
    - smtp:
        targets: ["127.0.0.1"]
        port: "{{ fleet_smtp_port }}"
        timeout: 3
"""


def test_hostile_smtp_servers_end_in_bounded_time_with_a_clean_cause(tmp_path, peers):
    behaviours = {
        "greeting-escapes": smtp_escapes_in_greeting,
        "greeting-10mb": smtp_huge_greeting_line,
        "slow-drip": smtp_slow_drip,
    }
    local = "ansible_connection=local fleet_smtp_port={port}"
    code, out, err, took = audit_peers(
        tmp_path, peers, behaviours, local, SMTP_PLAYBOOK, "--command-timeout", "20"
    )
    assert took < 60
    assert code in (0, 2), err
    report = assert_clean(tmp_path, out, err)
    for name in ("greeting-10mb", "slow-drip"):
        (result,) = results_of(report, name)
        assert result["status"] in ("fail", "error", "warn"), result
        assert result["cause"], result
    (greeted,) = results_of(report, "greeting-escapes")
    assert greeted["status"] in ("ok", "warn"), greeted  # a rude greeting is still a 220
