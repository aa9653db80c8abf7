"""YAML (and JSON) as Ansible's inventory and vars files use it.

Safe loading only, with Ansible's two tags: ``!unsafe`` (an ``UnsafeText``
string, which no template engine in fleet renders) and ``!vault`` (an opaque
``VaultedValue``, decrypted by fleet.inventory.vault when a password is given).
A wholly vaulted vars file is decrypted before it is read.  A YAML inventory is loaded
with the line of each mapping key kept, so a structural error can name its line.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from fleet.errors import InventoryError
from fleet.inventory.limits import MAX_YAML_DEPTH, MAX_YAML_NODES
from fleet.inventory.vault import (
    VaultedValue,
    VaultSecret,
    as_secrets,
    decrypt,
    is_vaulted,
    reveal,
)

# libyaml is ten times faster on big group_vars; PyYAML built without it still works.
_BaseLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


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


def load_vars_text(text: str, path: Path, secrets: Sequence[VaultSecret] = ()) -> Any:
    """A group_vars/host_vars document: JSON when it parses as JSON, else YAML (as Ansible).

    A wholly vaulted file is decrypted with ``secrets`` and all its strings are
    secrets; inline ``!vault`` values are decrypted when ``secrets`` are given."""
    if is_vaulted(text):
        plain = decrypt(text, secrets, path).decode("utf-8", "replace")
        return as_secrets(reveal(load_vars_text(plain, path), secrets, path))
    data = _load_vars_plain(text, path)
    return reveal(data, secrets, path) if secrets else data


def _load_vars_plain(text: str, path: Path) -> Any:
    stripped = text.lstrip()
    if stripped.startswith(("{", "[")):
        try:
            return json.loads(text)
        except ValueError:
            pass  # YAML flow style also starts with { or [
    return _load(text, path, _VarsLoader)


def load_bounded(text: str, loader_class: Any) -> Any:
    """``yaml.load`` with nesting and alias expansion bounded (``check_shape``)."""
    loader = loader_class(text)
    try:
        check_shape(loader)
    finally:
        loader.dispose()
    loader = loader_class(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


class ShapeError(ValueError):
    """A YAML document past one of the limits of fleet.inventory.limits, at ``line``."""

    def __init__(self, message: str, event: Any) -> None:
        super().__init__(message)
        self.line = event.start_mark.line + 1 if event.start_mark else None


def check_shape(loader: Any) -> None:
    """ShapeError when the document nests deeper than MAX_YAML_DEPTH, or holds more
    than MAX_YAML_NODES values once every alias is expanded (a "billion laughs"), or
    an alias inside its own anchor.  Reads the event stream, which (unlike composing,
    where libyaml recurses in C) costs no stack per level."""
    open_sizes: list[int] = [0]  # values in each collection still open
    open_anchors: list[str | None] = []
    sizes: dict[str, int] = {}  # anchor -> its value's expanded size
    while (event := loader.get_event()) is not None:
        size = 0
        if isinstance(event, yaml.CollectionStartEvent):
            open_anchors.append(event.anchor)
            open_sizes.append(1)
            if len(open_anchors) > MAX_YAML_DEPTH:
                raise ShapeError(
                    f"lists and mappings nested more than {MAX_YAML_DEPTH} deep "
                    "(fleet.inventory.limits.MAX_YAML_DEPTH)",
                    event,
                )
            continue
        if isinstance(event, yaml.CollectionEndEvent):
            anchor, size = open_anchors.pop(), open_sizes.pop()
        elif isinstance(event, yaml.ScalarEvent):
            anchor, size = event.anchor, 1
        elif isinstance(event, yaml.AliasEvent):
            anchor = None
            if event.anchor in open_anchors:
                raise ShapeError(f"alias *{event.anchor} is inside its own anchor: a loop", event)
            size = sizes.get(event.anchor or "", 1)  # an unknown alias: the loader says so
        else:
            continue
        if anchor is not None:
            sizes[anchor] = size
        open_sizes[-1] += size
        if open_sizes[-1] > MAX_YAML_NODES or size > MAX_YAML_NODES:
            raise ShapeError(
                f"more than {MAX_YAML_NODES:,} values once its aliases are expanded "
                "(fleet.inventory.limits.MAX_YAML_NODES): an alias bomb?",
                event,
            )


def _load(text: str, path: Path, loader: Any) -> Any:
    try:
        return load_bounded(text, loader)
    except ShapeError as exc:
        raise InventoryError(f"refused YAML: {exc}", path=path, line=exc.line) from exc
    except ValueError as exc:  # e.g. a date like 2024-13-45, which the loader rejects
        raise InventoryError(f"invalid YAML: {exc}", path=path) from exc
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
