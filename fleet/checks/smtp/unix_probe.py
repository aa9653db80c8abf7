"""A polite SMTP probe, run ON the audited host: its TEXT is sent with ``python3 -S -c``.

Usage: python3 -S -c "$PROGRAM" TARGET PORT TIMEOUT HELO [GREETING_TIMEOUT [DEADLINE]]

It resolves TARGET, connects within TIMEOUT, waits up to GREETING_TIMEOUT for
the whole greeting (multi-line 220-... then 220 ...; postscreen and exim may
be slow on purpose) before saying anything, sends EHLO, reads until a "250 "
line and, when STARTTLS is offered, does the TLS handshake and reads the
certificate of the server; then QUIT, never DATA.  Every read has its own timeout
AND the whole probe has DEADLINE seconds: a server dripping a byte a second
cannot hold it longer.  It prints ONE JSON object whose keys are fields of
fleet.checks.facts.SmtpProbe.

Parameters arrive as argv, never spliced into this code.  The program keeps to
the standard library and to Python 3.4 syntax (no f-strings) so old hosts run
it, and holds no single quote so that shell quoting stays short.

Every audited host pays for its start-up, so it imports only built-in
modules: the C ``_socket`` (``socket.py`` pulls in enum and selectors), its
own few lines of JSON writing (``json`` pulls in ``re``), and an ASCII name
resolved as bytes (a str loads the idna codec, and ``re`` with it).  ``ssl``
is imported only when the server offers STARTTLS, and the certificate is read
from its DER bytes here (``getpeercert()`` says nothing when unverified).
"""

import _socket as socket
import errno
import sys
import time

MAX_LINE = 1024  # RFC 5321 allows 512 per reply line; be lenient
MAX_LINES = 100  # a reply longer than this is not a mail server talking

UNREACHABLE = (errno.EHOSTUNREACH, errno.ENETUNREACH, getattr(errno, "EHOSTDOWN", -1))
# socket.timeout is TimeoutError only from Python 3.10; older hosts raise _socket.timeout.
TIMEOUT = getattr(socket, "timeout", OSError)
QUOTE, BACKSLASH = chr(34), chr(92)  # spelled so for the formatter: no single quote here
# The name parts a certificate subject is shown with (OID 2.5.4.x -> short name).
NAME_PARTS = {3: "CN", 6: "C", 7: "L", 8: "ST", 10: "O", 11: "OU"}


class Outcome(Exception):
    """Ends the conversation with an outcome for the report."""

    def __init__(self, outcome, error):
        Exception.__init__(self, error)
        self.outcome = outcome
        self.error = error


class Clock:
    """The overall deadline of the probe, and the end of each stage within it."""

    def __init__(self, total):
        self.end = time.time() + total

    def until(self, seconds):
        """The end of a stage of ``seconds``, never past the overall deadline."""
        return min(time.time() + seconds, self.end)


class Lines:
    """Reply lines from a socket, at most MAX_LINE bytes each, each read by ``until``."""

    def __init__(self, sock):
        self.sock = sock
        self.buffer = b""

    def readline(self, until):
        while True:
            end = self.buffer.find(b"\n", 0, MAX_LINE)
            if end >= 0 or len(self.buffer) >= MAX_LINE:
                cut = end + 1 if end >= 0 else MAX_LINE
                line, self.buffer = self.buffer[:cut], self.buffer[cut:]
                return line
            left = until - time.time()
            if left <= 0:  # a slow drip resets every read timeout, never this one
                raise TIMEOUT("deadline")
            self.sock.settimeout(left)
            data = self.sock.recv(4096)
            if not data:
                line, self.buffer = self.buffer, b""
                return line
            self.buffer += data


def read_reply(lines_in, what, until, lines=None):
    """Lines of one SMTP reply (until a line whose 4th character is a space),
    appended to ``lines`` as they come, so that a reply cut short keeps its start."""
    lines = [] if lines is None else lines
    while len(lines) < MAX_LINES:
        try:
            raw = lines_in.readline(until)
        except TIMEOUT:
            raise Outcome("timeout", "no " + what + " within the timeout") from None
        except OSError as exc:
            raise Outcome("error", what + ": " + str(exc)) from None
        if not raw:
            raise Outcome("error", "connection closed before the " + what)
        line = raw.decode("utf-8", "replace").rstrip("\r\n")
        lines.append(line)
        if len(line) < 4 or line[3] != "-":
            return lines
    raise Outcome("error", what + " longer than " + str(MAX_LINES) + " lines")


def reply_code(lines):
    head = lines[0][:3] if lines else ""
    return int(head) if head.isdigit() else None


def connect(target, port, timeout, clock, result):
    """A connected socket; tries each address the name resolves to."""
    try:  # an ASCII name as bytes: a str would import the idna codec, and with it re
        name = target.encode("ascii")
    except UnicodeError:
        name = target
    try:
        infos = socket.getaddrinfo(name, port, 0, socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise Outcome("unresolved", "cannot resolve " + target + ": " + str(exc)) from None
    last = Outcome("error", "no address for " + target)
    for family, kind, proto, _name, address in infos:
        left = clock.until(timeout) - time.time()
        if left <= 0:
            break
        result["address"] = address[0]
        sock = socket.socket(family, kind, proto)
        sock.settimeout(left)
        started = time.time()
        try:
            sock.connect(address)
        except TIMEOUT:
            last = Outcome("timeout", "no answer on port " + str(port) + " within the timeout")
        except ConnectionRefusedError:
            last = Outcome("refused", "connection refused on port " + str(port))
        except OSError as exc:
            kind_ = "unreachable" if exc.errno in UNREACHABLE else "error"
            last = Outcome(kind_, exc.strerror or str(exc))
        else:
            result["connect_ms"] = round((time.time() - started) * 1000.0, 3)
            return sock
        sock.close()
    raise last


def send(sock, data):
    try:  # noqa: SIM105 - contextlib would cost an import on every host
        sock.sendall(data)
    except OSError:  # it may have hung up after its 421
        pass


def greet(sock, helo, timeouts, clock, result):
    """Connected to greeted and EHLO answered: the EHLO reply lines."""
    timeout, greeting_timeout = timeouts
    replies = Lines(sock)
    result["stage"] = "greeting"
    started = time.time()
    greeting = read_reply(replies, "greeting", clock.until(greeting_timeout), result["greeting"])
    result["greeting_ms"] = round((time.time() - started) * 1000.0, 3)
    result["greeting_code"] = reply_code(greeting)
    if result["greeting_code"] != 220:
        # A 554/421 greeting still deserves a QUIT (RFC 5321 3.1).
        send(sock, b"QUIT\r\n")
        raise Outcome("bad-greeting", "greeting " + " ".join(greeting[-1:]))
    result["stage"] = "ehlo"
    sock.sendall(b"EHLO " + helo.encode("ascii") + b"\r\n")
    ehlo = result["ehlo"] = read_reply(replies, "EHLO reply", clock.until(timeout))
    if reply_code(ehlo) != 250:
        send(sock, b"QUIT\r\n")
        raise Outcome("error", "EHLO refused: " + ehlo[-1])
    return replies, ehlo


def quit_politely(sock, replies, until):
    send(sock, b"QUIT\r\n")
    try:  # noqa: SIM105 - as in send
        read_reply(replies, "QUIT reply", until)
    except Outcome:  # the verdict is in; an early hang-up is fine
        pass


def converse(target, port, helo, timeouts, clock, result):
    """One conversation: greeting, EHLO, STARTTLS when offered (``verify``: against the
    CA store of the host, or not at all to read the certificate), QUIT."""
    sock = connect(target, port, timeouts[0], clock, result)
    try:
        replies, ehlo = greet(sock, helo, timeouts, clock, result)
        result["starttls"] = any(line[4:].strip().upper() == "STARTTLS" for line in ehlo[1:])
        result["outcome"] = "ok"  # the greeting and EHLO are what the check came for
        if result["starttls"]:
            result["stage"] = "starttls"
            sock = starttls(sock, replies, target, timeouts[0], clock, result)
            if result["tls_protocol"]:
                replies = Lines(sock)
        result["stage"] = "quit"
        quit_politely(sock, replies, clock.until(timeouts[0]))
    finally:
        sock.close()


def starttls(sock, replies, target, timeout, clock, result):
    """STARTTLS and the handshake; the TLS socket on success, else ``sock`` (facts in result)."""
    result["tls_checked"] = True
    try:
        sock.sendall(b"STARTTLS\r\n")
        answer = read_reply(replies, "STARTTLS reply", clock.until(timeout))
    except OSError as exc:
        result["tls_error"] = "STARTTLS: " + str(exc)
        return sock
    except Outcome as exc:
        result["tls_error"] = exc.error
        return sock
    if reply_code(answer) != 220:
        result["tls_error"] = answer[-1]
        return sock
    import ssl  # only now: most of the probe cost on a host without TLS is this import

    # Verified only when asked (argv[7]): the first try verifies, a retry only reads.
    verify = VERIFY[0] and result["cert_verified"] is None
    if verify:
        context = ssl.create_default_context()
    else:  # PROTOCOL_TLS_CLIENT from Python 3.6
        context = ssl.SSLContext(getattr(ssl, "PROTOCOL_TLS_CLIENT", ssl.PROTOCOL_SSLv23))
    context.check_hostname = False  # a mail server is often reached by another name
    if not verify:
        context.verify_mode = ssl.CERT_NONE
    left = clock.until(timeout) - time.time()
    try:
        if left <= 0:
            raise TIMEOUT("deadline")
        sock.settimeout(left)
        name = None if target.replace(".", "").isdigit() or ":" in target else target
        tls = context.wrap_socket(sock, server_hostname=name)
    except (ssl.SSLError, TIMEOUT, OSError) as exc:
        if getattr(exc, "reason", "") == "CERTIFICATE_VERIFY_FAILED":
            result["cert_verified"] = False
            result["cert_verify_error"] = getattr(exc, "verify_message", "") or str(exc)
            raise Retry() from None
        result["tls_error"] = "TLS handshake failed: " + (str(exc) or "timed out")
        raise Outcome("ok", "") from None  # the dialogue cannot go on; EHLO was fine
    if verify:
        result["cert_verified"] = True
    result["tls_protocol"] = getattr(tls, "version", str)() or "TLS"
    certificate(tls.getpeercert(True) or b"", result)
    return tls


VERIFY = [False]  # set by main from argv: check the certificate against the CA store


class Retry(Exception):
    """The certificate did not verify: connect again to read it unverified."""


def der(data, at):
    """(tag, start, end) of the DER element at ``at``."""
    tag, size, at = data[at], data[at + 1], at + 2
    if size & 0x80:
        count = size & 0x7F
        size = int.from_bytes(data[at : at + count], "big")
        at += count
    return tag, at, at + size


def children(data, start, end):
    found = []
    while start < end:
        found.append(der(data, start))
        start = found[-1][2]
    return found


def name_text(data, start, end):
    """An X.509 Name as "CN=mx.example, O=Example"."""
    parts = []
    for _set, set_start, set_end in children(data, start, end):
        for _seq, seq_start, seq_end in children(data, set_start, set_end):
            (_, oid_start, oid_end), (_, value_start, value_end) = children(
                data, seq_start, seq_end
            )[:2]
            oid = data[oid_start:oid_end]
            if oid[:2] == b"\x55\x04" and len(oid) == 3 and oid[2] in NAME_PARTS:
                value = data[value_start:value_end].decode("utf-8", "replace")
                parts.append(NAME_PARTS[oid[2]] + "=" + value)
    return ", ".join(parts)


def time_text(data, tag, start, end):
    """UTCTime (YYMMDDHHMMSSZ) or GeneralizedTime as ISO 8601 UTC."""
    text = data[start:end].decode("ascii", "replace")
    if tag == 0x17:
        text = ("19" if int(text[:2]) >= 50 else "20") + text
    return (
        text[:4]
        + "-"
        + text[4:6]
        + "-"
        + text[6:8]
        + "T"
        + text[8:10]
        + ":"
        + text[10:12]
        + ":"
        + text[12:14]
        + "Z"
    )


def certificate(data, result):
    """Subject, issuer and notAfter of a DER certificate, into ``result``."""
    try:
        tbs = children(data, *der(data, 0)[1:])[0]
        fields = children(data, tbs[1], tbs[2])
        if fields[0][0] == 0xA0:  # the explicit version
            fields = fields[1:]
        issuer, validity, subject = fields[2], fields[3], fields[4]
        not_after = children(data, validity[1], validity[2])[1]
        result["cert_subject"] = name_text(data, subject[1], subject[2])
        result["cert_issuer"] = name_text(data, issuer[1], issuer[2])
        result["cert_not_after"] = time_text(data, *not_after)
    except (IndexError, ValueError):
        result["tls_error"] = "the certificate could not be read"


def to_json(value):
    """JSON for the types of the result (None, bool, int, float, str, list); ASCII only."""
    if value is None or value is True or value is False:
        return {None: "null", True: "true", False: "false"}[value]
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(to_json(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(to_json(k) + ": " + to_json(v) for k, v in value.items()) + "}"
    out = []
    for char in str(value):
        code = ord(char)
        if char in QUOTE + BACKSLASH:
            out.append(BACKSLASH + char)
        elif 32 <= code < 127:
            out.append(char)
        elif code > 0xFFFF:  # outside the BMP: a UTF-16 surrogate pair, as JSON wants
            code -= 0x10000
            high, low = 0xD800 + (code >> 10), 0xDC00 + (code & 0x3FF)
            out.append("\\u" + format(high, "04x") + "\\u" + format(low, "04x"))
        else:
            out.append("\\u" + format(code, "04x"))  # no f-strings: Python 3.4 hosts
    return QUOTE + "".join(out) + QUOTE


def fresh(target, port):
    result = {"target": target, "port": port, "outcome": "error", "address": "", "error": ""}
    result.update({"greeting_code": None, "greeting": [], "ehlo": [], "starttls": False})
    result.update({"connect_ms": None, "greeting_ms": None, "stage": "connect"})
    result.update({"tls_checked": False, "tls_protocol": "", "tls_error": ""})
    result.update({"cert_subject": "", "cert_issuer": "", "cert_not_after": ""})
    result.update({"cert_verified": None, "cert_verify_error": ""})
    return result


def reread(target, port, helo, timeouts, clock, result):
    """Converse once more, unverified, for the facts of a certificate that did not
    verify; the outcome and timings of the first conversation stand."""
    again = fresh(target, port)
    again["cert_verified"] = False
    try:
        converse(target, port, helo, timeouts, clock, again)
    except (Outcome, Retry, OSError):
        again["tls_error"] = again["tls_error"] or "the certificate could not be read again"
    for key in ("tls_protocol", "tls_error", "cert_subject", "cert_issuer", "cert_not_after"):
        result[key] = again[key]


def main(argv):
    target, port, timeout, helo = argv[1], int(argv[2]), float(argv[3]), argv[4]
    greeting_timeout = float(argv[5]) if len(argv) > 5 else timeout
    clock = Clock(float(argv[6]) if len(argv) > 6 else greeting_timeout + 4 * timeout)
    VERIFY[0] = len(argv) > 7 and argv[7] == "1"
    if not helo or any(c.isspace() or ord(c) < 33 or ord(c) > 126 for c in helo):
        helo = "fleet.invalid"  # never let a parameter add a line to the SMTP dialogue
    result = fresh(target, port)
    try:
        try:
            converse(target, port, helo, (timeout, greeting_timeout), clock, result)
        except Retry:
            reread(target, port, helo, (timeout, greeting_timeout), clock, result)
    except Outcome as exc:
        if exc.outcome != "ok":  # "ok": the handshake failed after a good EHLO
            result["outcome"] = exc.outcome
            result["error"] = exc.error
    except OSError as exc:
        if result["outcome"] != "ok":
            result["error"] = str(exc)
    sys.stdout.write(to_json(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
