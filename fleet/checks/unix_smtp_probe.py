"""A polite SMTP probe, run ON the audited host: its TEXT is sent with ``python3 -c``.

Usage: python3 -c "$PROGRAM" TARGET PORT TIMEOUT HELO

It resolves TARGET, connects with a timeout, reads the whole greeting
(multi-line 220-... then 220 ...) before saying anything, sends EHLO, reads
until a "250 " line, notes STARTTLS, sends QUIT and never DATA.  It prints ONE
JSON object whose keys are the fields of fleet.checks.facts.SmtpProbe.

Parameters arrive as argv, never spliced into this code.  The program keeps to
the standard library and to Python 3.4 syntax (no f-strings) so old hosts run
it, and holds no single quote so that shell quoting stays short.
"""

import contextlib
import errno
import json
import socket
import sys
import time

MAX_LINE = 1024  # RFC 5321 allows 512 per reply line; be lenient
MAX_LINES = 100  # a reply longer than this is not a mail server talking

UNREACHABLE = (errno.EHOSTUNREACH, errno.ENETUNREACH, getattr(errno, "EHOSTDOWN", -1))


class Outcome(Exception):
    """Ends the conversation with an outcome for the report."""

    def __init__(self, outcome, error):
        Exception.__init__(self, error)
        self.outcome = outcome
        self.error = error


def read_reply(stream, what):
    """Lines of one SMTP reply (until a line whose 4th character is a space)."""
    lines = []
    while len(lines) < MAX_LINES:
        try:
            raw = stream.readline(MAX_LINE)
        # socket.timeout is TimeoutError only from Python 3.10; hosts run older ones.
        except socket.timeout:  # noqa: UP041
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
    try:
        infos = socket.getaddrinfo(target, port, 0, socket.SOCK_STREAM)
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
        except socket.timeout:  # noqa: UP041
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


def converse(sock, helo, result):
    stream = sock.makefile("rb")
    greeting = read_reply(stream, "greeting")
    result["greeting"] = greeting
    result["greeting_code"] = reply_code(greeting)
    if result["greeting_code"] != 220:
        # A 554/421 greeting still deserves a QUIT (RFC 5321 3.1).
        with contextlib.suppress(OSError):  # it may have hung up after its 421
            sock.sendall(b"QUIT\r\n")
        raise Outcome("bad-greeting", "greeting " + " ".join(greeting[-1:]))
    sock.sendall(b"EHLO " + helo.encode("ascii") + b"\r\n")
    ehlo = read_reply(stream, "EHLO reply")
    result["ehlo"] = ehlo
    result["starttls"] = any(line[4:].strip().upper() == "STARTTLS" for line in ehlo[1:])
    sock.sendall(b"QUIT\r\n")
    if reply_code(ehlo) != 250:
        raise Outcome("error", "EHLO refused: " + ehlo[-1])
    with contextlib.suppress(Outcome):  # the verdict is in; an early hang-up is fine
        read_reply(stream, "QUIT reply")


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
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
