"""Bounded output buffers and the login watchdog, shared by the transports."""

from __future__ import annotations

import contextlib
import heapq
import threading
import time
from collections.abc import Callable

from fleet.model import CommandResult


class CappedBuffer:
    """Keeps the first ``cap`` bytes written; remembers whether more arrived."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self._parts: list[bytes] = []
        self._size = 0
        self.truncated = False

    def write(self, data: bytes) -> None:
        room = self.cap - self._size
        if room <= 0:
            self.truncated = self.truncated or bool(data)
            return
        if len(data) > room:
            self.truncated = True
            data = data[:room]
        self._parts.append(data)
        self._size += len(data)

    def getvalue(self) -> bytes:
        return b"".join(self._parts)


class Alarm:
    """A pending call of ``Watchdog.call_later``; ``cancel()`` makes it a no-op."""

    __slots__ = ("action", "cancelled", "when")

    def __init__(self, when: float, action: Callable[[], None]) -> None:
        self.when, self.action, self.cancelled = when, action, False

    def cancel(self) -> None:
        self.cancelled = True

    def __lt__(self, other: Alarm) -> bool:
        return self.when < other.when


class Watchdog:
    """One daemon thread that runs actions at their deadlines, for every connection.

    A ``threading.Timer`` per login cost a thread start and a join per host;
    this thread sleeps until the earliest deadline and skips cancelled ones.
    """

    def __init__(self) -> None:
        self._alarms: list[Alarm] = []
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None

    def call_later(self, seconds: float, action: Callable[[], None]) -> Alarm:
        alarm = Alarm(time.monotonic() + seconds, action)
        with self._changed:
            heapq.heappush(self._alarms, alarm)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="watchdog", daemon=True)
                self._thread.start()
            if self._alarms[0] is alarm:  # sooner than the thread is waiting for
                self._changed.notify()
        return alarm

    def _run(self) -> None:
        while True:
            with self._changed:
                while not self._alarms or self._alarms[0].when > time.monotonic():
                    wait = self._alarms[0].when - time.monotonic() if self._alarms else None
                    self._changed.wait(wait)
                alarm = heapq.heappop(self._alarms)
            if not alarm.cancelled:
                with contextlib.suppress(Exception):  # an action's failure must not stop the dog
                    alarm.action()


WATCHDOG = Watchdog()


def sh_result(status: int, out: CappedBuffer, err: CappedBuffer, started: float) -> CommandResult:
    """What ``/bin/sh -s`` gave back: the exit status, the (capped) stdout and stderr,
    and the time since ``started`` (time.monotonic)."""
    return CommandResult(
        command="/bin/sh -s",
        exit_status=status,
        stdout=out.getvalue(),
        stderr=err.getvalue(),
        duration=time.monotonic() - started,
        truncated=out.truncated,
    )
