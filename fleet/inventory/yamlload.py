"""YAML (and JSON) as Ansible's inventory and vars files use it.

Safe loading only, with Ansible's two tags: ``!unsafe`` (an ``UnsafeText``
string, which no template engine in fleet renders) and ``!vault`` (kept as an
opaque ``VaultedValue``; fleet does not decrypt).  A YAML inventory is loaded
with the line of each mapping key kept, so a structural error can name its line.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from fleet.errors import InventoryError

# libyaml is ten times faster on big group_vars; PyYAML built without it still works.
_BaseLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(frozen=True)
class VaultedValue:
    """A ``!vault`` value: ciphertext fleet cannot read (never shown in a repr)."""

    ciphertext: str = field(repr=False)

    def __str__(self) -> str:
        return "<vault-encrypted value>"


class LineDict(dict):
    """A mapping from a YAML inventory that remembers the line of each key."""

    lines: dict[Any, int]


class _VarsLoader(_BaseLoader):
    """Plain safe loading plus Ansible's tags."""


class _InventoryLoader(_VarsLoader):
    """Safe loading that records where each mapping key was written."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> LineDict:
        mapping = LineDict(super().construct_mapping(node, deep=deep))
        mapping.lines = {
            self.construct_object(key, deep=deep): key.start_mark.line + 1
            for key, _value in node.value
            if isinstance(key, yaml.ScalarNode)
        }
        return mapping


def _construct_mapping_as_line_dict(loader: _InventoryLoader, node: yaml.MappingNode) -> Any:
    loader.flatten_mapping(node)
    return loader.construct_mapping(node, deep=True)


class UnsafeText(str):
    """A string tagged ``!unsafe``: taken literally, never rendered as a template."""

    __slots__ = ()


def _construct_unsafe(loader: Any, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        return UnsafeText(loader.construct_scalar(node))
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    return loader.construct_mapping(node, deep=True)


def _construct_vault(loader: Any, node: yaml.Node) -> VaultedValue:
    return VaultedValue(str(loader.construct_scalar(node)))


for _loader in (_VarsLoader, _InventoryLoader):
    _loader.add_constructor("!unsafe", _construct_unsafe)
    _loader.add_constructor("!vault", _construct_vault)
_InventoryLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping_as_line_dict
)


def load_inventory_yaml(text: str, path: Path) -> Any:
    """A YAML inventory document, mappings as ``LineDict``."""
    return _load(text, path, _InventoryLoader)


def load_vars_text(text: str, path: Path) -> Any:
    """A group_vars/host_vars document: JSON when it parses as JSON, else YAML (as Ansible)."""
    stripped = text.lstrip()
    if stripped.startswith("$ANSIBLE_VAULT"):
        raise InventoryError(
            "the file is encrypted with ansible-vault, which fleet cannot decrypt: "
            "keep secrets in an unencrypted file readable only by the audit account",
            path=path,
            line=1,
        )
    if stripped.startswith(("{", "[")):
        try:
            return json.loads(text)
        except ValueError:
            pass  # YAML flow style also starts with { or [
    return _load(text, path, _VarsLoader)


def _load(text: str, path: Path, loader: Any) -> Any:
    try:
        return yaml.load(text, Loader=loader)  # noqa: S506 - loader derives from SafeLoader
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        problem = exc.problem or exc.context or "unreadable YAML"
        raise InventoryError(
            f"invalid YAML: {problem} (check the indentation and quote values holding ':' or '#')",
            path=path,
            line=line,
        ) from exc
    except yaml.YAMLError as exc:
        raise InventoryError(f"invalid YAML: {exc}", path=path) from exc


def plain(value: Any) -> Any:
    """A value from a YAML inventory with its ``LineDict``s turned back into dicts."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value
