"""Progress observers: a live bar on a terminal, one line per host elsewhere.

They watch the run (the runner calls them as each host finishes); they hold
no logic the report depends on.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import TextIO

from fleet.model import HostResult, Status
from fleet.render.console import safe_text


class LineProgress:
    """One line per finished host: for CI logs and cron mail."""

    def __init__(self, total: int, stream: TextIO | None = None) -> None:
        self.total = total
        self.stream = stream or sys.stderr
        self.done = 0
        self._lock = threading.Lock()

    def finish(self) -> None:
        """Nothing to close: every line is already whole."""

    def __call__(self, host: HostResult) -> None:
        with self._lock:
            self.done += 1
            bad = [r for r in host.results if r.status not in (Status.OK, Status.SKIPPED)]
            detail = f": {safe_text(bad[0].summary, 100)}" if bad else ""
            self.stream.write(
                f"[{self.done}/{self.total}] {safe_text(host.host, 60)} "
                f"{host.status.value} ({host.duration:.1f}s){detail}\n"
            )
            self.stream.flush()


class BarProgress:
    """A live bar on a terminal: hosts done of total, failures so far, time left."""

    width = 30

    def __init__(self, total: int, stream: TextIO | None = None) -> None:
        self.total = total
        self.stream = stream or sys.stderr
        self.done = 0
        self.failing = 0
        self.unreachable = 0
        self.started = time.monotonic()
        self._lock = threading.Lock()

    def __call__(self, host: HostResult) -> None:
        with self._lock:
            self.done += 1
            if host.unreachable:
                self.unreachable += 1
            elif host.status in (Status.FAIL, Status.ERROR):
                self.failing += 1
            self._draw()

    def finish(self) -> None:
        """End the bar's line when the run stopped early (deadline, interrupt)."""
        with self._lock:
            if 0 < self.done < self.total:
                self.stream.write("\n")
                self.stream.flush()

    def _draw(self) -> None:
        filled = int(self.width * self.done / max(1, self.total))
        elapsed = time.monotonic() - self.started
        left = elapsed / self.done * (self.total - self.done) if self.done else 0.0
        self.stream.write(
            f"\r[{'#' * filled}{'.' * (self.width - filled)}] {self.done}/{self.total} hosts"
            f"  {self.failing} failing  {self.unreachable} unreachable  ~{left:.0f}s left "
        )
        if self.done == self.total:
            self.stream.write("\n")
        self.stream.flush()


def progress_for(
    total: int, quiet: bool, stream: TextIO | None = None
) -> list[LineProgress | BarProgress]:
    """The observers fit for where output goes."""
    stream = stream or sys.stderr
    if quiet or total == 0:
        return []
    if stream.isatty():
        return [BarProgress(total, stream)]
    return [LineProgress(total, stream)]
