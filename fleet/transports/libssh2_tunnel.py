"""Channels through a libssh2 jump host, each seen by the host's own login as a socket.

A libssh2 session is not safe to use from two threads, and the login behind
the jump host needs a real file descriptor to wait on.  So one thread per
jump host owns its session (non-blocking) and copies bytes between each
``direct-tcpip`` channel and one end of a socketpair; the login behind it
gets the other end.  Direct hosts never go through here.
"""

from __future__ import annotations

import contextlib
import functools
import queue
import select
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from ssh2.error_codes import LIBSSH2_ERROR_EAGAIN
from ssh2.exceptions import SocketDisconnectError
from ssh2.session import LIBSSH2_SESSION_BLOCK_OUTBOUND, Session

from fleet import causes
from fleet.errors import TransportError, UnreachableError
from fleet.transports import jump

_CHUNK = 65536
# libssh2 may have read a packet for one channel while serving another, leaving the
# socket quiet: the thread never sleeps longer than this.
_PATIENCE = 0.05
_CLOSE_WAIT = 5.0  # seconds a closed channel waits for the jump host's CLOSE in reply
_SEND_WAIT = 30.0  # seconds a half-sent packet may wait for the jump host to take it

# What a libssh2 call on the session did: moved bytes, nothing, or would block.
_MOVED, _IDLE, _AGAIN = 1, 0, LIBSSH2_ERROR_EAGAIN


_GONE = select.POLLRDHUP | select.POLLHUP | select.POLLERR


def _again(failure: TransportError) -> TransportError:
    """``failure`` as a new exception, for one more host (each raises its own)."""
    if isinstance(failure, UnreachableError):
        return UnreachableError(failure.reason, failure.hint, cause=failure.cause)
    return TransportError(str(failure), cause=failure.cause)


class _Request:
    """A channel asked for by a login thread, opened by the pump's thread."""

    def __init__(self, address: str, port: int, done: Callable[[], None]) -> None:
        self.address, self.port, self.done = address, port, done
        self.ready = threading.Event()
        self.sock: socket.socket | None = None
        self.error: TransportError | None = None
        self.abandoned = False


class _Tunnel:
    """One channel and the pump's end of its socketpair, with what waits to cross.

    Its libssh2 calls (read, write, close) each return ``_MOVED``, ``_IDLE`` or
    ``_AGAIN`` and may be called again as they are: the pump repeats one whose packet
    is half sent before any other.
    """

    def __init__(self, channel: Any, local: socket.socket, done: Callable[[], None]) -> None:
        self.channel, self.local, self.done = channel, local, done
        self.to_local = b""
        self.to_channel = b""
        self.remote_eof = False
        self.finished = False  # the login's end is closed; the channel closes next
        self.closed = False  # the channel too (or given up on)
        self.close_by = 0.0

    def wants_read(self) -> bool:
        return not self.finished and not self.to_local and not self.remote_eof

    def read(self) -> int:
        size, data = self.channel.read(_CHUNK)
        if size > 0:
            self.to_local = data
            return _MOVED
        if size in (0, LIBSSH2_ERROR_EAGAIN) and self.channel.eof():
            self.remote_eof = True
            with contextlib.suppress(OSError):
                self.local.shutdown(socket.SHUT_WR)
            return _MOVED
        if size == LIBSSH2_ERROR_EAGAIN:
            return _AGAIN
        if size < 0:
            self.finish()
            return _MOVED
        return _IDLE

    def deliver(self) -> bool:
        """Hand what the channel gave to the login's end; True if anything moved."""
        if not self.to_local or self.finished:
            return False
        try:
            sent = self.local.send(self.to_local)
        except BlockingIOError:
            sent = 0
        except OSError:
            self.finish()
            return True
        self.to_local = self.to_local[sent:]
        return sent > 0

    def fetch(self) -> bool:
        """Take what the login sends, once the last of it crossed; True if anything did."""
        if self.to_channel or self.finished:
            return False
        try:
            data = self.local.recv(_CHUNK)
        except BlockingIOError:
            return False
        except OSError:
            data = b""
        if data == b"":  # the login behind closed its socket: the channel goes too
            self.finish()
            return True
        self.to_channel = data
        return True

    def write(self) -> int:
        rc, written = self.channel.write(self.to_channel)
        self.to_channel = self.to_channel[written:]
        if rc == LIBSSH2_ERROR_EAGAIN:
            return _AGAIN
        if rc < 0:
            self.to_channel = b""
            self.finish()
            return _MOVED
        return _MOVED if written > 0 else _IDLE

    def close(self) -> int:
        """Close the channel: libssh2 sends CLOSE, then waits for the jump host's."""
        try:
            rc = self.channel.close()
        except Exception:  # noqa: BLE001 - a channel the jump host already dropped
            rc = 0
        if rc == LIBSSH2_ERROR_EAGAIN:
            return _AGAIN
        self.closed = True
        return _MOVED

    def events(self) -> int:
        if self.finished:  # its socket is closed: only the channel's CLOSE is awaited
            return 0
        wanted = 0 if self.to_channel else select.POLLIN
        return wanted | (select.POLLOUT if self.to_local else 0)

    def finish(self) -> None:
        """End the login's side now; the channel's CLOSE is the pump's to send."""
        if self.finished:
            return
        self.finished = True
        self.close_by = time.monotonic() + _CLOSE_WAIT
        with contextlib.suppress(OSError):
            self.local.close()
        self.done()


class TunnelPump:
    """The thread that owns a jump host's libssh2 session once it tunnels.

    libssh2 sends one packet at a time: once a call returns EAGAIN with its packet half
    sent, that same call must be repeated until the packet is out, and any other send
    meanwhile is refused (EAGAIN, or LIBSSH2_ERROR_BAD_USE in older releases).  So a
    call that leaves the session blocked outbound is the only one the pump makes until
    it is through, whichever channel it serves.
    """

    def __init__(self, session: Session, sock: socket.socket, name: str) -> None:
        self.session, self.sock, self.name = session, sock, name
        self._requests: queue.SimpleQueue[_Request] = queue.SimpleQueue()
        self._pending: list[_Request] = []
        self._tunnels: list[_Tunnel] = []
        self._wake_here, self._wake_there = socket.socketpair()
        self._wake_here.setblocking(False)
        self._stop = threading.Event()
        self._failure: TransportError | None = None
        self._ended: TransportError | None = None  # set once, under _lock: no more requests
        self._lock = threading.Lock()
        self._in_flight: Callable[[], int] | None = None
        self._in_flight_since = 0.0
        session.set_blocking(False)
        self._thread = threading.Thread(target=self._run, name=f"bastion {name}", daemon=True)
        self._thread.start()

    @property
    def alive(self) -> bool:
        """False once the thread ended: the session is spent, a new login is needed."""
        return self._ended is None and self._thread.is_alive()

    def open(self, address: str, port: int, timeout: float, done: Callable[[], None]) -> Any:
        """A socket to ``address:port`` through the jump host, within ``timeout``."""
        request = _Request(address, port, done)
        with self._lock:
            if self._ended is not None:  # the connection failed (or closed) under its hosts
                raise _again(self._ended)
            self._requests.put(request)
        self._wake()
        if not request.ready.wait(timeout):
            request.abandoned = True
            raise jump.channel_refused(self.name, f"{address}:{port}", "timed out")
        if request.error is not None:
            raise request.error
        return request.sock

    def stop(self) -> None:
        self._stop.set()
        self._wake()
        if threading.current_thread() is not self._thread:
            self._thread.join(2.0)

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            self._wake_there.send(b"x")

    def _run(self) -> None:
        try:
            idle = 0
            while not self._stop.is_set():
                moved = self._turn()
                self._tunnels = [t for t in self._tunnels if not t.closed]
                idle = 0 if moved else idle + 1
                if idle >= 2:  # twice nothing: libssh2 holds nothing back, sleep
                    self._sleep()
        except TransportError as exc:
            self._failure = exc
        except SocketDisconnectError:
            self._failure = self._closed_by_bastion()
        except Exception as exc:  # noqa: BLE001 - the connection is gone: every channel ends
            self._failure = TransportError(
                f"bastion {self.name}: the connection failed: {type(exc).__name__}",
                cause=causes.TRANSPORT_ERROR,
            )
        finally:
            self._end()

    def _turn(self) -> bool:
        """One round: the half-sent packet's call alone if there is one, else everything."""
        if self._in_flight is not None:
            if time.monotonic() - self._in_flight_since > _SEND_WAIT:
                raise TransportError(
                    f"bastion {self.name}: the connection stalled "
                    f"(nothing sent for {_SEND_WAIT:g}s)",
                    cause=causes.TRANSPORT_ERROR,
                )
            return self._call(self._in_flight)
        moved = self._serve_requests()
        for tunnel in self._tunnels:
            if self._in_flight is not None:
                break
            moved = self._pump(tunnel) or moved
        return moved

    def _pump(self, tunnel: _Tunnel) -> bool:
        """Move what can move on ``tunnel`` without waiting; True if anything did."""
        if tunnel.finished:
            moved = self._call(tunnel.close)
            if self._in_flight is None and not tunnel.closed and time.monotonic() > tunnel.close_by:
                tunnel.closed = True  # its CLOSE is out, the jump host's never came: let go
            return moved
        moved = tunnel.wants_read() and self._call(tunnel.read)
        if self._in_flight is not None:
            return moved
        moved = tunnel.deliver() or moved
        moved = tunnel.fetch() or moved
        if tunnel.to_channel and not tunnel.finished:
            moved = self._call(tunnel.write) or moved
        if tunnel.finished and self._in_flight is None:
            moved = self._call(tunnel.close) or moved
        return moved

    def _call(self, operation: Callable[[], int]) -> bool:
        """Make one libssh2 call; one that leaves a packet half sent is kept as the one
        to repeat.  True if it moved anything."""
        result = operation()
        half_sent = result == _AGAIN and bool(
            self.session.block_directions() & LIBSSH2_SESSION_BLOCK_OUTBOUND
        )
        if half_sent and self._in_flight is None:
            self._in_flight_since = time.monotonic()
        self._in_flight = operation if half_sent else None
        return result == _MOVED

    def _serve_requests(self) -> bool:
        while True:
            try:
                self._pending.append(self._requests.get_nowait())
            except queue.Empty:
                break
        # libssh2 opens one channel at a time (its open state is the session's): the
        # first request is asked again until it is answered, the others wait their turn.
        head = self._pending[:1]
        self._pending = head + [r for r in self._pending[1:] if not r.abandoned]
        if not self._pending:
            return False
        return self._call(functools.partial(self._open_channel, self._pending[0]))

    def _open_channel(self, request: _Request) -> int:
        try:
            channel = self.session.direct_tcpip_ex(request.address, request.port, "127.0.0.1", 0)
        except Exception as exc:  # noqa: BLE001 - libssh2: "Channel open failure"
            self._answer(request, error=self._refused(request, exc))
            return _MOVED
        if channel == LIBSSH2_ERROR_EAGAIN:
            return _AGAIN
        ours, theirs = socket.socketpair()
        ours.setblocking(False)
        if request.abandoned:  # its host gave up waiting (and freed its slot)
            self._pending.remove(request)
            theirs.close()
            unused = _Tunnel(channel, ours, lambda: None)
            unused.finish()
            self._tunnels.append(unused)
            return _MOVED
        self._tunnels.append(_Tunnel(channel, ours, request.done))
        self._answer(request, sock=theirs)
        return _MOVED

    def _answer(
        self,
        request: _Request,
        sock: socket.socket | None = None,
        error: TransportError | None = None,
    ) -> None:
        self._pending.remove(request)
        request.sock, request.error = sock, error
        request.ready.set()

    def _refused(self, request: _Request, exc: BaseException) -> UnreachableError:
        said = str(exc)
        with contextlib.suppress(Exception):
            said = said or str(self.session.last_error() or "")
        where = f"{request.address}:{request.port}"
        return jump.channel_refused(self.name, where, said or "the channel open failed")

    def _sleep(self) -> None:
        waiter = select.poll()
        directions = self.session.block_directions()
        waiter.register(self._wake_here, select.POLLIN)
        if self._in_flight is not None:  # nothing else may run: wait for room to send
            waiter.register(self.sock, select.POLLOUT)
        elif self._tunnels or self._pending:
            events = select.POLLIN
            if directions & LIBSSH2_SESSION_BLOCK_OUTBOUND:
                events |= select.POLLOUT
            waiter.register(self.sock, events)
            for tunnel in self._tunnels:
                if tunnel.events():
                    waiter.register(tunnel.local, tunnel.events())
        else:  # no channel reads the session: only its end is news
            waiter.register(self.sock, select.POLLRDHUP)
        patience = _PATIENCE if self._pending or self._tunnels else 1.0
        for fd, event in waiter.poll(int(patience * 1000)):
            if fd == self._wake_here.fileno():
                with contextlib.suppress(OSError):
                    self._wake_here.recv(4096)
            elif not (self._tunnels or self._pending) and event & _GONE:
                raise self._closed_by_bastion()

    def _closed_by_bastion(self) -> TransportError:
        return TransportError(
            f"bastion {self.name}: the connection was closed", cause=causes.TRANSPORT_ERROR
        )

    def _end(self) -> None:
        failure = self._failure or jump.channel_refused(self.name, "its hosts", "closed")
        with self._lock:  # from here on open() raises at once: nobody would answer
            self._ended = failure
        for request in list(self._pending):
            self._answer(request, error=failure)
        for tunnel in self._tunnels:
            tunnel.finish()
            if self._failure is None and self._in_flight is None:
                tunnel.close()  # a last try, as the session ends too
        self._tunnels = []
        while True:  # requests that came in before the end was set
            try:
                request = self._requests.get_nowait()
            except queue.Empty:
                break
            request.error = failure
            request.ready.set()
        with contextlib.suppress(OSError):
            self._wake_here.close()
            self._wake_there.close()
