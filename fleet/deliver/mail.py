"""Mail the report to the team: a digest as the body, the full report zipped alongside.

The body is ``fleet.render.digest`` (a few tens of KB whatever the fleet's size);
report.html, report.csv and report.json travel as zip attachments while the whole
message stays under FLEET_MAIL_MAX_BYTES (10 MB, Exchange's default limit); what
does not fit is left out and the mail says where it lies (the report's path, or
its URL under FLEET_REPORT_URL).

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
import io
import os
import smtplib
import socket
import ssl
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from urllib.parse import quote, urlsplit

from fleet.changes import Delta
from fleet.diagnose import Diagnosis
from fleet.errors import ConfigError, FleetError
from fleet.model import RunResult
from fleet.render.csvreport import render_csv
from fleet.render.digest import ReportPlace, digest, digest_html, digest_text, subject
from fleet.render.htmlreport import render_html
from fleet.text import safe_text
from fleet.truth import as_bool

__all__ = [
    "DeliveryError",
    "MailSettings",
    "build_message",
    "check_mail_settings",
    "send_report",
    "subject",
]

DEFAULT_MAX_BYTES = 10_000_000  # an on-premises Exchange organisation's default message limit

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
    max_bytes: int = DEFAULT_MAX_BYTES  # the whole message, attachments encoded
    report_url: str = ""  # the URL the report directory is served at, "" for none

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
            max_bytes=_max_bytes(env.get("FLEET_MAIL_MAX_BYTES", "").strip()),
            report_url=_report_url(env.get("FLEET_REPORT_URL", "").strip()),
        )


def _max_bytes(text: str) -> int:
    """FLEET_MAIL_MAX_BYTES: bytes, or with a k/M suffix (decimal, as relays count)."""
    if not text:
        return DEFAULT_MAX_BYTES
    number, unit = (text[:-1], text[-1].lower()) if text[-1:].isalpha() else (text, "")
    scale = {"": 1, "k": 1_000, "m": 1_000_000}.get(unit)
    if scale is None or not number.isdigit() or int(number) == 0:
        raise ConfigError(
            f"FLEET_MAIL_MAX_BYTES must be a size such as 10000000, 500k or 10M, not {text!r}"
        )
    return int(number) * scale


def _report_url(text: str) -> str:
    parts = urlsplit(text)
    if text and (parts.scheme not in ("http", "https") or not parts.netloc):
        raise ConfigError(f"FLEET_REPORT_URL must be an http(s) URL, not {safe_text(text, 80)!r}")
    return text.rstrip("/")


# name in the report directory, attachment name, how to make it when no file was written
_REPORTS: tuple[tuple[str, str, Callable[[RunResult, Diagnosis, Delta | None], str]], ...] = (
    ("html", "report.html", render_html),
    ("csv", "report.csv", lambda run, diagnosis, delta: render_csv(run)),
    ("json", "report.json", lambda run, diagnosis, delta: run.to_json() + "\n"),
)


def _zipped(name: str, data: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as archive:
        archive.writestr(name, data)
    return buffer.getvalue()


def _read(path: Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise DeliveryError(f"cannot attach {path}: {e.strerror or e}") from e


def _location(files: Mapping[str, Path], settings: MailSettings) -> tuple[str, bool]:
    """Where the full report lies: its URL under FLEET_REPORT_URL (the report directory's
    ``<inventory>/<timestamp>/report.html``), else its path; ("", False) when not written."""
    path = files.get("html") or next(iter(files.values()), None)
    if path is None:
        return "", False
    if settings.report_url:
        tail = "/".join(quote(part) for part in Path(path).parts[-3:])
        return f"{settings.report_url}/{tail}", True
    return str(Path(path).parent), False


def _size(n: int) -> str:
    return f"{n / 1_000_000:.1f} MB" if n >= 1_000_000 else f"{max(1, round(n / 1000))} kB"


def _compose(
    run: RunResult,
    diagnosis: Diagnosis,
    delta: Delta | None,
    head: Callable[[EmailMessage], None],
    place: ReportPlace,
    zips: Sequence[tuple[str, bytes]],
) -> EmailMessage:
    msg = EmailMessage()
    head(msg)
    view = digest(run, diagnosis, delta, place)
    msg.set_content(digest_text(view))
    msg.add_alternative(digest_html(view), subtype="html")
    for name, data in zips:
        msg.add_attachment(data, maintype="application", subtype="zip", filename=name)
    return msg


def _fitted(
    run: RunResult,
    diagnosis: Diagnosis,
    delta: Delta | None,
    head: Callable[[EmailMessage], None],
    zips: Sequence[tuple[str, bytes]],
    where: tuple[str, bool],
    limit: int,
) -> EmailMessage:
    """The message with as many of ``zips`` (in order) as keep it under ``limit``; the
    digest says what was left out and where the whole report lies."""
    for keep in range(len(zips), -1, -1):
        attached, left = zips[:keep], zips[keep:]
        note = ""
        if left:
            names = ", ".join(name for name, _ in left)
            lies = ("the link below" if where[1] else "the directory below") if where[0] else ""
            lies = f"it lies at {lies}" if lies else "it could not be written to disk"
            note = (
                f"Not attached: {names} ({_size(sum(len(d) for _, d in left))} zipped); "
                f"the mail would pass its limit of {_size(limit)}; {lies}."
            )
        place = ReportPlace(tuple(name for name, _ in attached), where[0], where[1], note)
        msg = _compose(run, diagnosis, delta, head, place, attached)
        if keep == 0 or len(msg.as_bytes()) <= limit:
            return msg
    raise AssertionError("unreachable")


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
    """The mail, ready to send: the digest as text and HTML alternatives, and the full
    report (HTML, CSV, JSON) zipped, each while the message stays under the limit."""
    sender, recipients = _addresses([settings.mail_from])[0], _addresses(mail_to)

    def head(msg: EmailMessage) -> None:
        msg["Subject"] = subject(run, history_delta)
        msg["From"] = sender
        msg["To"] = recipients
        msg["Date"] = formatdate(localtime=True)
        msg["Message-ID"] = make_msgid(domain="fleet.invalid")

    zips = []
    for fmt, name, render in _REPORTS:
        path = files.get(fmt)
        data = _read(path) if path else render(run, diagnosis, history_delta).encode("utf-8")
        zips.append((f"{name}.zip", _zipped(name, data)))
    where = _location(files, settings)
    return _fitted(run, diagnosis, history_delta, head, zips, where, settings.max_bytes)


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
