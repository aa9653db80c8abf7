"""How a PowerShell script travels to powershell.exe over WinRS, and back (for the lab's server).

The script goes in ``-EncodedCommand`` (base64 of UTF-16LE) when the command
line fits; a script too long for a Windows command line travels on stdin
behind a small bootstrap.  Pure functions: no WinRM library is imported.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
from collections.abc import Sequence

POWERSHELL = "powershell.exe"
POWERSHELL_ARGS = ("-NoProfile", "-NonInteractive")
# CreateProcess takes at most 32,767 characters; keep a margin for WinRS's quoting.
MAX_COMMAND_LINE = 32_000

# Reads the real script from stdin as base64 of UTF-8 (so the console code
# page cannot touch it) and runs it.  ``$input`` is how Ansible's bootstrap
# wrapper reads stdin too; ``-Command -`` would run stdin line by line and
# break multi-line statements.  PowerShell 2.0 compatible.
STDIN_BOOTSTRAP = (
    "$fleet_b64 = ($input | Out-String)\n"
    "$fleet_script = [Text.Encoding]::UTF8.GetString([Convert]::FromBase64String($fleet_b64))\n"
    "& ([ScriptBlock]::Create($fleet_script))\n"
    "exit $LASTEXITCODE\n"
)


def _encoded(script: str) -> str:
    return base64.b64encode(script.encode("utf-16-le")).decode("ascii")


def encode_invocation(script: str) -> tuple[str, list[str], bytes | None]:
    """How to start ``script``: ``(command, arguments, stdin or None)``.

    The script goes in ``-EncodedCommand`` (base64 of UTF-16LE) when the
    command line fits; otherwise a small bootstrap goes there and the script
    follows on stdin as base64 of UTF-8.
    """
    args = [*POWERSHELL_ARGS, "-EncodedCommand", _encoded(script)]
    if len(" ".join([POWERSHELL, *args])) <= MAX_COMMAND_LINE:
        return POWERSHELL, args, None
    bootstrap = [*POWERSHELL_ARGS, "-EncodedCommand", _encoded(STDIN_BOOTSTRAP)]
    return POWERSHELL, bootstrap, base64.b64encode(script.encode("utf-8"))


def _is_powershell(command: str) -> bool:
    name = command.replace("\\", "/").rsplit("/", 1)[-1].lower()
    return name in ("powershell", "powershell.exe", "pwsh", "pwsh.exe")


def _parameter_value(args: Sequence[str], full_name: str, shortest: int) -> str | None:
    """The value after a PowerShell parameter given by any unambiguous prefix (``-enc``)."""
    for i, arg in enumerate(args[:-1]):
        if not arg.startswith(("-", "/")):
            continue
        name = arg[1:].lower()
        if len(name) >= shortest and full_name.startswith(name):
            return args[i + 1]
    return None


def reads_stdin(command: str, args: Sequence[str]) -> bool:
    """Whether this invocation takes its script from stdin (the process waits for it to close)."""
    if not _is_powershell(command):
        return False
    words = [word for arg in args for word in arg.split()]
    encoded = _parameter_value(words, "encodedcommand", 1)
    if encoded is not None:
        with contextlib.suppress(binascii.Error, UnicodeDecodeError):
            return base64.b64decode(encoded, validate=True).decode("utf-16-le") == STDIN_BOOTSTRAP
        return False
    return _parameter_value(words, "command", 1) == "-"


def decode_invocation(command: str, args: Sequence[str], stdin: bytes | None) -> str:
    """The PowerShell script that ``command args`` (with ``stdin``) would run.

    The inverse of ``encode_invocation``; also reads ``-Command -`` (script
    on stdin as text) and ``-Command <words>``.  ``args`` may hold several
    arguments per item (WinRS sends them space-joined).  Raises ValueError
    for anything else.
    """
    if not _is_powershell(command):
        raise ValueError(f"not a PowerShell invocation: {command!r}")
    words = [word for arg in args for word in arg.split()]
    encoded = _parameter_value(words, "encodedcommand", 1)
    if encoded is not None:
        try:
            script = base64.b64decode(encoded, validate=True).decode("utf-16-le")
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise ValueError(f"-EncodedCommand is not base64 of UTF-16LE: {exc}") from exc
        if script != STDIN_BOOTSTRAP:
            return script
        try:
            return base64.b64decode(b"".join((stdin or b"").split())).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise ValueError(f"stdin is not base64 of UTF-8: {exc}") from exc
    inline = _parameter_value(words, "command", 1)
    if inline == "-":
        return (stdin or b"").decode("utf-8", errors="replace")
    if inline is not None:
        start = words.index(inline)
        return " ".join(words[start:])
    raise ValueError("neither -EncodedCommand nor -Command in the arguments")
