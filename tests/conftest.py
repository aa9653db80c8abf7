"""Shared fixtures: the network lab (a fleet of mail servers in network namespaces).

The ``lab`` fixture builds the lab once per session and always tears it down.
It needs root; without root it FAILS, because a silently skipped lab hides
every network test.  ``FLEET_SKIP_LAB=1`` skips those tests on purpose.
"""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Callable, Iterator

import pytest

from tests.lab import Lab

InLab = Callable[..., "subprocess.CompletedProcess[str]"]


@pytest.fixture(scope="session")
def lab() -> Iterator[Lab]:
    if os.environ.get("FLEET_SKIP_LAB") == "1":
        pytest.skip("FLEET_SKIP_LAB=1: the network lab is not built, its tests are skipped")
    if os.geteuid() != 0:
        pytest.fail(
            "the network lab needs root (namespaces, a bridge, sshd); "
            "run the tests as root or set FLEET_SKIP_LAB=1 to skip the lab tests"
        )
    import tests.lab

    try:
        # The default state dir: sshd reads authorized_keys there as the lab
        # user, who cannot enter pytest's private tmp dirs.
        yield tests.lab.up()
    finally:
        tests.lab.down()


@pytest.fixture
def in_lab(lab: Lab) -> InLab:
    """Run a command inside a lab host's namespace: ``in_lab("mon1", "ping", "-c1", "mx1")``.

    ``where`` is a lab host name or a namespace (``fleet-gw``).  Never raises on a
    non-zero exit: the CompletedProcess (text) is the answer.
    """

    def run(where: str, *argv: str, timeout: float = 15.0) -> subprocess.CompletedProcess[str]:
        namespace = where if where.startswith("fleet-") else lab.host(where).namespace
        return subprocess.run(
            ["ip", "netns", "exec", namespace, *argv],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    return run


@pytest.fixture
def listening() -> Iterator[int]:
    """A port on 127.0.0.1 with a listener (connections complete in the kernel)."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        yield server.getsockname()[1]
