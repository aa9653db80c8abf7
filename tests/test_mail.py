"""Mailing the report through a real SMTP server (aiosmtpd) on 127.0.0.1."""

from __future__ import annotations

import base64
import datetime
import email
import email.policy
import io
import ipaddress
import logging
import re
import shutil
import socket
import ssl
import subprocess
import time
import zipfile
from dataclasses import asdict
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from fleet import causes
from fleet.changes import Change, Delta, diff
from fleet.checks.facts import PingResult, SmtpProbe
from fleet.deliver.mail import (
    DeliveryError,
    MailSettings,
    build_message,
    send_report,
    subject,
)
from fleet.diagnose import diagnose
from fleet.errors import ConfigError
from fleet.model import CheckResult, HostResult, RunResult, Status
from fleet.render import write_reports
from fleet.render.digest import digest, digest_html, digest_text
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


def attachments(msg) -> dict[str, bytes]:
    """Each zip attachment's name -> the one file it holds, unzipped."""
    out = {}
    for part in msg.iter_attachments():
        assert part.get_content_type() == "application/zip"
        with zipfile.ZipFile(io.BytesIO(part.get_content())) as archive:
            (name,) = archive.namelist()
            assert part.get_filename() == f"{name}.zip"
            out[name] = archive.read(name)
    return out


def test_report_arrives_as_a_digest_with_the_full_report_zipped(relay, run, tmp_path):
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
    unzipped = attachments(msg)
    assert set(unzipped) == {"report.html", "report.csv", "report.json"}
    for fmt, path in files.items():
        assert unzipped[f"report.{fmt}"] == path.read_bytes()
    assert RunResult.from_json(unzipped["report.json"]).hosts[0].host == "mx1"


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
    from fleet.render.digest import ReportPlace

    def night(summary: str) -> RunResult:
        results = (
            CheckResult("mx1", "smtp", Status.FAIL, summary, target="mx2"),
            CheckResult("mx1", "ping", Status.FAIL, "0/3\nreplies\x1b[2J", target="mx3"),
        )
        host = HostResult("mx1", "198.18.0.11", "ssh", "unix", results)
        return RunResult("inventories/prod", "pb.yml", "s", "f", (host,))

    run = night("refused\x07\x00\u202e")
    empty = RunResult("inventories/prod", "pb.yml", "s", "f", ())
    text = digest_text(digest(run, diagnose(run), diff(empty, run), ReportPlace()))
    assert "\x07" not in text and "\x1b" not in text and "\u202e" not in text
    lines = text.splitlines()
    # the delta's heading and each change stay lines of their own
    assert "new (2):" in lines and "resolved (0):" in lines
    assert any(line.startswith("  mx1 ping -> mx3") and "replies" in line for line in lines)


# --------------------------------------------------------------------------- a big fleet

BIG = 1005


def big_run(broken: int = 0) -> RunResult:
    """A generated 1,005-host audit: each host pings and greets 4 peers; every 10th host's
    mail service is down (shifted by ``broken`` for another night), every 97th host is
    down, every 41st has an APIPA address.  Host names carry hostile text now and then."""
    names = [f"mx{i:04d}.site{i % 7}.corp.example" for i in range(BIG)]
    names[5] = "mx0005<script>alert(1)</script>\x1b[2J"
    mail_down = {n for i, n in enumerate(names) if (i + broken) % 10 == 0}
    down = {n for i, n in enumerate(names) if i % 97 == 3}
    hosts = []
    for i, name in enumerate(names):
        address = f"198.18.{i // 250}.{i % 250 + 1}"
        if name in down:
            result = CheckResult(
                name, "binding", Status.UNREACHABLE, f"timed out connecting to {address}:22",
                cause=causes.CONNECT_TIMEOUT,
            )  # fmt: skip
            hosts.append(HostResult(name, address, "ssh", "unix", (result,)))
            continue
        apipa = i % 41 == 7
        results = [
            CheckResult(name, "binding", Status.OK, "TCP/IP bound"),
            CheckResult(
                name, "ipconfig", Status.FAIL if apipa else Status.OK,
                "APIPA address 169.254.3.4: DHCP failed" if apipa else f"{address}/22",
                cause=causes.APIPA if apipa else "",
            ),
        ]  # fmt: skip
        for peer in (names[(i + k) % BIG] for k in (1, 2, 3, 4)):
            reply = 0 if peer in down or apipa else 3
            ping = PingResult(peer, 3, reply, 0.3, 0.4, 0.6) if reply else PingResult(peer, 3, 0)
            results.append(
                CheckResult(
                    name, "ping", Status.OK if reply else Status.FAIL, f"{reply}/3 replies",
                    target=peer, facts=asdict(ping), cause="" if reply else causes.NO_REPLY,
                    evidence=f"PING {peer}\n3 packets transmitted, {reply} received",
                )
            )  # fmt: skip
            refused = peer in mail_down
            outcome = "timeout" if not reply else "refused" if refused else "ok"
            greeting = () if outcome != "ok" else (f"220 {peer} ESMTP Postfix",)
            probe = SmtpProbe(
                peer,
                25,
                outcome,
                greeting_code=220 if greeting else None,
                greeting=greeting,
                greeting_ms=12.0 if greeting else None,
            )
            results.append(
                CheckResult(
                    name, "smtp", Status.OK if outcome == "ok" else Status.FAIL,
                    greeting[0] if greeting else f"port 25 {outcome}", target=peer,
                    facts=asdict(probe), cause={"ok": "", "refused": causes.REFUSED}.get(
                        outcome, causes.TIMEOUT),
                )
            )  # fmt: skip
        for port in (22, 25):
            is_open = not (port == 25 and name in mail_down)
            results.append(
                CheckResult(
                    name, "reach", Status.OK if is_open else Status.FAIL,
                    f"port {port} {'open' if is_open else 'refused'}", target=str(port),
                    cause="" if is_open else causes.REFUSED,
                )
            )  # fmt: skip
        hosts.append(HostResult(name, address, "ssh", "unix", tuple(results), 3.0))
    return RunResult("inventories/prod", "pb.yml", "2026-12-03T02:30:00+00:00",
                     "2026-12-03T02:41:00+00:00", tuple(hosts))  # fmt: skip


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    """(run, diagnosis, delta, report files) of the big fleet, the night after another."""
    run = big_run()
    delta = diff(big_run(broken=3), run)
    outdir = tmp_path_factory.mktemp("reports") / "prod" / "20261203T023000Z"
    diagnosis = diagnose(run)
    files = write_reports(run, outdir, ["json", "csv", "html"], diagnosis=diagnosis, delta=delta)
    return run, diagnosis, delta, files


def test_a_thousand_host_mail_is_a_small_digest_with_the_report_zipped(big):
    run, diagnosis, delta, files = big
    msg = build_message(run, diagnosis, files, ["ops@lab.example"], settings(25), delta)
    whole = len(msg.as_bytes())
    full = sum(p.stat().st_size for p in files.values())
    html = msg.get_body(("html",)).get_content().encode()
    text = msg.get_body(("plain",)).get_content().encode()
    assert len(html) < 60_000 and len(text) < 30_000  # Gmail clips a body at ~100 kB
    assert whole < 10_000_000 and whole < full / 3  # zipped: a fraction of the files
    assert {n: len(d) for n, d in attachments(msg).items()} == {
        p.name: p.stat().st_size for p in files.values()
    }
    assert full > 5_000_000  # the report itself is big: the digest is what keeps it small
    body = msg.get_body(("html",)).get_content()
    assert "Mail service" in body and "Host down" in body and "Local TCP/IP stack" in body
    assert re.search(r"new \((\d+)\)", body) and re.search(r"resolved \((\d+)\)", body)
    assert "more in the full report" in body and "Worst hosts" in body


def test_a_digest_shows_host_text_escaped_and_without_controls(big):
    run, diagnosis, delta, _ = big
    msg = build_message(run, diagnosis, {}, ["ops@lab.example"], settings(25), delta)
    html = msg.get_body(("html",)).get_content()
    text = msg.get_body(("plain",)).get_content()
    assert "<script" not in html.lower() and "&lt;script&gt;" in html
    assert "\x1b" not in html and "\x1b" not in text
    # for Outlook's Word engine and Gmail: inline styles, no stylesheet, no grid or flex
    assert "<style" not in html and "flex" not in html and "grid" not in html
    assert not re.search(r"\son\w+=", html)
    from fleet.render.digest import ReportPlace

    odd = ReportPlace(("a<b>.zip",), "/reports/\x1b[2J<b>x", False, "note\u202e<i>")
    page = digest_html(digest(run, diagnosis, delta, odd))
    assert "\x1b" not in page and "\u202e" not in page and "<b>" not in page and "<i>" not in page


def test_over_the_limit_the_mail_says_where_the_report_lies(big):
    run, diagnosis, delta, files = big
    small = settings(25, max_bytes=120_000)
    msg = build_message(run, diagnosis, files, ["ops@lab.example"], small, delta)
    assert len(msg.as_bytes()) <= 120_000
    assert len(attachments(msg)) < 3
    text = msg.get_body(("plain",)).get_content()
    assert "Not attached: " in text and "limit of 120 kB" in text
    assert str(files["html"].parent) in text
    linked = settings(25, max_bytes=80_000, report_url="https://fleet.corp.example/reports")
    msg = build_message(run, diagnosis, files, ["ops@lab.example"], linked, delta)
    assert attachments(msg) == {}
    url = "https://fleet.corp.example/reports/prod/20261203T023000Z/report.html"
    assert url in msg.get_body(("plain",)).get_content()
    assert f'href="{url}"' in msg.get_body(("html",)).get_content()


def test_mail_size_settings_come_from_the_environment():
    env = {"FLEET_SMTP_HOST": "r", "FLEET_MAIL_MAX_BYTES": "25M"}
    env["FLEET_REPORT_URL"] = "https://fleet.corp.example/reports/"
    s = MailSettings.from_env(env)
    assert (s.max_bytes, s.report_url) == (25_000_000, "https://fleet.corp.example/reports")
    assert MailSettings.from_env({"FLEET_SMTP_HOST": "r"}).max_bytes == 10_000_000
    for name, bad in (("FLEET_MAIL_MAX_BYTES", "ten"), ("FLEET_REPORT_URL", "javascript:x")):
        with pytest.raises(ConfigError, match=name):
            MailSettings.from_env({"FLEET_SMTP_HOST": "r", name: bad})


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# Test-only: reports how wide the page is; the digest itself has no script.
_MEASURE = (
    "<script>document.body.setAttribute('data-overflow', "
    "String(document.documentElement.scrollWidth - window.innerWidth))</script>"
)


def overflow(page: str, width: int, workdir: Path) -> int:
    """How many pixels ``page`` is wider than a ``width``-pixel window in headless Chromium."""
    path = workdir / f"page-{width}.html"
    path.write_text(page.replace("</body>", _MEASURE + "</body>"), encoding="utf-8")
    proc = subprocess.run(
        [
            CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--no-first-run", f"--user-data-dir={workdir / 'profile'}", "--hide-scrollbars",
            f"--window-size={width},900", "--dump-dom", path.as_uri(),
        ],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    found = re.search(r'data-overflow="(-?\d+)"', proc.stdout)
    assert found, proc.stdout[-500:]
    return int(found.group(1))


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (apt-get install chromium)")
@pytest.mark.parametrize("width", [390, 1280])
def test_digest_fits_a_phone_and_a_desktop_without_scrolling_sideways(big, width, tmp_path):
    wide = "<!DOCTYPE html><body><div style='width:2000px'>x</div></body>"
    assert overflow(wide, width, tmp_path) > 0  # the measure sees an overflow when there is one
    run, diagnosis, delta, files = big
    place = build_message(run, diagnosis, files, ["o@x.example"], settings(25, max_bytes=1))
    text = place.get_body(("plain",)).get_content()
    assert "Not attached" in text  # the longest digest: the note and the path
    from fleet.render.digest import ReportPlace

    where = ReportPlace((), str(files["html"].parent) + "/" + "x" * 120, False, "Not attached")
    page = digest_html(digest(run, diagnosis, delta, where))
    assert overflow(page, width, tmp_path) <= 0
