"""Bounded output buffers shared by the transports."""

from __future__ import annotations


class CappedBuffer:
    """Keeps the first ``cap`` bytes written; remembers whether more arrived."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self._parts: list[bytes] = []
        self._size = 0
        self.truncated = False

    def write(self, data: bytes) -> None:
        room = self.cap - self._size
        if room <= 0:
            self.truncated = self.truncated or bool(data)
            return
        if len(data) > room:
            self.truncated = True
            data = data[:room]
        self._parts.append(data)
        self._size += len(data)

    def getvalue(self) -> bytes:
        return b"".join(self._parts)
