"""The inventory reads INI/YAML, group_vars/host_vars and --limit patterns as Ansible does.

The rules tested here are those of Ansible's documentation ("How to build
your inventory", the ini and yaml inventory plugins, "Patterns: targeting
hosts and groups"); tests/test_inventory_ansible.py checks the same fixtures
against the real ansible-inventory.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from fleet.errors import ConfigError, InventoryError
from fleet.inventory import VaultedValue, load_inventory, resolve_inventory_source
from fleet.inventory.hostnames import expand_host_entry
from fleet.inventory.ini import parse_value, split_host_line

DATA = Path(__file__).parent / "data" / "inventory"
REPO = Path(__file__).parent.parent


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def ini(tmp_path: Path, text: str, **extra: str):
    write(tmp_path, {"hosts": text, **extra})
    return load_inventory(tmp_path / "hosts")


def yml(tmp_path: Path, text: str, **extra: str):
    write(tmp_path, {"inventory.yml": text, **extra})
    return load_inventory(tmp_path / "inventory.yml")


# --- host names, ranges, ports ---------------------------------------------------


@pytest.mark.parametrize(
    ("entry", "names", "port"),
    [
        (
            "mx[01:03].example.com",
            ["mx01.example.com", "mx02.example.com", "mx03.example.com"],
            None,
        ),
        ("mx[1:3]", ["mx1", "mx2", "mx3"], None),
        ("mx[01:09:4]", ["mx01", "mx05", "mx09"], None),
        ("db-[a:c]", ["db-a", "db-b", "db-c"], None),
        ("db-[x:B]", ["db-x", "db-y", "db-z", "db-A", "db-B"], None),
        ("r[1:2]-[a:b]", ["r1-a", "r1-b", "r2-a", "r2-b"], None),
        ("[:2]x", ["0x", "1x", "2x"], None),
        ("smtp-in.example.com:2525", ["smtp-in.example.com"], 2525),
        ("mx[01:02]:2222", ["mx01", "mx02"], 2222),
        ("[2001:db8::25]:5986", ["2001:db8::25"], 5986),
        ("2001:db8::25", ["2001:db8::25"], None),
        ("198.18.0.[1:3]", ["198.18.0.1", "198.18.0.2", "198.18.0.3"], None),
    ],
)
def test_host_entry_expands_ranges_and_splits_port(entry, names, port):
    assert expand_host_entry(entry) == (names, port)


@pytest.mark.parametrize(
    ("entry", "complaint"),
    [
        ("mx[01:2]", "same width"),
        ("mx[1:2:3:4]", "begin:end"),
        ("mx[1:]", "no end"),
        ("mx[5:1]", "runs backwards"),
        ("mx[c:a]", "runs backwards"),
        ("mx[1:9:0]", "step"),
        ("mx[a:9]", "numbers"),
        ("mx[01:20", "closing"),
        ("mx01:", "no port"),
    ],
)
def test_bad_host_range_is_refused_with_a_reason(entry, complaint):
    with pytest.raises(ValueError, match=complaint):
        expand_host_entry(entry)


# --- INI --------------------------------------------------------------------------


def test_hosts_before_any_section_are_ungrouped(tmp_path):
    inv = ini(tmp_path, "relay\n[mail]\nmx01\n")
    assert inv.groups["ungrouped"].hosts == ("relay",)
    assert inv.hosts["relay"].groups == ("ungrouped",)
    assert inv.hosts["mx01"].groups == ("mail",)


def test_host_listed_ungrouped_then_in_a_group_is_no_longer_ungrouped(tmp_path):
    inv = ini(tmp_path, "mx01\n[mail]\nmx01\n")
    assert inv.groups["ungrouped"].hosts == ()
    assert inv.hosts["mx01"].groups == ("mail",)


def test_every_top_level_group_is_a_child_of_all(tmp_path):
    inv = ini(tmp_path, "[mail]\nmx01\n[eu:children]\nmail\n[web]\nw1\n")
    assert inv.groups["all"].children == ("ungrouped", "eu", "web")
    assert inv.groups["mail"].parents == ("eu",)


def test_inline_values_are_read_as_python_literals(tmp_path):
    inv = ini(
        tmp_path,
        "[mail]\n"
        "mx01 n=25 f=0.5 yes=True no=False lower=true list='[25, 587]' "
        'words="two words" quoted="\'x\'" octal=007 none=None path=/var/mail\n',
    )
    assert dict(inv.hosts["mx01"].vars) == {
        "n": 25,
        "f": 0.5,
        "yes": True,
        "no": False,
        "lower": "true",  # only Python's True is a boolean in INI
        "list": [25, 587],
        "words": "two words",
        "quoted": "x",
        "octal": "007",
        "none": None,
        "path": "/var/mail",
    }


@pytest.mark.parametrize(
    ("text", "value"),
    [("42", 42), ("-3", -3), ("1_000", 1000), ("(1, 2)", [1, 2]), ("{'a': (1,)}", {"a": [1]}),
     ("1j", "1j"), ("...", "..."), ("b'raw'", "raw"), ("relay.example.com", "relay.example.com"),
     ("a b", "a b"), ("[1, 2", "[1, 2")],
)  # fmt: skip
def test_ini_value_conversion_matches_the_ini_plugin(text, value):
    assert parse_value(text) == value


def test_literals_kept_for_one_reading_give_each_use_its_own_copy():
    kept: dict = {}
    first, second = parse_value("{'ports': [25]}", kept), parse_value("{'ports': [25]}", kept)
    assert first == second == {"ports": [25]} and first["ports"] is not second["ports"]
    assert list(kept) == ["{'ports': [25]}"]


def test_list_values_are_not_shared_between_hosts(tmp_path):
    inv = ini(tmp_path, "[mail]\nmx[1:2] ports='[25]'\n")
    first, second = inv.host_vars("mx1")["ports"], inv.host_vars("mx2")["ports"]
    first.append(587)
    assert second == [25]
    assert inv.host_vars("mx1")["ports"] == [25]


def test_group_vars_section_takes_the_rest_of_the_line_as_value(tmp_path):
    inv = ini(
        tmp_path,
        '[mail]\nmx01\n[mail:vars]\nnote = plain words here\nquoted="a string"\nsize=10\n',
    )
    assert dict(inv.groups["mail"].vars) == {
        "note": "plain words here",
        "quoted": "a string",
        "size": 10,
    }


def test_comments_with_hash_and_semicolon_are_ignored(tmp_path):
    inv = ini(tmp_path, "# top\n; also\n[mail]  # trailing\nmx01 a=1 # the rest\n  ; indented\n")
    assert list(inv.hosts) == ["mx01"]
    assert dict(inv.hosts["mx01"].vars) == {"a": 1}


def test_children_and_vars_may_name_a_group_declared_further_down(tmp_path):
    inv = ini(tmp_path, "[eu:children]\nmail\n[mail:vars]\nx=1\n[mail]\nmx01\n")
    assert inv.groups["eu"].children == ("mail",)
    assert inv.host_vars("mx01")["x"] == 1
    assert inv.group_hosts("eu") == ["mx01"]


def test_port_on_a_host_line_becomes_ansible_port(tmp_path):
    inv = ini(tmp_path, "[mail]\nsmtp-in:2525\n[other]\nsmtp-in:2626\n")
    # Ansible keeps the port of the first appearance.
    assert inv.host_vars("smtp-in")["ansible_port"] == 2525


def test_group_names_with_dash_and_dot_are_kept_with_a_warning_by_default(tmp_path):
    inv = ini(tmp_path, "[mail-eu]\nmx01\n[a4d.lamp.db.1]\nmx02\n")
    assert {"mail-eu", "a4d.lamp.db.1"} <= set(inv.groups)
    assert "mail_eu" not in inv.groups
    assert any("'mail-eu'" in w and "kept as written" in w for w in inv.warnings)


def test_force_valid_group_names_always_renames_with_a_warning(tmp_path):
    write(tmp_path, {"hosts": "[mail-eu]\nmx01\n"})
    inv = load_inventory(tmp_path / "hosts", group_names="always")
    assert "mail_eu" in inv.groups and "mail-eu" not in inv.groups
    assert any("renamed 'mail_eu'" in w for w in inv.warnings)


def test_force_valid_group_names_silently_renames_and_ignore_keeps_without_warning(tmp_path):
    write(tmp_path, {"hosts": "[mail-eu]\nmx01\n", "inv.yml": "all:\n  children:\n    a-b:\n"})
    silent = load_inventory(tmp_path / "hosts", group_names="silently")
    assert "mail_eu" in silent.groups and not silent.warnings
    ignored = load_inventory(tmp_path / "inv.yml", group_names="ignore")
    assert "a-b" in ignored.groups and not ignored.warnings
    renamed = load_inventory(tmp_path / "inv.yml", group_names="always")
    assert "a_b" in renamed.groups


def test_unknown_group_name_policy_is_refused(tmp_path):
    write(tmp_path, {"hosts": "mx01\n"})
    with pytest.raises(ConfigError, match="never, always, silently, ignore"):
        load_inventory(tmp_path / "hosts", group_names="sometimes")


def test_dashed_group_gets_its_group_vars_children_and_limits(tmp_path):
    inv = ini(
        tmp_path,
        "[web-servers]\nmx01\nmx02\n[db.1]\nmx03\n[site:children]\nweb-servers\ndb.1\n",
        **{"group_vars/web-servers.yml": "role: web\n"},
    )
    assert inv.host_vars("mx01")["role"] == "web"
    assert inv.groups["site"].children == ("web-servers", "db.1")
    assert inv.select("web-servers") == ["mx01", "mx02"]
    assert inv.select("all:!web-servers") == ["mx03"]
    assert inv.select("site:&db.1") == ["mx03"]


def test_unreadable_file_in_an_inventory_directory_is_skipped_with_a_warning(tmp_path):
    write(tmp_path, {"inv/a.ini": "[mail]\nmx01\n", "inv/b.yml": "all: [\n"})
    inv = load_inventory(tmp_path / "inv")
    assert list(inv.hosts) == ["mx01"]
    assert any("b.yml" in w and "skipped" in w for w in inv.warnings)


def test_group_priority_is_kept_as_priority_not_as_variable(tmp_path):
    inv = ini(tmp_path, "[mail]\nmx01\n[mail:vars]\nansible_group_priority=7\n")
    assert inv.groups["mail"].priority == 7
    assert "ansible_group_priority" not in inv.host_vars("mx01")


@pytest.mark.parametrize(
    ("text", "line", "complaint"),
    [
        (
            "[mail]\nmx01\n[web:vars]\nx=1\n",
            3,
            r"\[web:vars\] is for a group that is never declared",
        ),
        (
            "[mail]\nmx01\n\n[eu:children]\nmial\n",
            5,
            r"\[eu:children\] names 'mial'.*\[mial\] section",
        ),
        ("[mail]\nmx01\n[eu:children]\nmx01\n", 4, "is a host, not a group"),
        ("[a:children]\nb\n[b:children]\na\n", 4, "would make a loop"),
        ("[a:children]\na\n", 2, "would make a loop"),
        ("[mail]\nmx[01:2]\n", 2, "same width"),
        ("[mail:host]\n", 1, "unknown type"),
        ("[mail ]\n", 1, "invalid section header"),
        ("[mail]\nmx01 ansible_password=two words\n", 2, "without '='"),
        ("[mail]\nmx01 a='unbalanced\n", 2, "quotes"),
        ("[mail:vars]\njust-a-word\n[mail]\n", 2, "key=value"),
        ("[mail]\nmx01\n[mail:vars]\nansible_group_priority=high\n", 4, "whole number"),
    ],
)
def test_malformed_ini_names_the_file_and_line(tmp_path, text, line, complaint):
    with pytest.raises(InventoryError, match=complaint) as caught:
        ini(tmp_path, text)
    assert caught.value.line == line
    assert caught.value.path == str(tmp_path / "hosts")
    assert str(caught.value).startswith(f"{tmp_path / 'hosts'}:{line}: ")
    assert isinstance(caught.value, ConfigError)  # exit code 5


def test_yaml_document_in_an_ini_file_is_refused(tmp_path):
    write(tmp_path, {"hosts.ini": "---\nall:\n"})
    with pytest.raises(InventoryError, match="YAML") as caught:
        load_inventory(tmp_path / "hosts.ini")
    assert caught.value.line == 1


def test_children_error_explains_ini_group_renaming(tmp_path):
    write(tmp_path, {"hosts": "[mail-eu]\nmx01\n[eu:children]\nmail-eu\n"})
    with pytest.raises(InventoryError, match="renamed 'mail_eu'"):
        load_inventory(tmp_path / "hosts", group_names="always")


def test_error_message_never_repeats_a_host_line_holding_a_secret(tmp_path):
    with pytest.raises(InventoryError) as caught:
        ini(tmp_path, "[mail]\nmx01 ansible_password=Sup3r secret\n")
    assert "Sup3r" not in str(caught.value)
    assert "secret" not in str(caught.value)


def test_host_repr_does_not_show_variables(tmp_path):
    inv = ini(tmp_path, "[mail]\nmx01 ansible_password=Sup3r\n")
    assert "Sup3r" not in repr(inv.hosts["mx01"])
    assert "Sup3r" not in repr(inv.groups["mail"])


# --- YAML -------------------------------------------------------------------------


def test_yaml_groups_nest_and_carry_vars(tmp_path):
    inv = yml(
        tmp_path,
        """
all:
  vars: {smarthost: relay.example.com}
  hosts:
    relay.example.com:
  children:
    mail:
      hosts:
        mx[01:02].example.com: {ansible_user: ops}
        smtp-in:2525:
      children:
        mail_eu:
          hosts:
            mx-eu1:
          vars:
            region: eu
""",
    )
    assert list(inv.hosts) == [
        "relay.example.com",
        "mx01.example.com",
        "mx02.example.com",
        "smtp-in",
        "mx-eu1",
    ]
    assert inv.hosts["relay.example.com"].groups == ("ungrouped",)
    assert inv.groups["mail_eu"].parents == ("mail",)
    assert inv.group_hosts("mail") == ["mx01.example.com", "mx02.example.com", "smtp-in", "mx-eu1"]
    assert inv.host_vars("mx-eu1")["region"] == "eu"
    assert inv.host_vars("mx-eu1")["smarthost"] == "relay.example.com"
    assert inv.host_vars("mx01.example.com")["ansible_user"] == "ops"
    assert inv.host_vars("smtp-in")["ansible_port"] == 2525
    assert type(inv.groups["all"].vars["smarthost"]) is str


def test_yaml_section_written_as_a_string_is_one_name(tmp_path):
    inv = yml(tmp_path, "all:\n  children:\n    mail:\n      hosts: mx01\n")
    assert inv.group_hosts("mail") == ["mx01"]


def test_yaml_nested_mappings_in_vars_are_plain_dicts(tmp_path):
    inv = yml(tmp_path, "all:\n  hosts:\n    mx01:\n      limits: {size: 1, rcpt: [a]}\n")
    limits = inv.host_vars("mx01")["limits"]
    assert type(limits) is dict
    assert limits == {"size": 1, "rcpt": ["a"]}


def test_yaml_unknown_key_and_non_mapping_group_are_skipped_with_warnings(tmp_path):
    inv = yml(tmp_path, "all:\n  children:\n    mail:\n      host:\n        mx01:\n    web: [w1]\n")
    assert "mail" in inv.groups and "web" not in inv.groups
    assert any("skipping 'host'" in w and ":4:" in w for w in inv.warnings)
    assert any("skipping 'web'" in w for w in inv.warnings)


def test_yaml_vault_value_is_kept_opaque(tmp_path):
    inv = yml(
        tmp_path,
        "all:\n  hosts:\n    mx01:\n      ansible_password: !vault |\n"
        "        $ANSIBLE_VAULT;1.1;AES256\n        6162\n      plain: !unsafe '{{ x }}'\n",
    )
    secret = inv.host_vars("mx01")["ansible_password"]
    assert isinstance(secret, VaultedValue)
    assert "6162" not in repr(secret) and "6162" not in str(secret)
    assert inv.host_vars("mx01")["plain"] == "{{ x }}"
    listed = inv.to_ansible_list()["_meta"]["hostvars"]["mx01"]["ansible_password"]
    assert listed == {"__ansible_vault": "$ANSIBLE_VAULT;1.1;AES256\n6162\n"}


@pytest.mark.parametrize(
    ("text", "line", "complaint"),
    [
        ("all:\n  children:\n    mail:\n      hosts:\n    - mx01\n", 5, "invalid YAML"),
        (
            "all:\n  children:\n    mail:\n      hosts: [mx01]\n",
            4,
            "'hosts' of group 'mail' must be a mapping",
        ),
        ("all:\n  hosts:\n    mx01: [a]\n", 3, "variables of host 'mx01' must be a mapping"),
        ("all:\n  hosts:\n    12:\n", 3, "must be a string"),
        ("all:\n  hosts:\n    'mx[3:1]':\n", 3, "runs backwards"),
        ("all:\n  children:\n    a:\n      children:\n        a:\n", 5, "would make a loop"),
        ("plugin: aws_ec2\n", 1, "inventory plugin configuration"),
        ("- all\n", 1, "must be a mapping of group names"),
    ],
)  # fmt: skip
def test_malformed_yaml_names_the_file_and_line(tmp_path, text, line, complaint):
    with pytest.raises(InventoryError, match=complaint) as caught:
        yml(tmp_path, text)
    assert caught.value.line == line
    assert caught.value.path == str(tmp_path / "inventory.yml")


def test_empty_yaml_inventory_is_an_error(tmp_path):
    with pytest.raises(InventoryError, match="empty"):
        yml(tmp_path, "# nothing\n")


def test_file_without_extension_holding_yaml_is_read_as_yaml(tmp_path):
    inv = ini(tmp_path, "# yaml after all\nall:\n  hosts:\n    mx01:\n")
    assert list(inv.hosts) == ["mx01"]


# --- group_vars / host_vars ---------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["group_vars/mail", "group_vars/mail.yml", "group_vars/mail.yaml", "group_vars/mail/any"],
)
def test_group_vars_file_forms_are_all_read(tmp_path, name):
    inv = ini(tmp_path, "[mail]\nmx01\n", **{name: "relay: r1\n"})
    assert inv.host_vars("mx01")["relay"] == "r1"


def test_group_vars_json_file_is_read(tmp_path):
    inv = ini(tmp_path, "[mail]\nmx01\n", **{"group_vars/mail.json": '{"relay": "r1"}'})
    assert inv.host_vars("mx01")["relay"] == "r1"


def test_only_the_first_existing_vars_name_is_used(tmp_path):
    inv = ini(
        tmp_path,
        "[mail]\nmx01\n",
        **{"group_vars/mail": "a: bare\n", "group_vars/mail.yml": "a: yml\nb: yml\n"},
    )
    assert inv.host_vars("mx01")["a"] == "bare"
    assert "b" not in inv.host_vars("mx01")


def test_vars_directory_is_merged_in_sorted_order_recursively(tmp_path):
    inv = ini(
        tmp_path,
        "[mail]\nmx01\n",
        **{
            "group_vars/mail/10.yml": "a: 10\nb: 10\nc: 10\n",
            "group_vars/mail/20.yaml": "b: 20\n",
            "group_vars/mail/30/deep.yml": "c: 30\n",
            "group_vars/mail/99.txt": "a: ignored\n",
            "group_vars/mail/.hidden.yml": "a: ignored\n",
            "group_vars/mail/50.yml~": "a: ignored\n",
        },
    )
    hv = inv.host_vars("mx01")
    assert (hv["a"], hv["b"], hv["c"]) == (10, 20, 30)


def test_host_vars_file_overrides_inventory_host_vars(tmp_path):
    inv = ini(tmp_path, "[mail]\nmx01 a=1 b=1\n", **{"host_vars/mx01.yml": "a: 2\n"})
    assert (inv.host_vars("mx01")["a"], inv.host_vars("mx01")["b"]) == (2, 1)
    assert dict(inv.hosts["mx01"].vars) == {"a": 2, "b": 1}


def test_empty_vars_file_is_ignored(tmp_path):
    inv = ini(tmp_path, "[mail]\nmx01 a=1\n", **{"host_vars/mx01.yml": "# nothing yet\n"})
    assert inv.host_vars("mx01")["a"] == 1


def test_vars_files_for_unknown_groups_and_hosts_are_ignored(tmp_path):
    inv = ini(
        tmp_path, "[mail]\nmx01\n", **{"group_vars/web.yml": "a: 1\n", "host_vars/w1": "a: 1\n"}
    )
    assert "a" not in inv.host_vars("mx01")


@pytest.mark.parametrize(
    ("name", "text", "line", "complaint"),
    [
        ("host_vars/mx01.yml", "- a\n- b\n", 1, "host_vars file must be a mapping"),
        ("group_vars/mail.yml", "just text\n", 1, "group_vars file must be a mapping"),
        ("group_vars/mail/x.yml", "a: 1\n b: 2\n", 2, "invalid YAML"),
        ("group_vars/all.yml", "$ANSIBLE_VAULT;1.1;AES256\n3031\n", None, "ansible-vault"),
    ],
)
def test_bad_vars_file_names_its_path_and_line(tmp_path, name, text, line, complaint):
    with pytest.raises(InventoryError, match=complaint) as caught:
        ini(tmp_path, "[mail]\nmx01\n", **{name: text})
    assert caught.value.path == str(tmp_path / name)
    assert caught.value.line == line


# --- precedence ------------------------------------------------------------------------


PRECEDENCE_INI = """
[mail]
mx01 level=host
mx02
[edge]
mx02
[eu:children]
mail
edge
[all:vars]
level=all
only_all=all
[eu:vars]
level=eu
from_eu=eu
[mail:vars]
level=mail
[edge:vars]
level=edge
"""


def test_child_group_beats_parent_beats_all_and_host_beats_all(tmp_path):
    inv = ini(tmp_path, PRECEDENCE_INI)
    assert inv.host_vars("mx01")["level"] == "host"
    assert inv.host_vars("mx01")["from_eu"] == "eu"
    assert inv.host_vars("mx01")["only_all"] == "all"


def test_groups_at_the_same_depth_merge_alphabetically(tmp_path):
    inv = ini(tmp_path, PRECEDENCE_INI)
    # mx02 is in edge and mail, both at depth 2: 'mail' sorts last, so it wins.
    assert inv.host_vars("mx02")["level"] == "mail"


def test_group_priority_beats_alphabetical_order(tmp_path):
    inv = ini(tmp_path, PRECEDENCE_INI + "ansible_group_priority=10\n")  # under [edge:vars]
    assert inv.host_vars("mx02")["level"] == "edge"


def test_group_vars_files_beat_every_inventory_group_var(tmp_path):
    inv = ini(
        tmp_path,
        PRECEDENCE_INI,
        **{"group_vars/all.yml": "level: all_file\n", "group_vars/eu.yml": "from_eu: eu_file\n"},
    )
    # Ansible: inventory group vars < group_vars/all < group_vars/<group> < host vars.
    assert inv.host_vars("mx02")["level"] == "all_file"
    assert inv.host_vars("mx02")["from_eu"] == "eu_file"
    assert inv.host_vars("mx01")["level"] == "host"


def test_group_vars_file_of_a_child_beats_that_of_its_parent(tmp_path):
    inv = ini(
        tmp_path,
        PRECEDENCE_INI,
        **{"group_vars/eu.yml": "x: eu\n", "group_vars/edge.yml": "x: edge\n"},
    )
    assert inv.host_vars("mx02")["x"] == "edge"
    assert inv.host_vars("mx01")["x"] == "eu"


def test_dict_values_are_replaced_not_merged(tmp_path):
    inv = ini(tmp_path, "[mail]\nmx01 limits=\"{'b': 2}\"\n[mail:vars]\nlimits={'a': 1}\n")
    assert inv.host_vars("mx01")["limits"] == {"b": 2}


def test_magic_variables(tmp_path):
    inv = ini(
        tmp_path, "relay.example.com\n198.18.0.5\n[mail]\nmx01.example.com\n[eu:children]\nmail\n"
    )
    hv = inv.host_vars("mx01.example.com")
    assert hv["inventory_hostname"] == "mx01.example.com"
    assert hv["inventory_hostname_short"] == "mx01"
    assert hv["group_names"] == ["eu", "mail"]
    assert hv["inventory_file"] == str((tmp_path / "hosts").absolute())
    assert hv["inventory_dir"] == str(tmp_path.absolute())
    assert inv.host_vars("198.18.0.5")["inventory_hostname_short"] == "198.18.0.5"
    # As Ansible: an ungrouped host's group_names is ['ungrouped'].
    assert inv.host_vars("relay.example.com")["group_names"] == ["ungrouped"]


# --- inventory directories and resolution --------------------------------------------------


def test_inventory_directory_merges_its_sources_and_skips_what_ansible_skips():
    inv = load_inventory(DATA / "dir_mixed")
    assert list(inv.hosts) == [
        "mx01.example.com",
        "mx02.example.com",
        "win1.corp.example.com",
        "mx03.example.com",
        "mx-b1.example.com",
    ]
    # 20-windows.yml is read after 10-mail.ini, so its [mail] vars win.
    assert inv.host_vars("mx01.example.com")["source"] == "yaml"
    # group_vars/ and host_vars/ inside the directory apply.
    assert inv.host_vars("mx-b1.example.com")["site"] == "a"
    assert inv.host_vars("win1.corp.example.com")["ansible_user"] == "winadmin"
    assert inv.host_vars("mx03.example.com")["inventory_file"].endswith("20-windows.yml")
    assert inv.warnings == ()


def test_name_resolves_under_inventories_first(tmp_path):
    write(tmp_path, {"inventories/prod": "[mail]\nmx01\n", "prod": "[web]\nw1\n"})
    base = tmp_path / "inventories"
    assert resolve_inventory_source("prod", base=base) == base / "prod"


def test_name_falls_back_to_a_path(tmp_path):
    write(tmp_path, {"elsewhere/hosts": "[mail]\nmx01\n"})
    path = tmp_path / "elsewhere" / "hosts"
    assert resolve_inventory_source(path, base=tmp_path / "inventories") == path


def test_unknown_inventory_says_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InventoryError) as caught:
        resolve_inventory_source("prod")
    assert str(caught.value) == "inventory 'prod' not found: looked for inventories/prod and ./prod"


def test_load_inventory_resolves_names_under_inventories(tmp_path, monkeypatch):
    write(tmp_path, {"inventories/prod/hosts": "[mail]\nmx01\n"})
    monkeypatch.chdir(tmp_path)
    inv = load_inventory("prod")
    assert inv.source == Path("inventories/prod")
    assert list(inv.hosts) == ["mx01"]


def test_empty_inventory_directory_loads_with_a_warning(tmp_path):
    (tmp_path / "inv").mkdir()
    inv = load_inventory(tmp_path / "inv")
    assert list(inv.hosts) == []
    assert inv.warnings


# --- patterns ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def example():
    return load_inventory(DATA / "ini_basic" / "hosts")


MX = [f"mx{n}.example.com" for n in ("01", "02", "03", "04", "10", "13", "16")]
EDGE = [f"edge-{c}.example.net" for c in "abc"]
WIN = ["win1.corp.example.com", "win2.corp.example.com", "2001:db8::25", "2001:db8::26"]


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("mail", [*MX, "smtp-in.example.com"]),
        ("edge", ["mx01.example.com", "mx03.example.com", *EDGE]),
        ("mail:&edge", ["mx01.example.com", "mx03.example.com"]),
        ("edge:!mail", EDGE),
        ("!mail:edge", EDGE),  # exclusions apply last whatever their place
        ("edge,windows", ["mx01.example.com", "mx03.example.com", *EDGE, *WIN]),
        ("windows:edge-a*", [*EDGE[:1], *WIN]),
        ("mx1*", MX[4:]),
        ("~mx0[13]", ["mx01.example.com", "mx03.example.com"]),
        ("~.*\\.net$", EDGE),
        ("relay.example.com", ["relay.example.com"]),
        ("2001:db8::25", ["2001:db8::25"]),
        ("ungrouped", ["relay.example.com"]),
        ("europe:!mail:!edge-b*", [EDGE[0], EDGE[2]]),
        ("!mail_servers", ["relay.example.com"]),
        ("&windows", WIN),
        ("edge[0]", ["edge-a.example.net"]),
        ("edge[-1]", ["mx03.example.com"]),
        ("edge[1:2]", EDGE[1:]),
        ("edge[3:]", ["mx01.example.com", "mx03.example.com"]),
        ("nosuch", []),
        ("nosuch:!mail", []),
        ("", None),
        ("all", None),
        ("*", None),
    ],
)
def test_limit_patterns_select_hosts_as_ansible_does(example, pattern, expected):
    everything = list(example.hosts)
    result = example.select(pattern)
    if expected is None:
        assert result == everything
    else:
        assert sorted(result) == sorted(expected)
        assert result == [h for h in everything if h in result]  # inventory order


def test_select_none_is_every_host(example):
    assert example.select(None) == list(example.hosts)


def test_bad_regex_pattern_is_an_inventory_error(example):
    with pytest.raises(InventoryError, match="invalid host pattern"):
        example.select("~mx(")


def test_subscript_past_the_end_is_an_inventory_error(example):
    with pytest.raises(InventoryError, match="past the 5 matching hosts"):
        example.select("edge[9]")


# --- queries and ansible-inventory output --------------------------------------------------


def test_group_hosts_include_child_groups_in_inventory_order(example):
    assert example.group_hosts("europe") == [
        *MX[:4],
        *MX[4:],
        "smtp-in.example.com",
        *EDGE,
    ]
    assert example.group_hosts("all") == list(example.hosts)
    assert example.groups_map()["edge"] == ["mx01.example.com", "mx03.example.com", *EDGE]


def test_to_ansible_list_has_groups_children_and_merged_hostvars(example):
    listed = example.to_ansible_list()
    assert listed["all"] == {"children": ["ungrouped", "mail_servers"]}
    assert listed["europe"] == {"children": ["mail", "edge"]}
    assert listed["ungrouped"] == {"hosts": ["relay.example.com"]}
    assert "vars" not in listed["mail"]
    hv = listed["_meta"]["hostvars"]["mx01.example.com"]
    assert hv["level"] == "from_host_file" and hv["tier"] == "edge"
    assert "inventory_hostname" not in hv and "group_names" not in hv
    json.dumps(listed)  # printable as is


def test_to_ansible_list_with_limit_drops_other_hosts_and_empty_groups(example):
    listed = example.to_ansible_list("edge:!mail")
    assert set(listed["_meta"]["hostvars"]) == set(EDGE)
    assert listed["edge"] == {"hosts": EDGE}
    assert "mail" not in listed and "windows" not in listed
    assert listed["europe"] == {"children": ["mail", "edge"]}


# --- the bundled inventories ---------------------------------------------------------------


def test_bundled_local_inventory_is_localhost_in_group_mail():
    inv = load_inventory(REPO / "inventories" / "local")
    assert list(inv.hosts) == ["localhost"]
    assert inv.group_hosts("mail") == ["localhost"]
    assert inv.host_vars("localhost")["ansible_connection"] == "local"


def test_example_inventory_describes_unix_and_windows_mail_servers():
    inv = load_inventory(REPO / "inventories" / "example")
    assert inv.warnings == ()
    connections = {inv.host_vars(h)["ansible_connection"] for h in inv.group_hosts("mail")}
    assert connections == {"ssh", "winrm"}
    assert inv.select("mail_unix_dr") == [
        "mx-dr01.example.com",
        "mx-dr05.example.com",
        "mx-dr09.example.com",
    ]
    assert inv.host_vars("mx-dr05.example.com")["fleet_smarthost"] == "relay2.example.com"
    assert "198.51.100.53" in inv.host_vars("mx02.example.com")["fleet_ping_targets"]
    assert inv.host_vars("smtp-ina.example.com")["ansible_port"] == 2222


@pytest.mark.parametrize(
    ("name", "source"),
    [
        ("ini_basic", "ini_basic/hosts"),
        ("yaml_basic", "yaml_basic/inventory.yml"),
        ("dir_mixed", "dir_mixed"),
    ],
)
def test_list_equals_recorded_ansible_inventory_output(name, source):
    recorded = json.loads((DATA / "recorded" / f"{name}.list.json").read_text())
    assert json.loads(json.dumps(load_inventory(DATA / source).to_ansible_list())) == recorded


@pytest.mark.parametrize(
    "line",
    [
        "mx01 a=1 b=two",
        "mx01\ta=1   b=2 ",
        "mx01 a='x y' b=\"z\" # comment",
        "mx01 a=x\\ y",
        "mx01 a=x#notcomment",
    ],
)
def test_host_line_split_matches_a_posix_shell(line):
    assert split_host_line(line) == shlex.split(line, comments=True)


def test_a_multi_letter_range_is_refused_not_silently_shortened():
    from fleet.inventory.hostnames import expand_ranges

    with pytest.raises(ValueError, match="single letters"):
        expand_ranges("h[ab:cd]")


def test_a_dynamic_inventory_script_is_refused_with_the_way_out(tmp_path):
    script = tmp_path / "dyn.py"
    script.write_text("#!/usr/bin/env python3\nprint('{}')\n")
    script.chmod(0o755)
    with pytest.raises(InventoryError, match=r"ansible-inventory -i .*dyn\.py --list --yaml"):
        load_inventory(script)


def test_a_yaml_date_is_listed_as_iso_text(tmp_path: Path) -> None:
    inventory = tmp_path / "hosts.yml"
    inventory.write_text("all:\n  vars:\n    since: 2024-01-31\n  hosts:\n    mx1:\n")
    listed = load_inventory(inventory).to_ansible_list()
    assert json.loads(json.dumps(listed))["_meta"]["hostvars"]["mx1"]["since"] == "2024-01-31"
