"""Celery with Redis as the zones' queue: the app both sides share, the coordinator's
queue, and the worker's task.  Celery is imported here only (the ``zones`` extra).

The broker URL comes from ``FLEET_BROKER_URL`` (never the command line, where a
password in it would show in ``ps``); it is the result store too.  A task is acked
late (a worker killed mid-run leaves it unacked, not lost) and expires at the run's
deadline, so a worker restarted later never runs a stale audit.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Mapping
from typing import Any

from fleet.dispatch.zones import TASK_NAME, queue_name
from fleet.errors import ConfigError

BROKER_ENV = "FLEET_BROKER_URL"
# Seconds the coordinator gives the broker to answer, and the workers a look.
CONNECT_TIMEOUT = 3.0
LOOK_TIMEOUT = 1.0


def broker_url(environ: Mapping[str, str] | None = None) -> str:
    url = (os.environ if environ is None else environ).get(BROKER_ENV, "").strip()
    if not url:
        raise ConfigError(
            f"--dispatch and fleet worker need a broker: set {BROKER_ENV} "
            "(e.g. redis://broker.corp.example:6379/0)"
        )
    return url


def shown(url: str) -> str:
    """The URL without its password, for messages."""
    from kombu.utils.url import maybe_sanitize_url

    return str(maybe_sanitize_url(url))


DAY = 24 * 3600


def celery_app(url: str) -> Any:
    """The Celery app of fleet's zones (broker and result store at ``url``)."""
    try:
        from celery import Celery
    except ImportError as exc:
        raise ConfigError(
            "--dispatch and fleet worker need Celery: pip install 'fleet[zones]'"
        ) from exc
    app = Celery("fleet", broker=url, backend=url, set_as_current=False)
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_track_started=True,  # the worker that took a task is known while it runs
        worker_prefetch_multiplier=1,
        result_expires=DAY,
        broker_connection_retry_on_startup=True,
        broker_connection_timeout=CONNECT_TIMEOUT,
        # Acked late: Redis hands an unacked task to another worker after this long, so
        # it outlasts any run (a zone's task expires at the run's deadline anyway).
        broker_transport_options={"visibility_timeout": DAY},
        worker_hijack_root_logger=False,
    )
    return app


class _Pending:
    def __init__(self, result: Any) -> None:
        self._result = result

    def outcome(self, wait: float) -> Mapping[str, Any] | None:
        from celery.exceptions import TimeoutError as CeleryTimeout

        try:
            reply = self._result.get(timeout=max(wait, 0.01), propagate=False)
        except CeleryTimeout:
            return None
        if self._result.failed():
            return {"refused": f"the task failed: {type(reply).__name__}: {reply}"}
        return reply if isinstance(reply, Mapping) else {"refused": "an unreadable reply"}

    def worker(self) -> str | None:
        info = self._result.info if self._result.state == "STARTED" else None
        return str(info.get("hostname")) if isinstance(info, Mapping) else None

    def cancel(self) -> None:
        with contextlib.suppress(Exception):  # a broker gone by now: the task expires anyway
            self._result.revoke()


class CeleryZones:
    """The coordinator's queue (fleet.dispatch.coordinator.ZoneQueue) over Celery."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.app = celery_app(url)

    def reachable(self) -> str:
        """ "" when the broker answers, else why not (in a few seconds, not Celery's retries)."""
        try:
            with self.app.connection_for_write() as connection:
                connection.ensure_connection(max_retries=1, timeout=CONNECT_TIMEOUT)
        except Exception as exc:  # noqa: BLE001 - any failure means: no broker
            return f"the broker at {shown(self.url)} does not answer: {exc}"
        return ""

    def consumers(self) -> dict[str, set[str]]:
        try:
            replies = self.app.control.inspect(timeout=LOOK_TIMEOUT).active_queues() or {}
        except Exception:  # noqa: BLE001 - a broker gone: no worker is reachable
            return {}
        found: dict[str, set[str]] = {}
        for worker, queues in replies.items():
            for queue in queues or ():
                found.setdefault(str(queue.get("name")), set()).add(str(worker))
        return found

    def send(self, zone: str, task: Mapping[str, Any], expires: float) -> _Pending:
        result = self.app.send_task(
            TASK_NAME, args=[dict(task)], queue=queue_name(zone), expires=expires
        )
        return _Pending(result)


def coordinator_queue() -> tuple[CeleryZones, str]:
    """The queue to send zones to and, when the broker is down, why (every zone then
    comes back not audited, the reports say so)."""
    zones = CeleryZones(broker_url())
    return zones, zones.reachable()


def serve(zone: str, concurrency: int, run: Callable[[Mapping[str, Any]], dict[str, Any]]) -> int:
    """Run a Celery worker consuming ``fleet.<zone>`` until stopped; ``run`` does a task.

    The threads pool: the worker's main thread answers the coordinator's looks while
    an audit runs (the audit's own pool is threads too)."""
    url = broker_url()
    app = celery_app(url)

    def audit_zone(task: Mapping[str, Any]) -> dict[str, Any]:
        return run(task)

    app.task(name=TASK_NAME)(audit_zone)
    argv = [
        "worker",
        f"--queues={queue_name(zone)}",
        f"--hostname={zone}.{os.getpid()}@%h",
        "--pool=threads",
        f"--concurrency={concurrency}",
        "--without-gossip",
        "--without-mingle",
        "--loglevel=INFO",
    ]
    app.worker_main(argv)
    return 0
