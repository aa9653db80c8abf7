"""ansible-vault files and values: fleet reads what ansible-vault writes, and the other way.

The real ``ansible-vault`` (ansible-core, a test extra) encrypts; fleet decrypts; and a
text fleet encrypts is what ``ansible-vault view`` shows.  Skipped without ansible-core.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from fleet.cli import main
from fleet.inventory import SecretText, VaultError, VaultSecret, load_inventory, vault_secrets
from fleet.inventory.vault import decrypt, encrypt, parse_vault_id

needs_ansible = pytest.mark.skipif(
    shutil.which("ansible-vault") is None, reason="ansible-core is not installed"
)


def _vault(args: list[str], cwd: Path, stdin: str | None = None) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    (cwd / "ansible.cfg").touch()
    env["ANSIBLE_CONFIG"] = str(cwd / "ansible.cfg")
    done = subprocess.run(
        ["ansible-vault", *args], cwd=cwd, env=env, input=stdin, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def _password_file(tmp_path: Path, name: str, password: str) -> Path:
    path = tmp_path / name
    path.write_text(password + "\n")
    return path


def _vaulted_inventory(tmp_path: Path) -> Path:
    """hosts + group_vars/mail.yml wholly vaulted (1.1) + an inline !vault value (1.2, id prod)."""
    _password_file(tmp_path, "default.pw", "s3cret-default")
    _password_file(tmp_path, "prod.pw", "s3cret-prod")
    inv = tmp_path / "inv"
    (inv / "group_vars").mkdir(parents=True)
    (inv / "hosts.yml").write_text("all:\n  children:\n    mail:\n      hosts:\n        mx01:\n")
    users = "users:\n  - name: ops\n    password: hunter2\n    token_required: true\n"
    (inv / "group_vars" / "mail.yml").write_text("ansible_password: Winter2024!\n" + users)
    _vault(["encrypt", "--vault-password-file", "default.pw", "inv/group_vars/mail.yml"], tmp_path)
    inline = _vault(
        ["encrypt_string", "--vault-id", "prod@prod.pw", "--name", "smtp_auth", "relay-pass"],
        tmp_path,
    )
    (inv / "host_vars").mkdir()
    (inv / "host_vars" / "mx01.yml").write_text(inline + "token_enabled: true\n")
    return inv


@needs_ansible
def test_files_and_inline_values_made_by_ansible_vault_are_decrypted(tmp_path):
    inv = _vaulted_inventory(tmp_path)
    secrets = vault_secrets(
        vault_ids=[f"prod@{tmp_path / 'prod.pw'}"], password_files=[str(tmp_path / "default.pw")]
    )
    hostvars = load_inventory(inv, secrets=secrets).host_vars("mx01")
    assert hostvars["ansible_password"] == "Winter2024!"
    assert isinstance(hostvars["ansible_password"], SecretText)
    assert hostvars["smtp_auth"] == "relay-pass"
    assert hostvars["users"][0]["password"] == "hunter2"
    assert "Winter2024" not in repr(hostvars)


@needs_ansible
def test_what_fleet_encrypts_ansible_vault_views(tmp_path):
    _password_file(tmp_path, "pw", "open sesame")
    for label in (None, "prod"):
        (tmp_path / "secret.yml").write_text(
            encrypt(b"ansible_password: Spring!\n", VaultSecret("prod", b"open sesame"), label)
        )
        source = "prod@pw" if label else "pw"
        shown = _vault(["view", "--vault-id", source, "secret.yml"], tmp_path)
        assert shown == "ansible_password: Spring!\n"


@needs_ansible
def test_a_decrypted_value_equals_ansible_vault_view(tmp_path):
    _password_file(tmp_path, "pw", "pw-1")
    (tmp_path / "f.yml").write_text("a: 1\nb: [x, y]\n")
    _vault(["encrypt", "--vault-id", "ops@pw", "f.yml"], tmp_path)
    text = (tmp_path / "f.yml").read_text()
    assert text.startswith("$ANSIBLE_VAULT;1.2;AES256;ops")
    viewed = _vault(["view", "--vault-id", "ops@pw", "f.yml"], tmp_path)
    assert decrypt(text, [VaultSecret("ops", b"pw-1")]).decode() == viewed


def test_a_password_script_is_run_and_its_output_used(tmp_path):
    script = tmp_path / "vault-pass.sh"
    script.write_text("#!/bin/sh\necho from-script\n")
    script.chmod(0o700)
    secret = vault_secrets(password_files=[str(script)])[0]
    text = encrypt(b"x: 1\n", VaultSecret("default", b"from-script"))
    assert decrypt(text, [secret]) == b"x: 1\n"


def test_a_client_script_is_told_the_vault_id(tmp_path):
    script = tmp_path / "keyring-client.py"
    script.write_text('#!/bin/sh\n[ "$1" = --vault-id ] && echo "pw-for-$2"\n')
    script.chmod(0o700)
    (secret,) = vault_secrets(vault_ids=[f"prod@{script}"])
    assert secret.password == b"pw-for-prod"


def test_the_matching_vault_id_opens_a_1_2_text_among_others():
    text = encrypt(b"ok\n", VaultSecret("prod", b"p"), "prod")
    secrets = [VaultSecret("dev", b"d"), VaultSecret("prod", b"p")]
    assert decrypt(text, secrets) == b"ok\n"


def test_vault_id_without_label_is_the_default():
    assert parse_vault_id("/etc/pw") == ("default", "/etc/pw")
    assert parse_vault_id("prod@prompt") == ("prod", "prompt")


def test_wrong_password_is_one_line_exit_5_without_the_secret(tmp_path, capsys):
    inv = tmp_path / "inv"
    (inv / "group_vars").mkdir(parents=True)
    (inv / "hosts").write_text("[mail]\nmx01\n")
    vaulted = encrypt(b"ansible_password: Winter2024!\n", VaultSecret("default", b"right"))
    (inv / "group_vars" / "mail.yml").write_text(vaulted)
    _password_file(tmp_path, "wrong.pw", "wrong")
    code = main(
        ["inventory", "-i", str(inv), "--list", "--vault-password-file", str(tmp_path / "wrong.pw")]
    )
    err = capsys.readouterr().err
    assert code == 5
    assert len(err.strip().splitlines()) == 1
    assert "wrong vault password" in err and "mail.yml" in err
    assert "Winter2024" not in err and "right" not in err


def test_missing_vault_id_is_one_line_exit_5(tmp_path, capsys):
    inv = tmp_path / "inv"
    (inv / "host_vars").mkdir(parents=True)
    (inv / "hosts").write_text("mx01\n")
    (inv / "host_vars" / "mx01.yml").write_text(
        encrypt(b"a: 1\n", VaultSecret("prod", b"p"), "prod")
    )
    code = main(["inventory", "-i", str(inv), "--list"])
    err = capsys.readouterr().err
    assert code == 5
    assert "vault id 'prod'" in err and len(err.strip().splitlines()) == 1


def test_a_wrong_password_is_refused(tmp_path):
    with pytest.raises(VaultError, match="wrong vault password"):
        decrypt(encrypt(b"a", VaultSecret("default", b"x")), [VaultSecret("default", b"y")])


def test_inventory_list_masks_vaulted_and_nested_secrets(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("FLEET_SHOW_SECRETS", raising=False)
    inv = tmp_path / "inv"
    (inv / "group_vars").mkdir(parents=True)
    (inv / "hosts").write_text("[mail]\nmx01\n")
    secret = VaultSecret("default", b"pw")
    (inv / "group_vars" / "all.yml").write_text(
        "users:\n  - name: ops\n    password: hunter2\n"
        "api_token_enabled: true\nrelay_note: !vault |\n  "
        + encrypt(b"plain-looking", secret).replace("\n", "\n  ")
    )
    (inv / "group_vars" / "mail.yml").write_text(encrypt(b"login_name: Vaulted-Name\n", secret))
    _password_file(tmp_path, "pw", "pw")
    code = main(
        ["inventory", "-i", str(inv), "--list", "--vault-password-file", str(tmp_path / "pw")]
    )
    out = capsys.readouterr().out
    assert code == 0
    for secret_text in ("hunter2", "plain-looking", "Vaulted-Name"):
        assert secret_text not in out
    hostvars = json.loads(out)["_meta"]["hostvars"]["mx01"]
    assert hostvars["users"] == [{"name": "ops", "password": "********"}]
    assert hostvars["api_token_enabled"] is True
    assert hostvars["relay_note"] == "********"
