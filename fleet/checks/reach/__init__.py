"""The reach check: can the RUNNER open TCP connections to the host itself?

Runs on the runner, needs no login.  It connects to the host's management
port (22 for SSH, 5985/5986 for WinRM) and to port 25, side by side, and
tells "host down or filtered" (timed out) from "service down" (refused): the
half of the diagnosis that no audited host can give about itself.  Its
connection to the login port may stay open for the login to take over
(``ReachCheck.reach``, fleet.transports.handoff).
"""

from __future__ import annotations

import errno
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from fleet import causes
from fleet.checks.facts import as_facts
from fleet.checks.params import as_int, as_number, known_params
from fleet.model import CheckResult, Status
from fleet.plan import HostPlan
from fleet.transports.base import login_address, login_port, login_proxy
from fleet.transports.handoff import Handoff

DEFAULTS: dict[str, Any] = {"ports": None, "timeout": 3.0}

# reach outcomes
OPEN = "open"
REFUSED = "refused"
TIMEOUT = "timeout"
UNREACHABLE = "unreachable"
UNRESOLVED = "unresolved"
ERROR = "error"

_UNREACHABLE_ERRNOS = {errno.EHOSTUNREACH, errno.ENETUNREACH, getattr(errno, "EHOSTDOWN", -1)}


@dataclass(frozen=True)
class PortProbe:
    """One TCP connect from the runner to ``address:port``."""

    address: str
    port: int
    outcome: str
    connect_ms: float | None = None
    elapsed_s: float = 0.0  # how long the probe took, whatever its outcome
    error: str = ""


def probe_port(address: str, port: int, timeout: float) -> PortProbe:
    """Connect once (each resolved address in turn, within ``timeout``) and close."""
    return probe_and_keep(address, port, timeout, keep=False)[0]


def probe_and_keep(
    address: str, port: int, timeout: float, keep: bool
) -> tuple[PortProbe, Handoff | None]:
    """``probe_port``; with ``keep``, an open connection is returned instead of closed."""
    started = time.monotonic()
    probe, kept = _connect(address, port, timeout, started, keep)
    return replace(probe, elapsed_s=round(time.monotonic() - started, 6)), kept


def _connect(
    address: str, port: int, timeout: float, started: float, keep: bool
) -> tuple[PortProbe, Handoff | None]:
    try:
        sock = socket.create_connection((address, port), timeout=timeout)
        elapsed = round((time.monotonic() - started) * 1000, 3)
        kept = Handoff(address, port, sock) if keep else None
        if kept is None:
            sock.close()
        return PortProbe(address, port, OPEN, connect_ms=elapsed), kept
    except socket.gaierror as exc:
        return PortProbe(address, port, UNRESOLVED, error=str(exc)), None
    except ConnectionRefusedError:
        return PortProbe(address, port, REFUSED), None
    except TimeoutError:  # socket.timeout is TimeoutError from Python 3.10
        return PortProbe(address, port, TIMEOUT), None
    except OSError as exc:
        if exc.errno == errno.ETIMEDOUT:  # the kernel gave up on its SYN retries first
            return PortProbe(address, port, TIMEOUT), None
        outcome = UNREACHABLE if exc.errno in _UNREACHABLE_ERRNOS else ERROR
        return PortProbe(address, port, outcome, error=exc.strerror or str(exc)), None


def judge_port(host: str, probe: PortProbe) -> CheckResult:
    """The operator's sentence for one port."""
    port = f"port {probe.port}"
    summaries = {
        OPEN: (Status.OK, f"{port} open", ""),
        REFUSED: (Status.FAIL, f"{port} refused", causes.REFUSED),
        TIMEOUT: (Status.FAIL, f"{port} timed out (host down or filtered)", causes.TIMEOUT),
        UNREACHABLE: (
            Status.FAIL,
            f"{port} unreachable ({probe.error or 'no route to host'})",
            causes.UNREACHABLE,
        ),
        UNRESOLVED: (
            Status.FAIL,
            f"cannot resolve {probe.address} on the runner",
            causes.NAME_UNRESOLVED,
        ),
    }
    # Any other socket error: the runner cannot get there either.
    other = (Status.FAIL, f"{port}: {probe.error}", causes.UNREACHABLE)
    status, summary, cause = summaries.get(probe.outcome, other)
    return CheckResult(
        host=host,
        check="reach",
        status=status,
        cause=cause,
        summary=summary,
        target=str(probe.port),
        facts=as_facts(probe),
        duration=probe.elapsed_s,
    )


class ReachCheck:
    """``reach``: ``{ports: null (management port and 25), timeout: 3}``; one result per port."""

    name = "reach"

    def validate(self, params: Mapping[str, Any]) -> dict[str, Any]:
        known_params(self.name, params, DEFAULTS)
        merged = {**DEFAULTS, **params}
        ports = merged["ports"]
        if ports is not None:
            if not isinstance(ports, (list, tuple)):
                raise ValueError(f"reach: ports must be a list of port numbers, not {ports!r}")
            ports = [as_int(self.name, "ports", p, 1, 65535) for p in ports]
        return {
            "ports": ports,
            "timeout": as_number(self.name, "timeout", merged["timeout"], 0.1, 60),
        }

    def ports(self, params: Mapping[str, Any], login: int | None) -> Sequence[int]:
        """The ports asked for, else the login port ``login`` (none for ``local``) and 25."""
        chosen = params.get("ports") or [login, 25]
        return list(dict.fromkeys(int(p) for p in chosen if p is not None))

    def run(self, host: HostPlan, params: Mapping[str, Any], timeout: float) -> list[CheckResult]:
        """Probe every port at once (``reach``, keeping no connection); none for a host
        behind a bastion."""
        results, _ = self.reach(host, params, timeout, login_port(host), keep=False)
        return results

    def reach(
        self,
        host: HostPlan,
        params: Mapping[str, Any],
        timeout: float,
        login: int | None,
        keep: bool,
    ) -> tuple[list[CheckResult], Handoff | None]:
        """Probe every port at once; with ``keep``, the connection to the login port
        ``login`` stays open and is returned for the login to take over.

        The login port gets the whole ``timeout`` (the runner's connect budget): a
        timeout there means the login is not tried, so it must not be shorter than
        the login would have had.  Other ports get the check's own ``timeout`` (3 s),
        capped by the budget."""
        bastion = login_proxy(host) if host.connection in ("ssh", "paramiko") else None
        if bastion is not None:
            return [
                behind_bastion(host.name, port, bastion) for port in self.ports(params, login)
            ], None
        other = min(float(params.get("timeout", 3.0)), timeout)
        address = login_address(host)  # ssh_config's HostName, where it names one

        def probe(port: int) -> tuple[PortProbe, Handoff | None]:
            wait = timeout if port == login else other
            return probe_and_keep(address, port, wait, keep and port == login)

        found = side_by_side(probe, self.ports(params, login))
        kept = next((k for _, k in found if k is not None), None)
        return [judge_port(host.name, p) for p, _ in found], kept


Probed = tuple[PortProbe, Handoff | None]


def behind_bastion(host: str, port: int, bastion: str) -> CheckResult:
    """A port the runner does not probe: the host is reached through ``bastion``, so the
    runner's own view says nothing about it (neither up nor down)."""
    return CheckResult(
        host=host,
        check="reach",
        status=Status.SKIPPED,
        cause=causes.BEHIND_BASTION,
        summary=f"port {port} not probed: behind bastion {bastion}",
        target=str(port),
        facts={"port": port, "bastion": bastion},
    )


def side_by_side(probe: Callable[[int], Probed], ports: Sequence[int]) -> list[Probed]:
    """``probe`` each port at once: the first in this thread, a thread for each other
    (a pool per host cost more CPU than the probes; most hosts probe one or two ports)."""
    found: dict[int, Probed] = {}

    def run(port: int) -> None:
        found[port] = probe(port)

    others = [threading.Thread(target=run, args=(p,), daemon=True) for p in ports[1:]]
    for thread in others:
        thread.start()
    if ports:
        run(ports[0])
    for thread in others:
        thread.join()
    return [found[p] for p in ports]
