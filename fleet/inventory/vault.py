"""ansible-vault's format, read (and written, for tests) independently of Ansible.

An encrypted text is a header and a hex body, wrapped at 80 columns::

    $ANSIBLE_VAULT;1.1;AES256              (1.2 adds the vault id: ;1.2;AES256;prod)
    hex( hex(salt) \\n hex(hmac) \\n hex(ciphertext) )

PBKDF2-HMAC-SHA256 (10,000 rounds, 32-byte salt) turns the password into 80
bytes: an AES-256 key, an HMAC-SHA256 key and a 16-byte CTR counter block.
The plaintext is PKCS#7-padded and encrypted with AES-256-CTR; the HMAC covers
the ciphertext.  Written from that description with the ``cryptography``
package; no code of ansible-core (GPL-3.0) is used.

Passwords come from files (a file holding it, or an executable that prints
it), from ``--vault-id label@source``, or from a prompt.  Decrypted text is a
secret: it goes into no message, repr or report (see :class:`SecretText`).
"""

from __future__ import annotations

import binascii
import getpass
import os
import re
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fleet.errors import InventoryError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers import Cipher

HEADER = "$ANSIBLE_VAULT"
DEFAULT_LABEL = "default"
_ROUNDS = 10_000
_KEY, _IV = 32, 16
_PROMPTS = ("prompt", "prompt_ask_vault_pass")
_CLIENT_SCRIPT = re.compile(r"-client(\.[^.]+)?$")
_PASSWORD_COMMAND_TIMEOUT = 60.0


class VaultError(InventoryError):
    """A vaulted file or value that cannot be decrypted (exit 5)."""


@dataclass(frozen=True)
class VaultedValue:
    """A ``!vault`` value not yet decrypted (never shown in a repr)."""

    ciphertext: str = field(repr=False)

    def __str__(self) -> str:
        return "<vault-encrypted value>"


class SecretText(str):
    """Text decrypted from a vault: a plain string to templates and transports,
    masked wherever fleet shows values (its repr never holds it)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "SecretText('********')"


@dataclass(frozen=True)
class VaultSecret:
    """One vault password and the id (label) it was given for."""

    label: str
    password: bytes = field(repr=False)
    source: str = ""  # where it came from, for messages


def is_vaulted(text: str) -> bool:
    """True for a whole file or value encrypted by ansible-vault."""
    return text.lstrip().startswith(HEADER + ";")


def decrypt(text: str, secrets: Sequence[VaultSecret], where: object = None) -> bytes:
    """The plaintext of a vaulted ``text``; VaultError (one line) when no secret opens it.

    The secret whose label matches the header's vault id is tried first, then
    the others, as ansible-vault does by default."""
    label, salt, mac, ciphertext = _parse(text, where)
    if not secrets:
        named = f" (vault id {label!r})" if label else ""
        raise VaultError(
            f"encrypted with ansible-vault{named} and no vault password was given: "
            "use --vault-password-file, --vault-id or --ask-vault-pass",
            path=where,
        )
    ordered = sorted(secrets, key=lambda secret: secret.label != label)
    for secret in ordered:
        plain = _open(secret.password, salt, mac, ciphertext)
        if plain is not None:
            return plain
    tried = ", ".join(f"{s.label}@{s.source}" if s.source else s.label for s in ordered)
    named = f" for vault id {label!r}" if label else ""
    raise VaultError(f"wrong vault password{named}: none of {tried} decrypts it", path=where)


def encrypt(plaintext: bytes, secret: VaultSecret, label: str | None = None) -> str:
    """``plaintext`` as ansible-vault writes it (1.2 with a ``label``, else 1.1)."""
    from cryptography.hazmat.primitives import padding

    salt = os.urandom(32)
    key, mac_key, iv = _keys(secret.password, salt)
    padder = padding.PKCS7(128).padder()
    padded = padder.update(plaintext) + padder.finalize()
    encryptor = _cipher(key, iv).encryptor()
    ciphertext = encryptor.update(padded) + encryptor.finalize()
    body = b"\n".join(
        binascii.hexlify(part) for part in (salt, _mac(mac_key, ciphertext), ciphertext)
    )
    hexed = binascii.hexlify(body).decode("ascii")
    header = f"{HEADER};1.2;AES256;{label}" if label else f"{HEADER};1.1;AES256"
    return "\n".join([header, *(hexed[i : i + 80] for i in range(0, len(hexed), 80))]) + "\n"


def _parse(text: str, where: object) -> tuple[str | None, bytes, bytes, bytes]:
    lines = text.strip().splitlines()
    fields = lines[0].strip().split(";") if lines else []
    if len(fields) < 3 or fields[0] != HEADER or fields[1] not in ("1.1", "1.2"):
        raise VaultError("not an ansible-vault 1.1 or 1.2 text (bad header)", path=where)
    if fields[2].strip() != "AES256":
        raise VaultError(f"ansible-vault cipher {fields[2]!r} is not AES256", path=where)
    try:
        body = binascii.unhexlify("".join(line.strip() for line in lines[1:]))
        salt, mac, ciphertext = (binascii.unhexlify(part) for part in body.split(b"\n"))
    except (ValueError, binascii.Error) as exc:
        raise VaultError("damaged ansible-vault text (its body is not hex)", path=where) from exc
    label = fields[3].strip() if len(fields) > 3 and fields[3].strip() else None
    return label, salt, mac, ciphertext


# cryptography is imported on first use: an inventory without a vault does not pay for it.


def _keys(password: bytes, salt: bytes) -> tuple[bytes, bytes, bytes]:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

    kdf = PBKDF2HMAC(hashes.SHA256(), length=2 * _KEY + _IV, salt=salt, iterations=_ROUNDS)
    derived = kdf.derive(password)
    return derived[:_KEY], derived[_KEY : 2 * _KEY], derived[2 * _KEY :]


def _cipher(key: bytes, iv: bytes) -> Cipher:
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    return Cipher(algorithms.AES(key), modes.CTR(iv))


def _mac(key: bytes, data: bytes) -> bytes:
    from cryptography.hazmat.primitives import hashes, hmac

    signer = hmac.HMAC(key, hashes.SHA256())
    signer.update(data)
    return signer.finalize()


def _open(password: bytes, salt: bytes, mac: bytes, ciphertext: bytes) -> bytes | None:
    from cryptography.hazmat.primitives import constant_time, padding

    key, mac_key, iv = _keys(password, salt)
    if not constant_time.bytes_eq(_mac(mac_key, ciphertext), mac):
        return None
    decryptor = _cipher(key, iv).decryptor()
    padded = decryptor.update(ciphertext) + decryptor.finalize()
    unpadder = padding.PKCS7(128).unpadder()
    try:
        return unpadder.update(padded) + unpadder.finalize()
    except ValueError:
        return None


# -- where passwords come from ------------------------------------------------


def parse_vault_id(text: str) -> tuple[str, str]:
    """``label@source`` -> (label, source); a bare source gets the label ``default``."""
    label, at, source = text.partition("@")
    if not at:
        return DEFAULT_LABEL, text
    return label or DEFAULT_LABEL, source


def secret_from_source(
    label: str, source: str, ask: Callable[[str], str] = getpass.getpass
) -> VaultSecret:
    """The password of ``source``: a prompt, a file, or an executable printing it."""
    if source in _PROMPTS:
        prompt = "Vault password: " if label == DEFAULT_LABEL else f"Vault password ({label}): "
        return VaultSecret(label, ask(prompt).encode(), "prompt")
    path = Path(source).expanduser()
    if not path.is_file():
        raise VaultError(f"vault password file {source!r} not found (vault id {label!r})")
    if os.access(path, os.X_OK):
        password = _run_password_script(path, label)
    else:
        try:
            password = path.read_bytes().strip()
        except OSError as exc:
            raise VaultError(f"vault password file {source!r}: {exc.strerror}") from exc
    if not password:
        raise VaultError(f"vault password file {source!r} is empty")
    return VaultSecret(label, password, source)


def _run_password_script(path: Path, label: str) -> bytes:
    # A "*-client" script serves several ids and is told which (ansible-vault's contract).
    args = [str(path.absolute())]
    if _CLIENT_SCRIPT.search(path.name):
        args += ["--vault-id", label]
    try:
        done = subprocess.run(
            args, capture_output=True, timeout=_PASSWORD_COMMAND_TIMEOUT, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise VaultError(f"vault password script {path} could not run: {exc}") from exc
    if done.returncode != 0:
        # Not its output: it may be the password.
        raise VaultError(f"vault password script {path} failed (exit {done.returncode})")
    return done.stdout.strip()


def vault_secrets(
    vault_ids: Sequence[str] = (),
    password_files: Sequence[str] = (),
    ask: bool = False,
    prompt: Callable[[str], str] = getpass.getpass,
) -> tuple[VaultSecret, ...]:
    """The secrets given as Ansible's options give them (``--vault-id``,
    ``--vault-password-file``, ``--ask-vault-pass``), in that order."""
    sources = [parse_vault_id(text) for text in vault_ids]
    sources += [(DEFAULT_LABEL, path) for path in password_files]
    if ask:
        sources.append((DEFAULT_LABEL, "prompt"))
    return tuple(secret_from_source(label, source, prompt) for label, source in sources)


def reveal(value: Any, secrets: Sequence[VaultSecret], where: object = None) -> Any:
    """``value`` with each inline ``!vault`` value decrypted into a SecretText."""
    if isinstance(value, VaultedValue):
        return SecretText(decrypt(value.ciphertext, secrets, where).decode("utf-8", "replace"))
    if isinstance(value, dict):
        return {key: reveal(item, secrets, where) for key, item in value.items()}
    if isinstance(value, list):
        return [reveal(item, secrets, where) for item in value]
    return value


def as_secrets(value: Any) -> Any:
    """Every string in ``value`` (from a wholly vaulted file) as a SecretText."""
    if isinstance(value, str):
        return SecretText(value)
    if isinstance(value, dict):
        return {key: as_secrets(item) for key, item in value.items()}
    if isinstance(value, list):
        return [as_secrets(item) for item in value]
    return value
