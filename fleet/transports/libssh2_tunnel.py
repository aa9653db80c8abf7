"""Channels through a libssh2 jump host, each seen by the host's own login as a socket.

A libssh2 session is not safe to use from two threads, and the login behind
the jump host needs a real file descriptor to wait on.  So one thread per
jump host owns its session (non-blocking) and copies bytes between each
``direct-tcpip`` channel and one end of a socketpair; the login behind it
gets the other end.  Direct hosts never go through here.
"""

from __future__ import annotations

import contextlib
import queue
import select
import socket
import threading
from collections.abc import Callable
from typing import Any

from ssh2.error_codes import LIBSSH2_ERROR_EAGAIN
from ssh2.session import LIBSSH2_SESSION_BLOCK_INBOUND, LIBSSH2_SESSION_BLOCK_OUTBOUND, Session

from fleet import causes
from fleet.errors import TransportError, UnreachableError
from fleet.transports import jump

_CHUNK = 65536
# libssh2 may have read a packet for one channel while serving another, leaving the
# socket quiet: the thread never sleeps longer than this.
_PATIENCE = 0.05


class _Request:
    """A channel asked for by a login thread, opened by the pump's thread."""

    def __init__(self, address: str, port: int, done: Callable[[], None]) -> None:
        self.address, self.port, self.done = address, port, done
        self.ready = threading.Event()
        self.sock: socket.socket | None = None
        self.error: TransportError | None = None
        self.abandoned = False


class _Tunnel:
    """One channel and the pump's end of its socketpair, with what waits to cross."""

    def __init__(self, channel: Any, local: socket.socket, done: Callable[[], None]) -> None:
        self.channel, self.local, self.done = channel, local, done
        self.to_local = b""
        self.to_channel = b""
        self.remote_eof = False
        self.finished = False

    def pump(self) -> bool:
        """Move what can move without waiting; True if anything did."""
        moved = self._from_channel()
        moved = self._to_channel() or moved
        return moved

    def _from_channel(self) -> bool:
        moved = False
        if not self.to_local and not self.remote_eof:
            size, data = self.channel.read(_CHUNK)
            if size > 0:
                self.to_local, moved = data, True
            elif size == 0 or (size == LIBSSH2_ERROR_EAGAIN and self.channel.eof()):
                if self.channel.eof():
                    self.remote_eof = True
                    with contextlib.suppress(OSError):
                        self.local.shutdown(socket.SHUT_WR)
            elif size < 0 and size != LIBSSH2_ERROR_EAGAIN:
                self.finish()
                return True
        if self.to_local:
            try:
                sent = self.local.send(self.to_local)
            except BlockingIOError:
                sent = 0
            except OSError:
                self.finish()
                return True
            self.to_local, moved = self.to_local[sent:], moved or sent > 0
        return moved

    def _to_channel(self) -> bool:
        moved = False
        if not self.to_channel:
            try:
                data = self.local.recv(_CHUNK)
            except BlockingIOError:
                data = None
            except OSError:
                data = b""
            if data == b"":  # the login behind closed its socket: the channel goes too
                self.finish()
                return True
            if data:
                self.to_channel, moved = data, True
        if self.to_channel:
            rc, written = self.channel.write(self.to_channel)
            if written > 0:
                self.to_channel, moved = self.to_channel[written:], True
            elif rc < 0 and rc != LIBSSH2_ERROR_EAGAIN:
                self.finish()
                return True
        return moved

    def events(self) -> int:
        wanted = 0 if self.to_channel else select.POLLIN
        return wanted | (select.POLLOUT if self.to_local else 0)

    def finish(self) -> None:
        if self.finished:
            return
        self.finished = True
        with contextlib.suppress(Exception):
            self.channel.close()  # non-blocking: libssh2 sends the CLOSE when it can
        with contextlib.suppress(OSError):
            self.local.close()
        self.done()


class TunnelPump:
    """The thread that owns a jump host's libssh2 session once it tunnels."""

    def __init__(self, session: Session, sock: socket.socket, name: str) -> None:
        self.session, self.sock, self.name = session, sock, name
        self._requests: queue.SimpleQueue[_Request] = queue.SimpleQueue()
        self._pending: list[_Request] = []
        self._tunnels: list[_Tunnel] = []
        self._wake_here, self._wake_there = socket.socketpair()
        self._wake_here.setblocking(False)
        self._stop = threading.Event()
        self._failure: TransportError | None = None
        session.set_blocking(False)
        self._thread = threading.Thread(target=self._run, name=f"bastion {name}", daemon=True)
        self._thread.start()

    def open(self, address: str, port: int, timeout: float, done: Callable[[], None]) -> Any:
        """A socket to ``address:port`` through the jump host, within ``timeout``."""
        request = _Request(address, port, done)
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
                moved = self._serve_requests()
                for tunnel in self._tunnels:
                    moved = tunnel.pump() or moved
                self._tunnels = [t for t in self._tunnels if not t.finished]
                idle = 0 if moved else idle + 1
                if idle >= 2:  # twice nothing: libssh2 holds nothing back, sleep
                    self._sleep()
        except Exception as exc:  # noqa: BLE001 - the connection is gone: every channel ends
            self._failure = TransportError(
                f"bastion {self.name}: the connection failed: {type(exc).__name__}",
                cause=causes.TRANSPORT_ERROR,
            )
        finally:
            self._end()

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
        request = self._pending[0]
        try:
            channel = self.session.direct_tcpip_ex(request.address, request.port, "127.0.0.1", 0)
        except Exception as exc:  # noqa: BLE001 - libssh2: "Channel open failure"
            self._answer(request, error=self._refused(request, exc))
            return True
        if channel == LIBSSH2_ERROR_EAGAIN:
            return False
        if request.abandoned:  # its host gave up waiting (and freed its slot)
            self._pending.remove(request)
            with contextlib.suppress(Exception):
                channel.close()
            return True
        ours, theirs = socket.socketpair()
        ours.setblocking(False)
        self._tunnels.append(_Tunnel(channel, ours, request.done))
        self._answer(request, sock=theirs)
        return True

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
        events = select.POLLIN
        if directions & LIBSSH2_SESSION_BLOCK_OUTBOUND:
            events |= select.POLLOUT
        if not directions & LIBSSH2_SESSION_BLOCK_INBOUND:
            events |= select.POLLIN
        waiter.register(self.sock, events)
        waiter.register(self._wake_here, select.POLLIN)
        for tunnel in self._tunnels:
            if tunnel.events():
                waiter.register(tunnel.local, tunnel.events())
        patience = _PATIENCE if self._pending or self._tunnels else 1.0
        for fd, _ in waiter.poll(int(patience * 1000)):
            if fd == self._wake_here.fileno():
                with contextlib.suppress(OSError):
                    self._wake_here.recv(4096)

    def _end(self) -> None:
        failure = self._failure or jump.channel_refused(self.name, "its hosts", "closed")
        for request in list(self._pending):
            self._answer(request, error=failure)
        for tunnel in self._tunnels:
            tunnel.finish()
        self._tunnels = []
        while True:  # requests that came in after the end
            try:
                request = self._requests.get_nowait()
            except queue.Empty:
                break
            request.error = failure
            request.ready.set()
        with contextlib.suppress(OSError):
            self._wake_here.close()
            self._wake_there.close()
