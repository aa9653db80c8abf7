"""Small helpers several test modules share."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# The variables requests reads a proxy from: tests talk to 127.0.0.1 directly.
PROXY_VARIABLES = (
    "http_proxy",
    "https_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "all_proxy",
)


def clear_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unset every proxy variable for the test, so requests goes straight to the server."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def run_module(
    module: str, *args: str, cwd: Path = ROOT, env: dict | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """``python -m module args`` as a user runs it from ``cwd``, this checkout first on the path."""
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
    )
