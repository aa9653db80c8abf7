"""The one exception root of fleet, and its branches.

Library errors (paramiko, pywinrm, requests, socket) are translated into
these at the transport edge with ``raise ... from``.  Inside the runner every
exception becomes an ``error`` or ``unreachable`` result: one host's failure
never ends the run.
"""

from __future__ import annotations


class FleetError(Exception):
    """Root of every error fleet raises on purpose."""


class ConfigError(FleetError):
    """Bad options, inventory or playbook: exit code 5.

    ``str()`` is one line naming the file, the line and what is wrong.
    """

    def __init__(self, message: str, *, path: object = None, line: int | None = None) -> None:
        self.path = str(path) if path is not None else None
        self.line = line
        self.detail = message
        where = ""
        if self.path:
            where = f"{self.path}:{line}: " if line else f"{self.path}: "
        super().__init__(f"{where}{message}")


class InventoryError(ConfigError):
    """The inventory (or its group_vars/host_vars) cannot be read."""


class PlaybookError(ConfigError):
    """The playbook cannot be read, or names an unknown check or bad parameter."""


class TransportError(FleetError):
    """A transport could not do what was asked."""


class UnreachableError(TransportError):
    """The host could not be logged into: the checks did not run.

    ``reason`` is a short phrase for the report ("connection refused on port 22");
    ``hint`` says what to check.
    """

    def __init__(self, reason: str, hint: str = "") -> None:
        self.reason = reason
        self.hint = hint
        super().__init__(f"{reason} ({hint})" if hint else reason)


class AuthenticationError(UnreachableError):
    """The host refused our credentials."""


class HostKeyError(UnreachableError):
    """The host's SSH key is unknown or changed, or its TLS certificate is rejected."""


class CommandTimeout(TransportError):
    """A command ran past its hard deadline and was abandoned."""

    def __init__(self, timeout: float, partial_stdout: bytes = b"") -> None:
        self.timeout = timeout
        self.partial_stdout = partial_stdout
        super().__init__(f"command did not finish within {timeout:g}s")


class ParseError(FleetError):
    """A host's output is not what the gathering script promised.

    The check that read it ends as ``error`` with this message; nothing else
    is affected.
    """
