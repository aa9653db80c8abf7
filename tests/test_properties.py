"""Properties of the readers: any input gives a result or a clean ConfigError.

Whatever text or bytes an inventory (INI or YAML), a vars file, a playbook,
a ``--limit`` pattern or a ``--mail-to`` value holds, fleet either reads it
or says in one ConfigError what is wrong: never another exception, and (with
the limits of fleet.inventory.limits) never a hang.  Examples are few and
each has a deadline, so the whole file runs in seconds.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fleet.app.request import mail_addresses
from fleet.errors import ConfigError
from fleet.inventory import Inventory, load_inventory
from fleet.inventory.builder import InventoryBuilder
from fleet.inventory.ini import read_ini
from fleet.inventory.yamlsrc import read_yaml
from fleet.playbook import load_playbook

QUICK = settings(
    max_examples=200,
    deadline=timedelta(seconds=5),
    suppress_health_check=[HealthCheck.too_slow],
)
WHERE = Path("hosts")

# Text made of what inventories are made of, so examples reach past the first line.
INI_PIECES = st.sampled_from(
    [
        "[mail]", "[mail:vars]", "[mail:children]", "[all:vars]", "[web]", "[a-b]", "[x:y]",
        "mx01", "mx[01:03]", "mx[a:c]", "h[0:2][0:2]", "mx:2222", "[::1]:22", "h[",
        "ansible_host=10.0.0.1", "ansible_port=22", "a='b c'", 'a="x', "x=[1, 2]", "x={'a': 1}",
        "web", "mail", "#", ";", "=", ":", "\\", "'", "---", "all:", "\t", " ", "\n",
    ]
)  # fmt: skip
YAML_PIECES = st.sampled_from(
    [
        "all:", "  hosts:", "  children:", "  vars:", "    mx01:", "    mx[01:02]:", "mail:",
        "      ansible_port: 22", "    a: &a [1, 2]", "    b: *a", "    c: {<<: *a}", "- x",
        "[", "]", "{", "}", "&x", "*x", "!unsafe '{{ x }}'", "!vault |", "plugin: x",
        "---", "...", ":", "'", '"', "#", " ", "  ", "\n", "\t", "~", "null",
        "2024-13-45", "    d: 2024-01-01",
    ]
)  # fmt: skip
PLAYBOOK_PIECES = st.sampled_from(
    [
        "- hosts: all", "  checks:", "    - binding: {}", "    - smtp: {port: 25}", "    - ping",
        "  vars:", "    a: '{{ b }}'", "  name: x", "- x", "hosts:", "&a", "*a", "[", "{",
        ":", "'", "\n", "  ", "!!binary x", "!!python/object:os.system", "2024-02-30",
    ]
)  # fmt: skip


def _lines(pieces: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    line = st.lists(st.one_of(pieces, st.text(max_size=8)), max_size=4).map(" ".join)
    return st.lists(line, max_size=20).map("\n".join)


# Plain values as a YAML inventory may hold them, nested a little.
VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.dates() | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=12,
)


def _use(inventory: Inventory) -> None:
    """What the CLI does with an inventory: list it as JSON, merge every host's variables."""
    json.dumps(inventory.to_ansible_list())
    for name in inventory.hosts:
        inventory.host_vars(name)


def _read(reader: Any, text: str) -> None:
    builder = InventoryBuilder()
    with contextlib.suppress(ConfigError):
        reader(text, WHERE, builder)
        _use(builder.build(WHERE))


@QUICK
@given(st.text())
def test_any_text_is_an_ini_inventory_or_a_config_error(text: str) -> None:
    _read(read_ini, text)


@QUICK
@given(_lines(INI_PIECES))
def test_inventory_like_text_is_an_ini_inventory_or_a_config_error(text: str) -> None:
    _read(read_ini, text)


@QUICK
@given(st.text())
def test_any_text_is_a_yaml_inventory_or_a_config_error(text: str) -> None:
    _read(read_yaml, text)


@QUICK
@given(_lines(YAML_PIECES))
def test_yaml_like_text_is_a_yaml_inventory_or_a_config_error(text: str) -> None:
    _read(read_yaml, text)


@QUICK
@given(VALUES)
def test_any_yaml_document_is_a_yaml_inventory_or_a_config_error(value: Any) -> None:
    _read(read_yaml, yaml.safe_dump(value))


@QUICK
@given(st.dictionaries(st.text(max_size=8), VALUES, max_size=4))
def test_any_group_shape_is_a_yaml_inventory_or_a_config_error(groups: dict[str, Any]) -> None:
    _read(read_yaml, yaml.safe_dump({"all": {"children": groups}}))


@QUICK
@given(st.binary(max_size=512), st.sampled_from(["hosts", "hosts.yml", "play.yml"]))
def test_any_bytes_in_a_file_are_read_or_refused_cleanly(data: bytes, name: str) -> None:
    with tempfile.TemporaryDirectory(prefix="fleet-prop-") as tmp:
        path = Path(tmp) / name
        path.write_bytes(data)
        with contextlib.suppress(ConfigError):
            if name == "play.yml":
                load_playbook(path)
            else:
                _use(load_inventory(path))


@QUICK
@given(st.one_of(st.text(), _lines(PLAYBOOK_PIECES)))
def test_any_text_is_a_playbook_or_a_playbook_error(text: str) -> None:
    with tempfile.TemporaryDirectory(prefix="fleet-prop-") as tmp:
        path = Path(tmp) / "play.yml"
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        with contextlib.suppress(ConfigError):
            load_playbook(path)


def _sample_inventory() -> Inventory:
    builder = InventoryBuilder()
    read_ini("[mail]\nmx[01:05]\n[web]\nweb1\n[all_of:children]\nmail\nweb\n", WHERE, builder)
    return builder.build(WHERE)


SAMPLE = _sample_inventory()


@QUICK
@given(
    st.one_of(
        st.text(max_size=30),
        _lines(st.sampled_from(["mx*", "~", "[", "]", "!", "&", ":", ",", "mail", "0", "(", "+"])),
    )
)
def test_any_limit_selects_hosts_or_is_a_config_error(pattern: str) -> None:
    try:
        chosen = SAMPLE.select(pattern)
    except ConfigError:
        return
    assert set(chosen) <= set(SAMPLE.hosts)


@QUICK
@given(st.text(max_size=80))
def test_any_mail_to_is_addresses_or_a_config_error(text: str) -> None:
    try:
        addresses = mail_addresses(text)
    except ConfigError:
        return
    assert addresses and all("@" in a for a in addresses)
