"""The ``local`` connection: run the audit on the machine fleet runs on."""

from __future__ import annotations

import atexit
import contextlib
import os
import selectors
import signal
import subprocess
import time
from pathlib import Path

from fleet import causes
from fleet.errors import CommandTimeout, TransportError
from fleet.model import CommandResult
from fleet.plan import HostPlan, RunOptions
from fleet.transports._io import CappedBuffer, sh_result
from fleet.transports.base import AuditContext
from fleet.transports.handoff import Handoff, give_up

STDERR_CAP = 64 * 1024

# Commands still running when fleet exits (an interrupt, a run deadline) would
# outlive it: their process groups are killed at exit.
_LIVE: set[subprocess.Popen[bytes]] = set()


@atexit.register
def _kill_leftovers() -> None:
    for proc in list(_LIVE):
        if proc.poll() is None:
            _kill_session(proc.pid)


def _kill_session(sid: int) -> None:
    """SIGKILL every process of the session ``sid`` (our command's): coreutils
    ``timeout`` moves its child into a process group of its own, so killing the
    command's group is not enough."""
    pids = {sid}
    with contextlib.suppress(OSError):
        for entry in os.scandir("/proc"):
            if entry.name.isdigit():
                with contextlib.suppress(OSError, IndexError, ValueError):
                    stat = Path(entry.path, "stat").read_text()
                    # fields after the ")" of the command name: state ppid pgrp session
                    if int(stat.rsplit(")", 1)[1].split()[3]) == sid:
                        pids.add(int(entry.name))
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


class LocalTransport:
    """Runs sh scripts with ``/bin/sh -s`` in a new process group, under a hard deadline."""

    shell = "sh"
    port: int | None = None  # nothing to log into

    def __init__(
        self, host: HostPlan, options: RunOptions, context: AuditContext | None = None
    ) -> None:
        self.host = host
        self.options = options

    @staticmethod
    def login_port(host: HostPlan) -> int | None:
        return None

    def connect(self, handoff: Handoff | None = None) -> None:
        """Nothing to open."""
        give_up(handoff)

    def close(self) -> None:
        """Nothing to close."""

    def run(self, command: str, timeout: float) -> CommandResult:
        started = time.monotonic()
        try:
            proc = subprocess.Popen(
                ["/bin/sh", "-s"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,  # so a timeout can kill every child
            )
        except OSError as exc:
            raise TransportError(
                f"cannot start /bin/sh: {exc.strerror}", cause=causes.TRANSPORT_ERROR
            ) from exc
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        _LIVE.add(proc)
        try:
            return self._finish(proc, command, started, timeout)
        finally:
            _LIVE.discard(proc)

    def _finish(
        self, proc: subprocess.Popen[bytes], command: str, started: float, timeout: float
    ) -> CommandResult:
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        try:
            proc.stdin.write(command.encode())
            proc.stdin.close()
        except BrokenPipeError:
            pass
        out = CappedBuffer(self.options.max_output)
        err = CappedBuffer(STDERR_CAP)
        deadline = started + timeout
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ, out)
            sel.register(proc.stderr, selectors.EVENT_READ, err)
            while sel.get_map():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    _kill_group(proc)
                    raise CommandTimeout(timeout, out.getvalue())
                for key, _ in sel.select(timeout=remaining):
                    data = os.read(key.fd, 65536)
                    if data:
                        key.data.write(data)
                    else:
                        sel.unregister(key.fileobj)
        try:
            status = proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            raise CommandTimeout(timeout, out.getvalue()) from None
        finally:
            proc.stdout.close()
            proc.stderr.close()
        return sh_result(status, out, err, started)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    _kill_session(proc.pid)
    proc.wait()
