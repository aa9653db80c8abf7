"""The Windows shell: every step of a host's checks in ONE PowerShell script.

The script carries the step scripts that live beside their checks
(``fleet/checks/<check>/*.ps1``, named ``"<check>/<file>"``) as text, runs
every step side by side in a runspace pool (one stuck WMI call cannot hide
the others' results; ``prelude.ps1``), and prints each step's JSON as base64
of UTF-8 inside the nonce-framed sections of ``fleet.checks.batch``.
Parameters reach the scripts as DATA: each value is base64 in a single-quoted
literal, decoded on the host into a hashtable.  It runs on Windows PowerShell
2.0 (Server 2008 R2) and 5.1.  Each check's parser is in its own folder.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping, Sequence
from importlib import resources
from importlib.abc import Traversable
from types import MappingProxyType
from typing import Any

from fleet.checks.base import Step

_NONCE = re.compile(r"[0-9A-Za-z]{8,64}")
_PARAM_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_HERE_STRING_END = re.compile(r"^'@", re.MULTILINE)


def minified(name: str, text: str) -> str:
    """A step script without comments and indentation.

    Minifying keeps the composed script well under the ~32k characters of a
    ``-EncodedCommand`` line; the scripts are written so that no statement
    spans a line whose indentation matters (no here-strings inside).
    """
    lines = (line.strip() for line in text.splitlines())
    body = "\n".join(line for line in lines if line and not line.startswith("#"))
    if _HERE_STRING_END.search(body):
        raise ValueError(f"{name} has a line starting with '@, which would end its here-string")
    return body


def _read(file: Traversable, name: str) -> str:
    return minified(name, file.read_text(encoding="utf-8"))


def _step_scripts() -> Mapping[str, str]:
    """Every ``.ps1`` beside a check, minified, by ``"<check>/<file>"``."""
    found = {}
    for folder in resources.files("fleet.checks").iterdir():
        if folder.is_dir():
            for file in folder.iterdir():
                if file.name.endswith(".ps1"):
                    name = f"{folder.name}/{file.name}"
                    found[name] = _read(file, name)
    return MappingProxyType(found)


# Read once, with this module: they are part of the package and never change.
PRELUDE = _read(resources.files("fleet.checks").joinpath("prelude.ps1"), "prelude.ps1")
SCRIPTS = _step_scripts()


def script_text(name: str) -> str:
    """A step script (``"ping/ping.ps1"``) or ``"prelude.ps1"``, minified."""
    if name == "prelude.ps1":
        return PRELUDE
    try:
        return SCRIPTS[name]
    except KeyError:
        raise ValueError(f"unknown Windows step script {name!r}") from None


def target_step(key: str, script: str, target: str, timeout: float, **params: Any) -> Step:
    """A step that probes ``target``: its script gets ``target``, ``timeout_ms`` and ``params``."""
    timeout_ms = max(1, round(float(timeout) * 1000))
    return Step(
        key=key,
        script=script,
        target=target,
        params={"target": target, "timeout_ms": timeout_ms, **params},
    )


def _param_value(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, (str, int, float)):
        return str(value)
    raise ValueError(f"a Windows step parameter must be a string or a number, not {value!r}")


def _params_literal(params: Mapping[str, Any]) -> str:
    """``@{name = (fleetArg 'base64')...}``: values are base64 data, never PowerShell code."""
    items = []
    for name in sorted(params):
        if not _PARAM_NAME.fullmatch(name):
            raise ValueError(f"bad Windows step parameter name {name!r}")
        b64 = base64.b64encode(_param_value(params[name]).encode("utf-8")).decode("ascii")
        items.append(f"{name} = (fleetArg '{b64}')")
    return "@{" + "; ".join(items) + "}"


def compose(steps: Sequence[Step], nonce: str, step_timeout: float) -> str:
    """The one PowerShell script that runs ``steps`` and prints their framed sections."""
    if not _NONCE.fullmatch(nonce):
        raise ValueError("the nonce must be 8-64 letters or digits")
    used = sorted({step.script for step in steps})
    lines = [
        f"# fleet audit {nonce}",
        # Progress records would reach stderr as CLIXML; errors in the frame itself stop it
        # loudly (the sections then come back missing), the steps set their own preference.
        "$ProgressPreference = 'SilentlyContinue'",
        "$ErrorActionPreference = 'Stop'",
        PRELUDE,
        "$fleetCode = @{}",
    ]
    for name in used:
        lines += [f"$fleetCode['{name}'] = @'", script_text(name), "'@"]
    lines.append("$fleetSteps = @(")
    lines += [f", @('{step.script}', {_params_literal(step.params)})" for step in steps]
    lines.append(")")
    ms = max(1000, round(step_timeout * 1000))
    lines.append(f"fleetRun $fleetCode $fleetSteps '{nonce}' {ms}")
    return "\n".join(lines) + "\n"
