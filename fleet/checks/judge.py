"""The parameter rules under their former name, for ``fleet.checks.reach``.

Each check's judge now lives in its folder (``fleet/checks/<check>/judge.py``),
the rules for parameters in ``fleet.checks.params``.
"""

from __future__ import annotations

from fleet.checks.params import as_bool, as_int, as_number, as_targets, known_params, valid_target

__all__ = ["as_bool", "as_int", "as_number", "as_targets", "known_params", "valid_target"]
