"""reach against real sockets on 127.0.0.1: open, refused, silent (no traffic off loopback)."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator

import pytest

from fleet import causes
from fleet.checks.base import get_check
from fleet.checks.reach import ReachCheck, probe_port
from fleet.model import Status
from fleet.plan import HostPlan


@pytest.fixture
def closed_port() -> int:
    """A port on 127.0.0.1 where nothing listens (bound once, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def host(port: int | None, connection: str = "ssh") -> HostPlan:
    return HostPlan(name="mx1", connection=connection, address="127.0.0.1", port=port, user=None)


def test_registered_as_reach():
    assert isinstance(get_check("reach"), ReachCheck)


def test_open_and_refused_ports_read_as_operators_expect(listening, closed_port):
    check = ReachCheck()
    params = check.validate({"ports": [listening, closed_port], "timeout": 2})
    results = check.run(host(22), params, timeout=5)
    assert [(r.target, r.status, r.summary) for r in results] == [
        (str(listening), Status.OK, f"port {listening} open"),
        (str(closed_port), Status.FAIL, f"port {closed_port} refused"),
    ]
    assert results[0].facts["outcome"] == "open"
    assert [r.cause for r in results] == ["", causes.REFUSED]
    assert results[0].facts["connect_ms"] is not None
    assert all(r.check == "reach" and r.host == "mx1" for r in results)


def test_default_ports_are_the_login_port_and_25(listening):
    from fleet.transports.base import login_port

    check = ReachCheck()
    assert check.ports(check.validate({}), login_port(host(listening))) == [listening, 25]
    assert check.ports(check.validate({}), login_port(host(None))) == [22, 25]
    winrm = HostPlan("w", "winrm", "127.0.0.1", None, None, vars={"ansible_winrm_scheme": "http"})
    assert check.ports(check.validate({}), login_port(winrm)) == [5985, 25]
    assert check.ports(check.validate({}), login_port(host(None, connection="local"))) == [25]


@contextlib.contextmanager
def silent_listener() -> Iterator[int]:
    """A port whose accept queue is full: Linux drops further SYNs, so a connect
    hangs exactly as it does against a filtered port."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(0)
        port = server.getsockname()[1]
        fillers = [socket.socket() for _ in range(4)]
        try:
            for s in fillers:
                s.setblocking(False)
                s.connect_ex(("127.0.0.1", port))
            time.sleep(0.1)
            if probe_port("127.0.0.1", port, 0.3).outcome != "timeout":
                pytest.skip("this kernel accepts beyond the backlog: no silent port to test with")
            yield port
        finally:
            for s in fillers:
                s.close()


def test_a_port_that_never_answers_times_out():
    with silent_listener() as port:
        [result] = ReachCheck().run(host(port), {"ports": [port], "timeout": 0.5}, timeout=5)
    assert result.status is Status.FAIL
    assert result.summary == f"port {port} timed out (host down or filtered)"
    assert result.facts["outcome"] == "timeout"
    assert result.cause == causes.TIMEOUT


def test_ports_are_probed_side_by_side(closed_port):
    with silent_listener() as one, silent_listener() as two:
        started = time.monotonic()
        results = ReachCheck().run(host(22), {"ports": [one, two, closed_port], "timeout": 0.6}, 5)
        elapsed = time.monotonic() - started
    assert [r.facts["outcome"] for r in results] == ["timeout", "timeout", "refused"]
    # Two silent ports cost one timeout, not two.
    assert elapsed < 1.1


def test_runner_timeout_caps_the_connect_timeout(monkeypatch, listening):
    seen = []
    import fleet.checks.reach as reach

    def fake_probe(address, port, timeout, keep):
        seen.append(timeout)
        return reach.PortProbe(address, port, reach.OPEN), None

    monkeypatch.setattr(reach, "probe_and_keep", fake_probe)
    ReachCheck().run(host(listening), {"ports": [listening], "timeout": 3}, timeout=0.25)
    assert seen == [0.25]


def test_the_login_ports_connection_is_kept_as_a_value_only_when_asked(listening, closed_port):
    check = ReachCheck()
    params = check.validate({"ports": [closed_port, listening]})
    results, kept = check.reach(host(listening), params, 5, login=listening, keep=True)
    assert [r.status for r in results] == [Status.FAIL, Status.OK]
    assert kept is not None and (kept.address, kept.port) == ("127.0.0.1", listening)
    assert kept.take("127.0.0.1", listening) is kept.sock  # connected, for the login
    kept.close()
    _, none = check.reach(host(listening), params, 5, login=listening, keep=False)
    assert none is None


def test_an_unresolvable_name_is_said_so_with_its_cause(monkeypatch):
    import fleet.checks.reach as reach

    def no_such_name(address, timeout):
        raise socket.gaierror(-2, "Name or service not known")

    monkeypatch.setattr(reach.socket, "create_connection", no_such_name)
    [result] = ReachCheck().run(host(22), {"ports": [22], "timeout": 1}, timeout=1)
    assert (result.status, result.cause) == (Status.FAIL, causes.NAME_UNRESOLVED)
    assert result.summary == "cannot resolve 127.0.0.1 on the runner"


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"port": [22]}, "reach: unknown parameter 'port'"),
        ({"ports": 22}, "reach: ports must be a list"),
        ({"ports": [0]}, "reach: ports must be between 1 and 65535"),
        ({"timeout": "soon"}, "reach: timeout must be a number"),
    ],
)
def test_bad_parameters_are_one_clear_line(params, message):
    with pytest.raises(ValueError, match=message):
        ReachCheck().validate(params)
