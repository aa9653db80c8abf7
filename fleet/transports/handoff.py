"""The reach probe's connection to the login port, handed to the SSH login.

``reach`` connects to every host's login port anyway (that is how a silent
host is told from a refusing one without a login).  Handing that connected
socket to the SSH login, in the same worker thread, saves each audited host
a second TCP connection every night: one sshd process fewer, and no
"Connection closed by ... [preauth]" line in its auth log.

A socket is only handed over to a host that gets a login slot at once
(``fleet.runner.LoginSlots`` closes it before a host waits) and while it is
fresh (sshd's LoginGraceTime runs from the accept); a stale or unclaimed one
is closed, and the login opens its own.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time

# Connections that a transport takes over (WinRM's HTTP client makes its own).
TAKERS = frozenset({"ssh", "paramiko"})
# Seconds.  sshd drops a connection that has not logged in within LoginGraceTime
# (120 s by default, 30-60 s on hardened hosts, rarely under 10); a host that waited
# longer for a login slot gets a fresh connection instead.
MAX_AGE = 5.0

_HELD = threading.local()


def offer(address: str, port: int, sock: socket.socket) -> None:
    """Keep ``sock`` (connected to ``address:port``) for this thread's login."""
    discard()
    _HELD.value = (address, port, sock, time.monotonic())


def take(address: str, port: int) -> socket.socket | None:
    """The socket offered for ``address:port`` if it is still fresh, else None."""
    held = getattr(_HELD, "value", None)
    _HELD.value = None
    if held is None:
        return None
    at_address, at_port, sock, since = held
    if (at_address, at_port) == (address, port) and time.monotonic() - since <= MAX_AGE:
        return sock
    with contextlib.suppress(OSError):
        sock.close()
    return None


def discard() -> None:
    """Close whatever this thread still holds (the host needed no login after all)."""
    held = getattr(_HELD, "value", None)
    _HELD.value = None
    if held is not None:
        with contextlib.suppress(OSError):
            held[2].close()
