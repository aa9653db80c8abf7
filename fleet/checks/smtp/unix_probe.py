"""A polite SMTP probe, run ON the audited host: its TEXT is sent with ``python3 -S -c``.

Usage: python3 -S -c "$PROGRAM" TARGET PORT TIMEOUT HELO

It resolves TARGET, connects with a timeout, reads the whole greeting
(multi-line 220-... then 220 ...) before saying anything, sends EHLO, reads
until a "250 " line, notes STARTTLS, sends QUIT and never DATA.  It prints ONE
JSON object whose keys are the fields of fleet.checks.facts.SmtpProbe.

Parameters arrive as argv, never spliced into this code.  The program keeps to
the standard library and to Python 3.4 syntax (no f-strings) so old hosts run
it, and holds no single quote so that shell quoting stays short.

Every audited host pays for its start-up, so it imports only built-in
modules: the C ``_socket`` (``socket.py`` pulls in enum and selectors), its
own few lines of JSON writing (``json`` pulls in ``re``), and an ASCII name
resolved as bytes (a str loads the idna codec, and ``re`` with it).  That
cuts the CPU the probe costs the host by two thirds.
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


class Outcome(Exception):
    """Ends the conversation with an outcome for the report."""

    def __init__(self, outcome, error):
        Exception.__init__(self, error)
        self.outcome = outcome
        self.error = error


class Lines:
    """Reply lines from a socket, at most MAX_LINE bytes each (``makefile().readline``)."""

    def __init__(self, sock):
        self.sock = sock
        self.buffer = b""

    def readline(self):
        while True:
            end = self.buffer.find(b"\n", 0, MAX_LINE)
            if end >= 0 or len(self.buffer) >= MAX_LINE:
                cut = end + 1 if end >= 0 else MAX_LINE
                line, self.buffer = self.buffer[:cut], self.buffer[cut:]
                return line
            data = self.sock.recv(4096)
            if not data:
                line, self.buffer = self.buffer, b""
                return line
            self.buffer += data


def read_reply(lines_in, what):
    """Lines of one SMTP reply (until a line whose 4th character is a space)."""
    lines = []
    while len(lines) < MAX_LINES:
        try:
            raw = lines_in.readline()
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


def connect(target, port, timeout, result):
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
        result["address"] = address[0]
        sock = socket.socket(family, kind, proto)
        sock.settimeout(timeout)
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


def quit_quietly(sock):
    try:  # noqa: SIM105 - contextlib would cost an import on every host
        sock.sendall(b"QUIT\r\n")
    except OSError:  # it may have hung up after its 421
        pass


def converse(sock, helo, result):
    replies = Lines(sock)
    greeting = read_reply(replies, "greeting")
    result["greeting"] = greeting
    result["greeting_code"] = reply_code(greeting)
    if result["greeting_code"] != 220:
        # A 554/421 greeting still deserves a QUIT (RFC 5321 3.1).
        quit_quietly(sock)
        raise Outcome("bad-greeting", "greeting " + " ".join(greeting[-1:]))
    sock.sendall(b"EHLO " + helo.encode("ascii") + b"\r\n")
    ehlo = read_reply(replies, "EHLO reply")
    result["ehlo"] = ehlo
    result["starttls"] = any(line[4:].strip().upper() == "STARTTLS" for line in ehlo[1:])
    sock.sendall(b"QUIT\r\n")
    if reply_code(ehlo) != 250:
        raise Outcome("error", "EHLO refused: " + ehlo[-1])
    try:  # noqa: SIM105 - as in quit_quietly
        read_reply(replies, "QUIT reply")
    except Outcome:  # the verdict is in; an early hang-up is fine
        pass


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


def main(argv):
    target, port, timeout, helo = argv[1], int(argv[2]), float(argv[3]), argv[4]
    if not helo or any(c.isspace() or ord(c) < 33 or ord(c) > 126 for c in helo):
        helo = "fleet.invalid"  # never let a parameter add a line to the SMTP dialogue
    result = {"target": target, "port": port, "outcome": "ok", "address": "", "error": ""}
    result.update({"greeting_code": None, "greeting": [], "ehlo": [], "starttls": False})
    result["connect_ms"] = None
    sock = None
    try:
        sock = connect(target, port, timeout, result)
        converse(sock, helo, result)
    except Outcome as exc:
        result["outcome"] = exc.outcome
        result["error"] = exc.error
    except OSError as exc:
        result["outcome"] = "error"
        result["error"] = str(exc)
    finally:
        if sock is not None:
            sock.close()
    sys.stdout.write(to_json(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
