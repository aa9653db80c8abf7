"""The lab's certificate authority and the server certificates of its Windows hosts.

WinRM over HTTPS (5986) is only worth testing with certificate validation
on, as an audit runs it: the lab keeps one CA in its state directory and
issues each simulated Windows host a certificate naming its address (SAN IP)
and its name (SAN DNS).  An inventory trusts the lab through
``ansible_winrm_ca_trust_path=<state dir>/ca.crt``.

Several host processes may start at once on one state directory, so the CA
is created under a file lock.  Private keys are written mode 0600.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import ipaddress
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_NAME = "fleet lab CA"
CA_CERT = "ca.crt"
CA_KEY = "ca.key"
# Long enough for any lab run, short enough that a stray copy of the key ages out.
CA_DAYS = 3650
SERVER_DAYS = 825  # the most browsers and TLS stacks accept for a server certificate


@contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """Serialise CA creation and issuing between processes sharing ``directory``."""
    with open(directory / ".pki.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(pem)


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


# Every flag of KeyUsage: a certificate grants the ones it names, and no other.
_KEY_USAGES = (
    "digital_signature",
    "content_commitment",
    "key_encipherment",
    "data_encipherment",
    "key_agreement",
    "key_cert_sign",
    "crl_sign",
    "encipher_only",
    "decipher_only",
)


def _key_usage(*granted: str) -> x509.KeyUsage:
    return x509.KeyUsage(**{usage: usage in granted for usage in _KEY_USAGES})


def _builder(
    subject: x509.Name, issuer: x509.Name, public: ec.EllipticCurvePublicKey, days: int
) -> x509.CertificateBuilder:
    """A fresh serial, valid for ``days``: the part every lab certificate shares."""
    # Backdated a little: the lab's namespaces share one clock, but a client
    # on another machine may not.
    now = dt.datetime.now(dt.timezone.utc)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=days))
    )


def _build_ca(key: ec.EllipticCurvePrivateKey) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, CA_NAME)])
    public = key.public_key()
    return (
        _builder(name, name, public, CA_DAYS)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage("digital_signature", "key_cert_sign", "crl_sign"), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )


def ensure_ca(directory: str | os.PathLike[str]) -> tuple[Path, Path]:
    """The lab CA in ``directory`` (created if missing): ``(ca_cert_path, ca_key_path)``."""
    base = Path(directory)
    base.mkdir(parents=True, exist_ok=True)
    with _locked(base):
        return _ensure_ca_unlocked(base)


def _ensure_ca_unlocked(base: Path) -> tuple[Path, Path]:
    cert_path, key_path = base / CA_CERT, base / CA_KEY
    if not (cert_path.exists() and key_path.exists()):
        key = ec.generate_private_key(ec.SECP256R1())
        _write_key(key_path, key)
        _write_cert(cert_path, _build_ca(key))
    return cert_path, key_path


def _load_ca(
    cert_path: Path, key_path: Path
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{key_path}: the lab CA key is not an EC key")
    return cert, key


def _san(name: str, ip: str) -> x509.SubjectAlternativeName:
    entries: list[x509.GeneralName] = [x509.IPAddress(ipaddress.ip_address(ip))]
    if name != ip:
        entries.insert(0, x509.DNSName(name))
    return x509.SubjectAlternativeName(entries)


def _build_server(
    name: str,
    ip: str,
    key: ec.EllipticCurvePrivateKey,
    ca: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
) -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    return (
        _builder(subject, ca.subject, key.public_key(), SERVER_DAYS)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage("digital_signature", "key_agreement"), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(_san(name, ip), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )


def _still_good(cert_path: Path, key_path: Path, name: str, ip: str, ca: x509.Certificate) -> bool:
    """An existing certificate is reused when it names the same host and comes from this CA."""
    if not (cert_path.exists() and key_path.exists()):
        return False
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    if cert.issuer != ca.subject:
        return False
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return san == _san(name, ip) and cert.not_valid_after_utc > dt.datetime.now(dt.timezone.utc)


def issue(directory: str | os.PathLike[str], name: str, ip: str) -> tuple[Path, Path]:
    """A server certificate for host ``name`` at ``ip``, signed by the lab CA in ``directory``.

    Returns ``(cert_path, key_path)``; an existing certificate for the same
    name and address from the same CA is reused.
    """
    base = Path(directory)
    base.mkdir(parents=True, exist_ok=True)
    ipaddress.ip_address(ip)  # a bad address is the caller's mistake: fail before writing
    stem = name.replace("/", "_")
    cert_path, key_path = base / f"{stem}.crt", base / f"{stem}.key"
    with _locked(base):
        ca_cert_path, ca_key_path = _ensure_ca_unlocked(base)
        ca, ca_key = _load_ca(ca_cert_path, ca_key_path)
        if not _still_good(cert_path, key_path, name, ip, ca):
            key = ec.generate_private_key(ec.SECP256R1())
            _write_key(key_path, key)
            _write_cert(cert_path, _build_server(name, ip, key, ca, ca_key))
    return cert_path, key_path
