"""The reach probe's connection to the login port, handed to the SSH login as a value.

``reach`` connects to every host's login port anyway (that is how a silent
host is told from a refusing one without a login).  Handing that connected
socket to the SSH login saves each audited host a second TCP connection: one
sshd process fewer, and no "Connection closed by ... [preauth]" line in its
auth log.

The runner carries the ``Handoff`` from reach to the transport's
``connect``; whoever holds it last closes it.  A host that must wait for a
login slot gives it up first (``fleet.runner.LoginSlots``), and a login only
takes it while it is fresh (sshd's LoginGraceTime runs from the accept).
"""

from __future__ import annotations

import contextlib
import socket
import time
from dataclasses import dataclass, field

# Connections that a transport takes over (WinRM's HTTP client makes its own).
TAKERS = frozenset({"ssh", "paramiko"})
# Seconds.  sshd drops a connection that has not logged in within LoginGraceTime
# (120 s by default, 30-60 s on hardened hosts, rarely under 10); a host that waited
# longer for a login slot gets a fresh connection instead.
MAX_AGE = 5.0


@dataclass(frozen=True)
class Handoff:
    """A TCP connection to ``address:port`` opened at ``since`` (time.monotonic)."""

    address: str
    port: int
    sock: socket.socket = field(compare=False)
    since: float = field(default_factory=time.monotonic)

    def take(self, address: str, port: int, max_age: float = MAX_AGE) -> socket.socket | None:
        """The socket, if it is open, leads to ``address:port`` and is fresh; else it is
        closed: None."""
        fresh = time.monotonic() - self.since <= max_age
        if (self.address, self.port) == (address, port) and fresh and self.sock.fileno() >= 0:
            return self.sock
        self.close()
        return None

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


def give_up(handoff: Handoff | None) -> None:
    """Close ``handoff`` if there is one (the host needed no login after all)."""
    if handoff is not None:
        handoff.close()
