"""The one exception root of fleet, and its branches.

Library errors (paramiko, pywinrm, requests, socket) are translated into
these at the transport edge with ``raise ... from``.  Inside the runner every
exception becomes an ``error`` or ``unreachable`` result: one host's failure
never ends the run.
"""

from __future__ import annotations

from fleet import causes


class FleetError(Exception):
    """Root of every error fleet raises on purpose.

    ``cause`` is the slug of ``fleet.causes`` that a result built from this
    error carries: set where the error is raised, never guessed from the text.
    """

    cause: str = causes.TRANSPORT_ERROR


class ConfigError(FleetError):
    """Bad options, inventory or playbook: exit code 5.

    ``str()`` is one line naming the file, the line and what is wrong.
    """

    cause = causes.CONFIG_MISSING

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

    def __init__(self, message: str = "", *, cause: str | None = None) -> None:
        if cause is not None:
            self.cause = cause
        super().__init__(message)


class UnreachableError(TransportError):
    """The host could not be logged into: the checks did not run.

    ``reason`` is a short phrase for the report ("connection refused on port 22");
    ``hint`` says what to check.
    """

    def __init__(self, reason: str, hint: str = "", *, cause: str | None = None) -> None:
        self.reason = reason
        self.hint = hint
        super().__init__(f"{reason} ({hint})" if hint else reason, cause=cause)


class AuthenticationError(UnreachableError):
    """The host refused our credentials."""

    cause = causes.AUTH_REFUSED


class HostKeyError(UnreachableError):
    """The host's SSH key is unknown or changed, or its TLS certificate is rejected.

    The raiser says which (``HOST_KEY_UNKNOWN``, ``HOST_KEY_CHANGED``,
    ``CERTIFICATE_REJECTED``); unknown is the default.
    """

    cause = causes.HOST_KEY_UNKNOWN


class CommandTimeout(TransportError):
    """A command ran past its hard deadline and was abandoned."""

    cause = causes.COMMAND_TIMEOUT

    def __init__(self, timeout: float, partial_stdout: bytes = b"") -> None:
        self.timeout = timeout
        self.partial_stdout = partial_stdout
        super().__init__(f"command did not finish within {timeout:g}s", cause=self.cause)


class ParseError(FleetError):
    """A host's output is not what the gathering script promised.

    The check that read it ends as ``error`` with this message; nothing else
    is affected.  ``TOOL_MISSING`` when the host lacks the command the step needs.
    """

    cause = causes.UNPARSED

    def __init__(self, message: str, *, cause: str | None = None) -> None:
        if cause is not None:
            self.cause = cause
        super().__init__(message)


class MergeError(FleetError):
    """Partial runs that do not make one audit: overlapping or missing shards or hosts,
    mixed inventories or playbooks (``fleet merge``, exit 7).  ``str()`` is one line."""
