"""Mailing the report through a real SMTP server (aiosmtpd) on 127.0.0.1."""

from __future__ import annotations

import base64
import datetime
import email
import email.policy
import ipaddress
import logging
import socket
import ssl
import time

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from fleet.changes import Change, Delta
from fleet.deliver.mail import (
    DeliveryError,
    MailSettings,
    build_message,
    send_report,
    subject,
)
from fleet.diagnose import diagnose
from fleet.errors import ConfigError
from fleet.model import RunResult
from fleet.render import write_reports
from tests.lab.sample import sample_run

PASSWORD = "s3cret-Pa55"


class Inbox:
    """aiosmtpd handler that keeps every message it accepts."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], bytes]] = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 OK"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def only(user: str, password: str):
    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = isinstance(auth_data, LoginPassword) and auth_data == (
            user.encode(),
            password.encode(),
        )
        return AuthResult(success=ok, handled=False)  # let aiosmtpd answer 535

    return authenticator


@pytest.fixture
def relay():
    """Start an aiosmtpd relay; yields (inbox, port).  Extra SMTP options via the factory."""
    controllers = []

    def start(**smtp_options):
        inbox = Inbox()
        port = free_port()
        controller = Controller(inbox, hostname="127.0.0.1", port=port, **smtp_options)
        controller.start()
        controllers.append(controller)
        return inbox, port

    yield start
    for c in controllers:
        c.stop()


def settings(port: int, **kw) -> MailSettings:
    defaults = {"starttls": False, "mail_from": "fleet@lab.example", "timeout": 5.0}
    return MailSettings(host="127.0.0.1", port=port, **(defaults | kw))


@pytest.fixture(scope="module")
def run() -> RunResult:
    return sample_run("inventories/prod")


def test_report_arrives_with_html_body_and_csv_and_json_attached(relay, run, tmp_path):
    inbox, port = relay()
    files = write_reports(run, tmp_path, ["json", "csv", "html"])
    send_report(run, diagnose(run), files, ["ops@lab.example"], settings(port))
    ((sender, rcpts, raw),) = inbox.messages
    assert (sender, rcpts) == ("fleet@lab.example", ["ops@lab.example"])
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert msg["Subject"] == "fleet prod: 4 failing, 2 unreachable"
    html = msg.get_body(("html",)).get_content()
    assert "mx3 answers nobody" in html and "&lt;script&gt;" in html
    assert "mx3 answers nobody" in msg.get_body(("plain",)).get_content()
    attached = {part.get_filename(): part for part in msg.iter_attachments()}
    assert set(attached) == {"report.csv", "report.json"}
    assert attached["report.csv"].get_content() == files["csv"].read_bytes().decode("utf-8")
    assert RunResult.from_json(attached["report.json"].get_content()).hosts[0].host == "mx1"


def test_relay_that_accepts_the_login_delivers(relay, run):
    inbox, port = relay(authenticator=only("fleet", PASSWORD), auth_require_tls=False)
    s = settings(port, user="fleet", password=PASSWORD)
    send_report(run, diagnose(run), {}, ["ops@lab.example"], s)
    assert len(inbox.messages) == 1


def test_relay_that_refuses_the_login_is_a_delivery_error_without_the_password(relay, run, caplog):
    inbox, port = relay(authenticator=only("fleet", "another"), auth_require_tls=False)
    s = settings(port, user="fleet", password=PASSWORD)
    caplog.set_level(logging.DEBUG)
    with pytest.raises(DeliveryError) as caught:
        send_report(run, diagnose(run), {}, ["ops@lab.example"], s)
    message = str(caught.value)
    assert message.startswith(f"cannot mail the report via 127.0.0.1:{port}: ")
    assert "refused the login: 535" in message
    assert "\n" not in message
    assert inbox.messages == []
    b64 = base64.b64encode(f"\0fleet\0{PASSWORD}".encode()).decode()
    for text in (message, repr(caught.value), repr(s), str(s), caplog.text):
        assert PASSWORD not in text and b64 not in text


def test_relay_that_is_down_fails_quickly(run):
    port = free_port()  # nothing listens there any more
    started = time.monotonic()
    with pytest.raises(DeliveryError, match="connection refused"):
        send_report(run, diagnose(run), {}, ["ops@lab.example"], settings(port))
    assert time.monotonic() - started < 2.0


def test_starttls_against_a_relay_without_it_is_refused(relay, run):
    inbox, port = relay()
    with pytest.raises(DeliveryError, match="STARTTLS"):
        send_report(run, diagnose(run), {}, ["ops@lab.example"], settings(port, starttls=True))
    assert inbox.messages == []


def test_password_is_never_sent_in_clear_to_a_remote_relay(run):
    remote = MailSettings(
        host="198.18.0.250", port=25, starttls=False, user="fleet", password=PASSWORD, timeout=1
    )
    with pytest.raises(DeliveryError, match="without TLS") as caught:
        send_report(run, diagnose(run), {}, ["ops@lab.example"], remote)
    assert PASSWORD not in str(caught.value)


def test_bad_recipient_is_a_delivery_error(run):
    with pytest.raises(DeliveryError, match="not a mail address"):
        build_message(run, diagnose(run), {}, ["ops@x\r\nBcc: evil@x"], settings(25))


def test_settings_come_from_the_environment():
    env = {
        "FLEET_SMTP_HOST": "relay.lab.example",
        "FLEET_SMTP_PORT": "587",
        "FLEET_SMTP_STARTTLS": "yes",
        "FLEET_SMTP_USER": "fleet",
        "FLEET_SMTP_PASSWORD": PASSWORD,
        "FLEET_MAIL_FROM": "fleet@lab.example",
    }
    s = MailSettings.from_env(env)
    assert (s.host, s.port, s.starttls, s.user, s.password) == (
        "relay.lab.example",
        587,
        True,
        "fleet",
        PASSWORD,
    )
    assert PASSWORD not in repr(s)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "FLEET_SMTP_HOST is not set"),
        ({"FLEET_SMTP_HOST": "r", "FLEET_SMTP_PORT": "smtp"}, "FLEET_SMTP_PORT"),
        ({"FLEET_SMTP_HOST": "r", "FLEET_SMTP_STARTTLS": "maybe"}, "FLEET_SMTP_STARTTLS"),
    ],
)
def test_bad_settings_name_the_variable(env, message):
    with pytest.raises(ConfigError, match=message) as caught:
        MailSettings.from_env(env)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(("word", "starttls"), [("y", True), ("N", False), ("off", False)])
def test_starttls_setting_reads_the_same_words_as_the_inventory(word, starttls):
    settings = MailSettings.from_env({"FLEET_SMTP_HOST": "r", "FLEET_SMTP_STARTTLS": word})
    assert settings.starttls is starttls


def test_subject_counts_failing_new_and_unreachable_hosts(run):
    delta = Delta(
        new=(Change("mx2", "smtp", "mx1", "fail", "refused", run.started),),
        resolved=(),
        still_open=(),
        previous_started="2024-04-30T02:00:00Z",
    )
    assert subject(run, delta) == "fleet prod: 4 failing (1 new), 2 unreachable"
    healthy = RunResult("inventories/prod.ini", "pb", "s", "f", ())
    assert subject(healthy) == "fleet prod: all ok"


def test_mail_shows_the_delta_when_given(run):
    delta = Delta(
        new=(Change("mx2", "smtp", "mx1", "fail", "port 25 refused", run.started),),
        resolved=(Change("mx9", "ping", "mx1", "fail", "0/3", "2024-04-20T02:00:00Z"),),
        still_open=(),
        previous_started="2024-04-30T02:00:00Z",
    )
    msg = build_message(run, diagnose(run), {}, ["ops@lab.example"], settings(25), delta)
    text = msg.get_body(("plain",)).get_content()
    assert "new (1):" in text and "resolved (1):" in text
    assert "Since the previous run" in msg.get_body(("html",)).get_content()


# --------------------------------------------------------------------------- STARTTLS


def _tls_files(tmp_path):
    """A CA and a certificate for 127.0.0.1 signed by it; returns (ca.pem, server context)."""
    now = datetime.datetime.now(datetime.timezone.utc)
    valid = {"not_valid_before": now - datetime.timedelta(hours=1)}
    valid["not_valid_after"] = now + datetime.timedelta(hours=1)

    def name(cn):
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder(
            subject_name=name("fleet test CA"), issuer_name=name("fleet test CA")
        )
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(valid["not_valid_before"])
        .not_valid_after(valid["not_valid_after"])
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    san = x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    cert = (
        x509.CertificateBuilder(subject_name=name("relay"), issuer_name=ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(valid["not_valid_before"])
        .not_valid_after(valid["not_valid_after"])
        .add_extension(san, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    (tmp_path / "ca.pem").write_bytes(ca.public_bytes(pem))
    (tmp_path / "relay.pem").write_bytes(cert.public_bytes(pem))
    (tmp_path / "relay.key").write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tmp_path / "relay.pem", tmp_path / "relay.key")
    return tmp_path / "ca.pem", context


def test_starttls_relay_with_an_untrusted_certificate_is_refused(relay, run, tmp_path):
    _, context = _tls_files(tmp_path)
    inbox, port = relay(tls_context=context, require_starttls=True)
    with pytest.raises(DeliveryError, match="TLS certificate was rejected"):
        send_report(run, diagnose(run), {}, ["ops@lab.example"], settings(port, starttls=True))
    assert inbox.messages == []


def test_starttls_relay_with_a_trusted_certificate_gets_the_login_and_the_mail(
    relay, run, tmp_path, monkeypatch
):
    ca, context = _tls_files(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(ca))  # how an operator trusts an internal CA
    inbox, port = relay(
        tls_context=context, require_starttls=True, authenticator=only("fleet", PASSWORD)
    )
    s = settings(port, starttls=True, user="fleet", password=PASSWORD)
    send_report(run, diagnose(run), {}, ["ops@lab.example"], s)
    assert len(inbox.messages) == 1


def test_plain_text_mail_keeps_its_lines_and_loses_host_controls():
    from fleet.changes import diff
    from fleet.deliver.mail import _plain_text
    from fleet.diagnose import diagnose
    from fleet.model import CheckResult, HostResult, RunResult, Status

    def night(summary: str) -> RunResult:
        results = (
            CheckResult("mx1", "smtp", Status.FAIL, summary, target="mx2"),
            CheckResult("mx1", "ping", Status.FAIL, "0/3\nreplies\x1b[2J", target="mx3"),
        )
        host = HostResult("mx1", "198.18.0.11", "ssh", "unix", results)
        return RunResult("inventories/prod", "pb.yml", "s", "f", (host,))

    run = night("refused\x07\x00\u202e")
    empty = RunResult("inventories/prod", "pb.yml", "s", "f", ())
    text = _plain_text(run, diagnose(run), diff(empty, run))
    assert "\x07" not in text and "\x1b" not in text and "\u202e" not in text
    lines = text.splitlines()
    # the delta's heading and each change stay lines of their own
    assert "new (2):" in lines and "resolved (0):" in lines
    assert any(line.startswith("  mx1 ping -> mx3") and "replies" in line for line in lines)
