"""Small helpers several test modules share."""

from __future__ import annotations

import pytest

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
