"""The run as Prometheus metrics, for node_exporter's textfile collector (``--format prom``).

One gauge per host x check x target gives its status as a number (the mapping
is ``STATUS_VALUE``: the higher, the worse); each source → target pair gives its
ping loss and round trip and its SMTP greeting time; the run gives its duration,
its counts by status, by cause and by kind of finding, and its time.  Every
series carries the ``inventory`` label, so several inventories' files can share
one collector directory.  Host text becomes label values only through
``fleet.text.safe_text``; prometheus-client escapes what is left.

``write_reports`` writes the file under a temporary name that does not end in
``.prom`` and renames it into place, which is what the collector needs to never
read half a file.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any

from fleet.changes import inventory_label
from fleet.diagnose import CAUSES, Diagnosis, diagnose
from fleet.model import CheckResult, RunResult, Status
from fleet.text import safe_text

if TYPE_CHECKING:
    from prometheus_client.core import GaugeMetricFamily

# fleet_check_status / fleet_host_status value per status: the higher, the worse.
STATUS_VALUE: dict[Status, int] = {
    Status.OK: 0,
    Status.SKIPPED: 1,
    Status.WARN: 2,
    Status.ERROR: 3,
    Status.FAIL: 4,
    Status.UNREACHABLE: 5,
}

_LABEL_LIMIT = 200  # a label value longer than a host name or target has no use


def _label(text: object) -> str:
    return safe_text(text, _LABEL_LIMIT)


def _timestamp(iso: str) -> float | None:
    """Seconds since the epoch of an ISO 8601 time; None when it is not one."""
    try:
        moment = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment.timestamp() if moment.tzinfo is not None else None


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


class _RunCollector:
    """Every metric of one run (a prometheus-client collector), built for one rendering."""

    def __init__(self, run: RunResult, diagnosis: Diagnosis) -> None:
        self.run, self.diagnosis = run, diagnosis
        self.inventory = _label(inventory_label(run.inventory))

    def _gauge(self, name: str, help_text: str, labels: Iterable[str] = ()) -> GaugeMetricFamily:
        from prometheus_client.core import GaugeMetricFamily

        return GaugeMetricFamily(name, help_text, labels=["inventory", *labels])

    def collect(self) -> Iterator[GaugeMetricFamily]:
        yield from self._statuses()
        yield from self._pairs()
        yield from self._counts()
        yield from self._times()

    def _statuses(self) -> Iterator[GaugeMetricFamily]:
        mapping = ", ".join(f"{v} {s.value}" for s, v in STATUS_VALUE.items())
        check = self._gauge(
            "fleet_check_status",
            f"Status of a check on a host, per target ({mapping})",
            ["host", "check", "target"],
        )
        host = self._gauge(
            "fleet_host_status", f"Worst status of a host's checks ({mapping})", ["host"]
        )
        # one series per label set (the worst), or the collector rejects the whole file
        worst: dict[tuple[str, ...], int] = {}
        hosts: dict[tuple[str, ...], int] = {}
        for h in self.run.hosts:
            name = _label(h.host)
            hosts[(name,)] = max(hosts.get((name,), 0), STATUS_VALUE[h.status])
            for r in h.results:
                key = (name, _label(r.check), _label(r.target or ""))
                worst[key] = max(worst.get(key, 0), STATUS_VALUE[r.status])
        for labels, value in worst.items():
            check.add_metric([self.inventory, *labels], value)
        for labels, value in hosts.items():
            host.add_metric([self.inventory, *labels], value)
        yield check
        yield host

    def _pairs(self) -> Iterator[GaugeMetricFamily]:
        pair = ["source", "target"]
        loss = self._gauge("fleet_ping_loss_ratio", "Share of pings lost, source to target", pair)
        rtt = self._gauge(
            "fleet_ping_rtt_seconds", "Average ping round trip, source to target", pair
        )
        greeting = self._gauge(
            "fleet_smtp_greeting_seconds",
            "Time from connected to the whole SMTP greeting, source to target",
            pair,
        )
        values: dict[str, dict[tuple[str, str], float]] = {"loss": {}, "rtt": {}, "greeting": {}}
        for r in self.run.results:
            if r.target and r.status not in (Status.SKIPPED, Status.UNREACHABLE):
                _pair_values(r, values)
        for family, key in ((loss, "loss"), (rtt, "rtt"), (greeting, "greeting")):
            for (source, target), value in values[key].items():
                family.add_metric([self.inventory, source, target], value)
        yield from (loss, rtt, greeting)

    def _counts(self) -> Iterator[GaugeMetricFamily]:
        statuses = self._gauge("fleet_check_results", "Check results by status", ["status"])
        for status, count in self.run.counts().items():
            statuses.add_metric([self.inventory, status], count)
        by_cause: dict[str, int] = {}
        for r in self.run.results:
            if r.cause:
                by_cause[r.cause] = by_cause.get(r.cause, 0) + 1
        causes = self._gauge(
            "fleet_check_results_by_cause", "Check results that are not ok, by cause", ["cause"]
        )
        for cause, count in sorted(by_cause.items()):
            causes.add_metric([self.inventory, _label(cause)], count)
        grouped = self.diagnosis.by_cause()
        findings = self._gauge("fleet_findings", "Findings of the diagnosis, by kind", ["kind"])
        for kind in CAUSES:
            findings.add_metric([self.inventory, kind], len(grouped.get(kind, ())))
        hosts = self._gauge("fleet_hosts", "Hosts audited, failing and unreachable", ["state"])
        hosts.add_metric([self.inventory, "all"], len(self.run.hosts))
        hosts.add_metric([self.inventory, "failing"], len(self.run.failed_hosts))
        hosts.add_metric([self.inventory, "unreachable"], len(self.run.unreachable_hosts))
        yield from (statuses, causes, findings, hosts)

    def _times(self) -> Iterator[GaugeMetricFamily]:
        started, finished = _timestamp(self.run.started), _timestamp(self.run.finished)
        complete = not (self.run.interrupted or self.run.deadline_hit)
        if started is not None and finished is not None:
            duration = self._gauge("fleet_run_duration_seconds", "How long the audit took")
            duration.add_metric([self.inventory], max(0.0, finished - started))
            yield duration
        if finished is not None:
            last = self._gauge("fleet_last_run_timestamp_seconds", "When the last audit finished")
            last.add_metric([self.inventory], finished)
            yield last
        if finished is not None and complete:
            success = self._gauge(
                "fleet_last_success_timestamp_seconds",
                "When the last audit that ran to its end (not interrupted, no deadline) finished",
            )
            success.add_metric([self.inventory], finished)
            yield success
        ran = self._gauge("fleet_run_complete", "1 if the audit ran to its end, else 0")
        ran.add_metric([self.inventory], 1 if complete else 0)
        yield ran


def _pair_values(r: CheckResult, values: dict[str, dict[tuple[str, str], float]]) -> None:
    """Ping loss and round trip, or SMTP greeting time, of one probe (last one wins)."""
    pair = (_label(r.host), _label(r.target))
    if r.check == "ping":
        sent, received = _number(r.facts.get("transmitted")), _number(r.facts.get("received"))
        if sent:
            values["loss"][pair] = max(0.0, min(1.0, (sent - (received or 0)) / sent))
        if (avg := _number(r.facts.get("rtt_avg_ms"))) is not None:
            values["rtt"][pair] = avg / 1000
    elif r.check == "smtp" and (ms := _number(r.facts.get("greeting_ms"))) is not None:
        values["greeting"][pair] = ms / 1000


def render_prom(run: RunResult, diagnosis: Diagnosis | None = None) -> str:
    """The run in Prometheus's text exposition format."""
    # imported here: only a run that asks for metrics pays for the library
    from prometheus_client import CollectorRegistry, generate_latest

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_RunCollector(run, diagnosis if diagnosis is not None else diagnose(run)))
    return generate_latest(registry).decode("utf-8")
