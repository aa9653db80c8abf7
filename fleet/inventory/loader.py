"""Finding and reading an inventory: a file, or a directory of files.

A name like ``prod`` means ``inventories/prod`` when that exists.  A
directory is read as Ansible reads one: its entries in sorted order
(sub-directories too), skipping hidden files, ``group_vars``/``host_vars``
and the extensions Ansible skips (``.retry``, ``.orig``, ``.cfg``, ``.bak``,
``.md``, ``~``, ...), all merged into one inventory; a file there that
cannot be read is skipped with a warning, as Ansible does.  ``group_vars/``
and ``host_vars/`` are looked up beside an inventory file, or inside an
inventory directory.

A file is YAML when its extension is ``.yml``, ``.yaml`` or ``.json``, or,
without one, when its first line looks like YAML (``all:``, ``---``, ``{``);
otherwise INI.  Executable files are read as static files: fleet never runs
an inventory script.  Files encrypted with ansible-vault are decrypted first.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

from fleet.errors import InventoryError
from fleet.inventory.builder import DEFAULT_GROUP_NAMES, InventoryBuilder
from fleet.inventory.ini import read_ini
from fleet.inventory.limits import read_text_bounded
from fleet.inventory.model import Inventory
from fleet.inventory.varsfiles import vars_for_names
from fleet.inventory.vault import VaultError, VaultSecret, decrypt, is_vaulted, reveal
from fleet.inventory.yamlsrc import read_yaml

#: Extensions Ansible's INVENTORY_IGNORE_EXTS skips in an inventory directory.
IGNORED_EXTENSIONS = (
    ".pyc", ".pyo", ".swp", ".bak", "~", ".rpm", ".md", ".txt", ".rst",
    ".orig", ".cfg", ".retry",
)  # fmt: skip
_IGNORED_NAMES = ("host_vars", "group_vars", "vars_plugins")
_YAML_EXTENSIONS = (".yml", ".yaml", ".json")
_YAML_FIRST_LINE = re.compile(r"^(?:---|\{|[^\s=\[#;][^\s=]*:(?:\s|$))")


def resolve_inventory_source(name_or_path: str | Path, base: Path = Path("inventories")) -> Path:
    """``prod`` -> ``inventories/prod`` if it exists, else ``prod`` if that exists."""
    given = Path(name_or_path)
    candidates = [base / given] if not given.is_absolute() else []
    candidates.append(given)
    for candidate in candidates:
        if candidate.exists():
            return candidate
    looked = " and ".join(_shown(c) for c in candidates)
    raise InventoryError(f"inventory {str(name_or_path)!r} not found: looked for {looked}")


def _shown(path: Path) -> str:
    # "./prod" says "relative to here" where a bare "prod" could be misread.
    return str(path) if len(path.parts) > 1 or path.is_absolute() else f"./{path}"


def load_inventory(
    source: str | Path,
    *,
    group_names: str = DEFAULT_GROUP_NAMES,
    secrets: Sequence[VaultSecret] = (),
) -> Inventory:
    """Read the inventory ``source`` (a name under inventories/, a file or a directory).

    ``group_names`` is Ansible's force_valid_group_names (never, always, silently,
    ignore); ``secrets`` the vault passwords that decrypt vaulted files and values.
    """
    path = resolve_inventory_source(source)
    builder = InventoryBuilder(group_names)
    if path.is_dir():
        read_count = _read_directory(path, builder, secrets)
        if not read_count:
            builder.warnings.append(f"{path}: no inventory file in this directory")
    else:
        _read_file(path, builder, secrets)
    if secrets:
        _reveal_inline(builder, secrets)
    vars_dir = path if path.is_dir() else path.parent
    return builder.build(
        path,
        group_file_vars=vars_for_names(vars_dir / "group_vars", builder.groups, secrets),
        host_file_vars=vars_for_names(vars_dir / "host_vars", builder.hosts, secrets),
        vars_dir=vars_dir,
    )


def _reveal_inline(builder: InventoryBuilder, secrets: Sequence[VaultSecret]) -> None:
    """The ``!vault`` values written in YAML inventory files, decrypted."""
    for group in builder.groups.values():
        group.vars = reveal(group.vars, secrets)
    for host in builder.hosts.values():
        host.vars = reveal(host.vars, secrets, host.source)


def is_ignored(name: str) -> bool:
    """True for directory entries Ansible does not read as inventory sources."""
    return name.startswith(".") or name in _IGNORED_NAMES or name.endswith(IGNORED_EXTENSIONS)


def _read_directory(
    directory: Path, builder: InventoryBuilder, secrets: Sequence[VaultSecret]
) -> int:
    count = 0
    for name in sorted(os.listdir(directory)):
        if is_ignored(name):
            continue
        path = directory / name
        if path.is_dir():
            count += _read_directory(path, builder, secrets)
        elif path.is_file():
            try:
                _read_file(path, builder, secrets)
            except VaultError:
                raise  # a wrong password is the operator's to fix, not a file to skip
            except InventoryError as exc:
                # As Ansible: one unreadable source in a directory is a warning, not the end.
                builder.warnings.append(f"skipped, cannot be read as an inventory: {exc}")
                continue
            count += 1
    return count


def _read_file(path: Path, builder: InventoryBuilder, secrets: Sequence[VaultSecret]) -> None:
    text = read_text_bounded(path, InventoryError, "inventory file")
    if is_vaulted(text):
        text = decrypt(text, secrets, path).decode("utf-8", "replace")
    if text.startswith("#!") and os.access(path, os.X_OK):
        # Ansible would run it; fleet never executes inventory files.
        raise InventoryError(
            "a dynamic inventory script is not run by fleet: save its output with "
            f"'ansible-inventory -i {path} --list --yaml > hosts.yml' and audit that",
            path=path,
        )
    if is_yaml_source(path, text):
        read_yaml(text, path, builder)
    else:
        read_ini(text, path, builder)


def is_yaml_source(path: Path, text: str) -> bool:
    """Which reader a file is for (Ansible tries YAML, then INI; we decide up front)."""
    suffix = path.suffix.lower()
    if suffix in _YAML_EXTENSIONS:
        return True
    if suffix:
        return False
    for line in text.splitlines():
        stripped = line.strip()
        if stripped and stripped[0] not in "#;":
            return bool(_YAML_FIRST_LINE.match(stripped))
    return False
