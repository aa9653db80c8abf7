"""The lab's SMTP server: aiosmtpd on port 25, greeting as a real MTA would.

Run inside a host's namespace::

    ip netns exec fleet-mx1 python -m tests.lab.smtpd --address 198.18.0.11 --name mx1

``--greeting multiline`` sends ``220-`` continuation lines first (as Exchange
and some postfix set-ups do); ``--greeting not-ready`` answers ``421 4.3.2``
and closes, as an MTA does when overloaded or shutting down.  Healthy servers
offer STARTTLS with a throw-away self-signed certificate.  No mail is kept:
DATA is refused.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import ssl
import tempfile
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

from tests.lab.topology import Smtp

NOT_READY = "421 4.3.2 Service not available"


class LabSMTP(SMTP):
    """aiosmtpd's server with the greeting replaced by ``greeting`` lines."""

    def __init__(self, handler: Any, *, greeting: tuple[str, ...], close: bool, **kw: Any):
        super().__init__(handler, **kw)
        self._greeting = greeting
        self._close_after_greeting = close
        self._greeted = False

    async def push(self, status: Any) -> None:
        # aiosmtpd pushes its one-line "220 host ident" first; swap it for ours.
        if self._greeted:
            await super().push(status)
            return
        self._greeted = True
        for line in self._greeting:
            await super().push(line)
        if self._close_after_greeting and self.transport is not None:
            self.transport.close()


class RefuseMail:
    """The lab receives no mail: audits never send DATA, and nothing else should."""

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        return "554 5.7.1 the fleet lab keeps no mail"


def greeting_lines(mode: Smtp, name: str) -> tuple[str, ...]:
    if mode is Smtp.NOT_READY:
        return (NOT_READY,)
    if mode is Smtp.MULTILINE:
        return (
            f"220-{name}.lab ESMTP fleet lab",
            "220-Unauthorised use is monitored.",
            f"220 {name}.lab ready",
        )
    return (f"220 {name}.lab ESMTP fleet lab",)


def self_signed(name: str, directory: Path) -> ssl.SSLContext:
    """A TLS context with a fresh self-signed certificate (STARTTLS is offered, not trusted)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{name}.lab")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=365))  # not "expiring soon"
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_path, key_path)
    return context


async def serve(address: str, port: int, name: str, mode: Smtp) -> None:
    tls = None
    if mode is not Smtp.NOT_READY:
        with tempfile.TemporaryDirectory() as tmp:
            tls = self_signed(name, Path(tmp))
    lines, close = greeting_lines(mode, name), mode is Smtp.NOT_READY

    def factory() -> LabSMTP:
        return LabSMTP(
            RefuseMail(),
            greeting=lines,
            close=close,
            hostname=f"{name}.lab",
            tls_context=tls,
            require_starttls=False,
        )

    loop = asyncio.get_running_loop()
    server = await loop.create_server(factory, host=address, port=port)
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.lab.smtpd", description=__doc__)
    parser.add_argument("--address", required=True)
    parser.add_argument("--port", type=int, default=25)
    parser.add_argument("--name", required=True, help="the host name used in the greeting")
    parser.add_argument("--greeting", choices=[m.value for m in Smtp], default=Smtp.READY.value)
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.address, args.port, args.name, Smtp(args.greeting)))


if __name__ == "__main__":
    main()
