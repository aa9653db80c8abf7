"""The one reading of true/false words for the whole project (inventory, playbook, environment).

Ansible's own rule (``ansible.module_utils.parsing.convert_bool``), so a value
means in fleet what it means to the Ansible run beside it: ``yes/no``,
``true/false``, ``on/off``, ``y/n``, ``t/f``, ``1/0``, in any case.  Anything
else is not a boolean: the caller says where it came from in its error line.
"""

from __future__ import annotations

TRUE_WORDS = frozenset({"y", "yes", "on", "1", "true", "t"})
FALSE_WORDS = frozenset({"n", "no", "off", "0", "false", "f"})
WORDS = "true/false, yes/no, on/off, y/n, 1/0"


def parse_bool(value: object) -> bool | None:
    """``value`` as a boolean, or None when it is not one of the words (or a 0/1 number)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        word = value.strip().lower()
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
    return None


def as_bool(value: object, what: str) -> bool:
    """``value`` as a boolean; ``ValueError`` naming ``what`` and the words when it is not one."""
    parsed = parse_bool(value)
    if parsed is None:
        raise ValueError(f"{what} must be one of {WORDS}, not {value!r}")
    return parsed
