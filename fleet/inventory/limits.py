"""The bounds on what an inventory or playbook may ask of the runner.

A hostile or mistyped file (a YAML alias bomb, ``h[0:999999999]``, a group
chain thousands deep, a binary or endless file) is refused with one line
naming the file and the limit, in bounded time and memory, instead of
hanging the runner or exhausting its memory.  Each limit is far above what
a real fleet's files need.
"""

from __future__ import annotations

from pathlib import Path

from fleet.errors import ConfigError

#: Bytes in one inventory, group_vars/host_vars or playbook file.
MAX_FILE_BYTES = 16 * 1024 * 1024
#: Host names one entry (``mx[01:20]``, several ranges multiplied) expands to.
MAX_HOSTS_PER_RANGE = 65_536
#: Hosts in the whole inventory.
MAX_HOSTS = 200_000
#: Values in one YAML document with every alias expanded (a "billion laughs" has 10**9).
MAX_YAML_NODES = 1_000_000
#: Levels of nested lists and mappings in one YAML document.
MAX_YAML_DEPTH = 100
#: Levels of groups inside groups (``[a:children]`` chains), counted from ``all``.
MAX_GROUP_DEPTH = 100


def read_text_bounded(path: Path, error: type[ConfigError], what: str) -> str:
    """The UTF-8 text of ``path``, or ``error`` (one line) when it is too big,
    not text, or unreadable.  Reads at most MAX_FILE_BYTES + 1 bytes, so a
    device or an endless file costs no more than a big one."""
    try:
        with path.open("rb") as file:
            data = file.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise error(f"cannot read the {what}: {exc.strerror or exc}", path=path) from exc
    if len(data) > MAX_FILE_BYTES:
        raise error(
            f"the {what} is larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB "
            "(fleet.inventory.limits.MAX_FILE_BYTES): is it the right file?",
            path=path,
        )
    if b"\0" in data:
        raise error(f"the {what} is not a text file (it holds NUL bytes)", path=path)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(
            f"the {what} is not UTF-8 text (byte {exc.start} cannot be read)", path=path
        ) from exc
