"""ansible.cfg found as Ansible finds it, its settings with Ansible's precedence."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fleet.ansiblecfg import load_config
from fleet.app import audit_request, with_login_defaults
from fleet.cli import main
from fleet.errors import ConfigError
from fleet.inventory import VaultSecret
from fleet.inventory.vault import encrypt
from fleet.plan import HostPlan

CFG = """\
[defaults]
inventory = ./inventory/hosts ; a comment
forks = 7
remote_user = auditor
private_key_file = keys/audit_ed25519
host_key_checking = False
timeout = 15
vault_password_file = ./vault.pw
force_valid_group_names = always

[ssh_connection]
ssh_args = -o ControlMaster=auto -o ControlPersist=60s
"""


def _setup(root: Path, text: str = CFG) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "ansible.cfg").write_text(text)
    return root


def test_settings_are_read_with_paths_relative_to_the_file(tmp_path):
    root = _setup(tmp_path / "project")
    config = load_config(env={}, cwd=root, home=tmp_path)
    assert config.path == root / "ansible.cfg"
    assert config.get("inventory") == str(root / "inventory" / "hosts")
    assert config.get("private_key_file") == str(root / "keys" / "audit_ed25519")
    assert config.get("ssh_args") == "-o ControlMaster=auto -o ControlPersist=60s"
    assert config.settings["forks"].origin == f"{root / 'ansible.cfg'} [defaults]"


def test_ansible_config_wins_over_the_file_here_and_home(tmp_path):
    here = _setup(tmp_path / "here")
    chosen = _setup(tmp_path / "chosen", "[defaults]\nforks = 3\n")
    _setup(tmp_path / "home").joinpath("ansible.cfg").rename(tmp_path / "home" / ".ansible.cfg")
    env = {"ANSIBLE_CONFIG": str(chosen)}  # a directory holding ansible.cfg
    assert load_config(env=env, cwd=here, home=tmp_path / "home").get("forks") == "3"
    assert load_config(env={}, cwd=here, home=tmp_path / "home").path == here / "ansible.cfg"
    empty = tmp_path / "empty"
    empty.mkdir()
    home_config = load_config(env={}, cwd=empty, home=tmp_path / "home")
    assert home_config.path == tmp_path / "home" / ".ansible.cfg"


def test_a_world_writable_directory_s_ansible_cfg_is_ignored(tmp_path):
    root = _setup(tmp_path / "shared")
    root.chmod(0o777)
    config = load_config(env={}, cwd=root, home=tmp_path)
    assert config.path is None or config.path != root / "ansible.cfg"
    assert any("world writable" in w for w in config.warnings)


def test_environment_wins_over_the_file_and_the_command_line_over_both(tmp_path):
    root = _setup(tmp_path / "p")
    config = load_config(env={"ANSIBLE_FORKS": "9"}, cwd=root, home=tmp_path)
    assert config.settings["forks"].origin == "ANSIBLE_FORKS"
    request = audit_request({}, config)
    assert request.forks == 9
    assert request.connect_timeout == 15.0
    assert request.host_key_checking is False
    assert request.remote_user == "auditor"
    assert request.group_names == "always"
    assert request.inventory == str(root / "inventory" / "hosts")
    assert request.vault_password_files == (str(root / "vault.pw"),)
    assert audit_request({"forks": 2, "inventory": "lab"}, config).forks == 2
    assert audit_request({"inventory": "lab"}, config).inventory == "lab"


def test_without_any_ansible_setup_the_defaults_stay(tmp_path):
    request = audit_request({}, load_config(env={}, cwd=tmp_path, home=tmp_path))
    assert request.inventory == "local" and request.forks == 50


def test_a_bad_setting_names_where_it_came_from(tmp_path):
    root = _setup(tmp_path / "p", "[defaults]\nforks = many\n")
    with pytest.raises(ConfigError, match=r"forks from .*ansible.cfg \[defaults\]"):
        audit_request({}, load_config(env={}, cwd=root, home=tmp_path))


def test_vault_identity_list_comes_before_the_ids_given():
    from fleet.ansiblecfg import AnsibleConfig, Setting

    config = AnsibleConfig(None, {"vault_identity_list": Setting("a@x, b@y", "ANSIBLE_X")})
    assert audit_request({"vault_ids": [("c@z",)]}, config).vault_ids == ("a@x", "b@y", "c@z")


def test_remote_user_and_key_apply_only_where_the_inventory_names_none():
    request = audit_request(
        {"remote_user": "auditor", "private_key_file": "/k"}, load_config(env={}, cwd=Path("/"))
    )
    named = HostPlan("a", "ssh", "a", None, "root", {"ansible_ssh_private_key_file": "/mine"})
    bare = HostPlan("b", "ssh", "b", None, None, {})
    first, second = with_login_defaults([named, bare], request)
    assert first == named
    assert second.user == "auditor" and second.vars["ansible_private_key_file"] == "/k"


def test_inventory_command_in_a_directory_with_ansible_cfg_uses_its_settings(
    tmp_path, monkeypatch, capsys
):
    root = _setup(tmp_path / "p")
    (root / "inventory").mkdir()
    (root / "inventory" / "hosts").write_text("[web-servers]\nweb01\n")
    (root / "inventory" / "group_vars").mkdir()
    (root / "inventory" / "group_vars" / "web_servers.yml").write_text(
        encrypt(b"role: front\n", VaultSecret("default", b"cfg-pw"))
    )
    (root / "vault.pw").write_text("cfg-pw\n")
    for name in list(__import__("os").environ):
        if name.startswith("ANSIBLE_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(root)
    assert main(["inventory", "--list"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed["web_servers"]["hosts"] == ["web01"]  # force_valid_group_names = always
    assert listed["_meta"]["hostvars"]["web01"]["role"] == "********"  # from the vault

    assert main(["config"]) == 0
    shown = capsys.readouterr().out
    assert f"ansible.cfg: {root / 'ansible.cfg'}" in shown
    assert "forks" in shown and f"({root / 'ansible.cfg'} [defaults])" in shown
