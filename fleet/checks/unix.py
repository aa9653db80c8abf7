"""The Unix shell: every step of a host's checks in one POSIX sh script (see batch.py).

Each check's Unix steps and parser live in its own folder
(``fleet/checks/<check>/unix.py``); this module only composes.
"""

from __future__ import annotations

from collections.abc import Sequence

from fleet.checks.base import Step
from fleet.checks.batch import compose_sh


def compose(steps: Sequence[Step], nonce: str, step_timeout: float) -> str:
    """The one sh script that runs every step and prints framed sections."""
    return compose_sh(steps, nonce, step_timeout)
