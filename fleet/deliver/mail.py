"""Mail the report to the team: the HTML report as the body, CSV and JSON attached.

Relay settings come from the environment only (FLEET_SMTP_HOST, FLEET_SMTP_PORT,
FLEET_SMTP_STARTTLS, FLEET_SMTP_USER, FLEET_SMTP_PASSWORD, FLEET_MAIL_FROM), never
from the command line, where the password would show in ``ps`` and shell
history.  The password is not in any repr, message or exception this module
makes; a password is only sent over TLS, or to a relay on loopback.

Every failure becomes a ``DeliveryError`` whose text is one line naming the
relay and what went wrong.
"""

from __future__ import annotations

import base64
import os
import smtplib
import socket
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path

from fleet.changes import Delta, inventory_label
from fleet.deliver.history import format_delta
from fleet.diagnose import Diagnosis
from fleet.errors import ConfigError, FleetError
from fleet.model import RunResult
from fleet.render.csvreport import render_csv
from fleet.render.htmlreport import render_html
from fleet.text import safe_text
from fleet.truth import as_bool

_LOOPBACK = ("127.0.0.1", "::1", "localhost")


class DeliveryError(FleetError):
    """The report could not be mailed.  ``str()`` is one line, without secrets."""


@dataclass(frozen=True)
class MailSettings:
    """Where and how to send mail.  ``password`` is kept out of ``repr``."""

    host: str
    port: int = 25
    starttls: bool = True
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    mail_from: str = "fleet@localhost"
    timeout: float = 30.0

    @property
    def relay(self) -> str:
        return f"{self.host}:{self.port}"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> MailSettings:
        """Settings from FLEET_SMTP_* / FLEET_MAIL_FROM; ConfigError naming a bad variable."""
        env = os.environ if env is None else env
        host = env.get("FLEET_SMTP_HOST", "").strip()
        if not host:
            raise ConfigError("FLEET_SMTP_HOST is not set: no mail relay to send the report to")
        port_text = env.get("FLEET_SMTP_PORT", "25").strip()
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise ConfigError(f"FLEET_SMTP_PORT must be a port number, not {port_text!r}")
        try:
            starttls = as_bool(env.get("FLEET_SMTP_STARTTLS", "yes"), "FLEET_SMTP_STARTTLS")
        except ValueError as e:
            raise ConfigError(str(e)) from e
        return cls(
            host=host,
            port=int(port_text),
            starttls=starttls,
            user=env.get("FLEET_SMTP_USER") or None,
            password=env.get("FLEET_SMTP_PASSWORD") or None,
            mail_from=env.get("FLEET_MAIL_FROM") or f"fleet@{socket.getfqdn()}",
        )


def subject(run: RunResult, delta: Delta | None = None) -> str:
    """ "fleet prod: 3 failing (1 new), 1 unreachable", or "fleet prod: all ok".

    Counts are hosts; "new" counts failing hosts with a problem the previous
    run did not have.
    """
    label = safe_text(inventory_label(run.inventory), None)
    failing, unreachable = run.failed_hosts, run.unreachable_hosts
    parts = []
    if failing:
        new = f" ({len(set(failing) & delta.new_hosts())} new)" if delta is not None else ""
        parts.append(f"{len(failing)} failing{new}")
    if unreachable:
        parts.append(f"{len(unreachable)} unreachable")
    if run.interrupted:
        parts.append("interrupted")
    return f"fleet {label}: {', '.join(parts) or 'all ok'}"


def _plain_text(run: RunResult, diagnosis: Diagnosis, delta: Delta | None) -> str:
    """The text alternative: one line per title, fix step and change.  Each line is made
    printable on its own, so host text can neither add lines nor join them."""
    lines = [subject(run, delta), f"started {run.started}, finished {run.finished}", ""]
    for f in diagnosis.findings:
        lines += [f"* {f.title}", *(f"    {step}" for step in f.fix.splitlines()), ""]
    if not diagnosis.findings:
        lines.append("No problem found.")
    if delta is not None:
        lines += ["", *format_delta(delta).splitlines()]
    lines += ["", "The full report is the HTML part of this mail; CSV and JSON are attached."]
    return "\n".join(safe_text(line, None) for line in lines) + "\n"


def _attachment(files: Mapping[str, Path], name: str, fallback: str) -> bytes:
    path = files.get(name)
    if path is not None:
        try:
            return Path(path).read_bytes()
        except OSError as e:
            raise DeliveryError(f"cannot attach {path}: {e.strerror or e}") from e
    return fallback.encode("utf-8")


def _addresses(values: Sequence[str]) -> list[Address]:
    out = []
    for value in values:
        try:
            out.append(Address(addr_spec=value.strip()))
        except (ValueError, IndexError) as e:
            raise DeliveryError(f"not a mail address: {value!r}") from e
    return out


def build_message(
    run: RunResult,
    diagnosis: Diagnosis,
    files: Mapping[str, Path],
    mail_to: Sequence[str],
    settings: MailSettings,
    history_delta: Delta | None = None,
) -> EmailMessage:
    """The mail, ready to send: text and HTML alternatives, report.csv and report.json."""
    msg = EmailMessage()
    msg["Subject"] = subject(run, history_delta)
    msg["From"] = _addresses([settings.mail_from])[0]
    msg["To"] = _addresses(mail_to)
    msg["Date"] = formatdate(localtime=True)
    msg["Message-ID"] = make_msgid(domain="fleet.invalid")
    msg.set_content(_plain_text(run, diagnosis, history_delta))
    msg.add_alternative(render_html(run, diagnosis, history_delta), subtype="html")
    csv_data = _attachment(files, "csv", render_csv(run))
    json_data = _attachment(files, "json", run.to_json() + "\n")
    msg.add_attachment(csv_data, maintype="text", subtype="csv", filename="report.csv")
    msg.add_attachment(json_data, maintype="application", subtype="json", filename="report.json")
    return msg


def _redact(text: str, settings: MailSettings) -> str:
    """``text`` without the password, plain or in the base64 forms AUTH uses."""
    secret = settings.password
    if not secret:
        return text
    forms = {secret, base64.b64encode(secret.encode()).decode()}
    if settings.user:
        plain = f"\0{settings.user}\0{secret}".encode()
        forms.add(base64.b64encode(plain).decode())
    for form in sorted(forms, key=len, reverse=True):
        text = text.replace(form, "***")
    return text


def _reason(e: BaseException) -> str:
    """One line saying what went wrong, in the operator's words."""
    if isinstance(e, smtplib.SMTPAuthenticationError):
        return f"the relay refused the login: {e.smtp_code} {_decode(e.smtp_error)}"
    if isinstance(e, smtplib.SMTPRecipientsRefused):
        return "the relay refused every recipient: " + ", ".join(sorted(e.recipients))
    if isinstance(e, smtplib.SMTPResponseException):
        return f"the relay said {e.smtp_code} {_decode(e.smtp_error)}"
    if isinstance(e, smtplib.SMTPNotSupportedError):
        return f"the relay does not support it: {e}"
    if isinstance(e, ssl.SSLCertVerificationError):
        return f"the relay's TLS certificate was rejected: {e.verify_message}"
    if isinstance(e, ConnectionRefusedError):
        return "connection refused (is the relay running, is the port right?)"
    if isinstance(e, (socket.timeout, TimeoutError)):
        return "timed out"
    if isinstance(e, socket.gaierror):
        return f"cannot resolve the relay's name: {e.strerror}"
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    return f"{type(e).__name__}: {e}"


def _decode(raw: bytes | str) -> str:
    """A relay's reply as one printable line (it reaches stderr)."""
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    return " ".join(safe_text(text, 500).split())


def _open(settings: MailSettings) -> smtplib.SMTP:
    context = ssl.create_default_context()  # certificates checked, as for any TLS
    if settings.port == 465:  # implicit TLS ("submissions")
        return smtplib.SMTP_SSL(
            settings.host, settings.port, timeout=settings.timeout, context=context
        )
    smtp = smtplib.SMTP(settings.host, settings.port, timeout=settings.timeout)
    if settings.starttls:
        smtp.starttls(context=context)
    return smtp


def _check_tls_for_password(settings: MailSettings) -> None:
    encrypted = settings.starttls or settings.port == 465
    if settings.user and not encrypted and settings.host not in _LOOPBACK:
        raise DeliveryError(
            f"refusing to send the SMTP password to {settings.relay} without TLS"
            " (set FLEET_SMTP_STARTTLS=yes)"
        )


def check_mail_settings(settings: MailSettings, mail_to: Sequence[str]) -> None:
    """Everything about the mail that can be wrong before the audit: ConfigError (exit 5)."""
    try:
        _addresses([*mail_to, settings.mail_from])
        _check_tls_for_password(settings)
    except DeliveryError as exc:
        raise ConfigError(f"--mail-to: {exc}") from exc


def send_report(
    run: RunResult,
    diagnosis: Diagnosis,
    files: Mapping[str, Path],
    mail_to: list[str],
    settings: MailSettings,
    history_delta: Delta | None = None,
) -> None:
    """Mail the report to ``mail_to``; DeliveryError if any recipient does not get it."""
    if not mail_to:
        raise DeliveryError("no recipient to mail the report to")
    _check_tls_for_password(settings)
    msg = build_message(run, diagnosis, files, mail_to, settings, history_delta)
    try:
        with _open(settings) as smtp:
            if settings.user:
                smtp.login(settings.user, settings.password or "")
            refused = smtp.send_message(msg)
    except (smtplib.SMTPException, OSError) as e:
        reason = _redact(_reason(e), settings)
        raise DeliveryError(f"cannot mail the report via {settings.relay}: {reason}") from e
    if refused:
        names = ", ".join(sorted(refused))
        raise DeliveryError(f"the relay {settings.relay} refused some recipients: {names}")
