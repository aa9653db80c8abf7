"""A WS-Management server for the lab: enough of Windows' WinRM service for the real pywinrm.

The simulated Windows hosts of the lab answer fleet's real WinRM transport
(pywinrm, unmodified) with this server, so the whole path is exercised: HTTP
keep-alive, NTLM (pyspnego's acceptor) with message encryption on 5985,
Basic and NTLM inside TLS on 5986, Kerberos on both when given a keytab
(pyspnego's acceptor over GSSAPI: the AP-REP for mutual authentication, a
failure's KRB-ERROR in the 401, sealing as for NTLM), the WinRS shell lifecycle (Create,
Command, Send, Receive, Signal, Delete) and the faults Windows sends, among
them the operation-timeout fault that tells a client to poll again.

What a command *does* is pluggable: ``handler(script) -> (stdout, stderr,
exit_code)`` gets the PowerShell text decoded from the command line (see
``fleet.transports.winrm.decode_invocation``) and runs in a worker thread so
Receive can poll.  The server counts, per client address, HTTP requests,
shells and commands (one PowerShell process per command), for the benchmark's
"one shell and one PowerShell process per host per audit": ``stats()``,
``GET /stats`` and an optional JSON stats file.

The NTLM acceptor reads users from the file named by the process-wide
``NTLM_USER_FILE`` variable (``DOMAIN:USER:PASSWORD`` lines); the server sets
it, so all servers of one process share one users file.  Basic checks the
same file.  Lab use only.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import os
import socket
import ssl
import struct
import threading
import traceback
import uuid
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape, quoteattr

import spnego
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from spnego.channel_bindings import GssChannelBindings
from spnego.exceptions import SpnegoError

from fleet.transports.winrm import decode_invocation, reads_stdin

log = logging.getLogger(__name__)

Handler = Callable[[str], tuple[bytes, bytes, int]]

NS = {
    "s": "http://www.w3.org/2003/05/soap-envelope",
    "a": "http://schemas.xmlsoap.org/ws/2004/08/addressing",
    "x": "http://schemas.xmlsoap.org/ws/2004/09/transfer",
    "w": "http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd",
    "rsp": "http://schemas.microsoft.com/wbem/wsman/1/windows/shell",
    "p": "http://schemas.microsoft.com/wbem/wsman/1/wsman.xsd",
    "f": "http://schemas.microsoft.com/wbem/wsman/1/wsmanfault",
}
SHELL = NS["rsp"]
TRANSFER = "http://schemas.xmlsoap.org/ws/2004/09/transfer"
CMD_RESOURCE = f"{SHELL}/cmd"
ANONYMOUS = "http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous"
FAULT_ACTION = "http://schemas.dmtf.org/wbem/wsman/1/wsman/fault"

# Windows' WSManFault codes the client reacts to.
FAULT_OPERATION_TIMEOUT = 2150858793  # "poll again"
FAULT_UNKNOWN_ID = 2150858843  # shell or command identifier does not exist
FAULT_NOT_SUPPORTED = 2150858771

# Output bytes per Receive: ~87 KB once in base64, well under MaxEnvelopeSize.
RECEIVE_CHUNK = 64 * 1024
# A Receive never waits longer than this, whatever the client asks.
MAX_OPERATION_TIMEOUT = 60.0
# Idle keep-alive connections are closed after this: long, because a
# dropped NTLM connection loses its sealing keys (as on Windows).
IDLE_TIMEOUT = 600.0
TLS_HANDSHAKE_TIMEOUT = 10.0

ENCRYPTED_PROTOCOL = "application/HTTP-SPNEGO-session-encrypted"
# The sealing protocols a client may name ([MS-WSMV] 2.2.9.1); the reply names the same.
SEALING_PROTOCOLS = (ENCRYPTED_PROTOCOL, "application/HTTP-Kerberos-session-encrypted")
BOUNDARY = b"--Encrypted Boundary"
OCTET_STREAM = b"\tContent-Type: application/octet-stream\r\n"
SOAP_TYPE = "application/soap+xml;charset=UTF-8"
NTLM_NEGOTIATE = 1  # message type of the first NTLM token


# --------------------------------------------------------------------------
# Users


def write_users_file(path: str | os.PathLike[str], users: Mapping[str, str]) -> Path:
    """Write ``{user: password}`` as an NTLM_USER_FILE (``DOMAIN:USER:PASSWORD``; mode 0600).

    ``user`` may be ``DOMAIN\\user``; without a domain the line has an empty
    one, which is what an NTLM client sends for a local account.
    """
    lines = []
    for user, password in users.items():
        domain, _, name = user.rpartition("\\")
        lines.append(f"{domain}:{name}:{password}\n")
    target = Path(path)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.writelines(lines)
    return target


def read_users_file(path: str | os.PathLike[str]) -> dict[str, str]:
    """``{user (lower case, no domain): password}`` from a ``DOMAIN:USER:PASSWORD`` file."""
    users = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3:
            users[parts[1].lower()] = parts[2]
    return users


def _bare_user(name: str) -> str:
    """``fleet`` from ``DOMAIN\\fleet`` or ``fleet@domain``."""
    return name.rpartition("\\")[2].partition("@")[0].lower()


# --------------------------------------------------------------------------
# Shells and commands


@dataclass
class Command:
    """One process started in a shell: its input, its output once it ends."""

    id: str
    stdin_wanted: bool
    stdin: bytearray = field(default_factory=bytearray)
    stdin_closed: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)
    stdout: bytes = b""
    stderr: bytes = b""
    exit_code: int = 0
    stdout_sent: int = 0
    stderr_sent: int = 0


@dataclass
class Shell:
    id: str
    client: str
    codepage: int
    commands: dict[str, Command] = field(default_factory=dict)


class Fault(Exception):
    """A SOAP fault to send back (HTTP 500)."""

    def __init__(self, subcode: str, reason: str, wsman_code: int, *, sender: bool = True) -> None:
        super().__init__(reason)
        self.subcode = subcode
        self.reason = reason
        self.wsman_code = wsman_code
        self.sender = sender


def _unknown(kind: str, ident: str) -> Fault:
    return Fault(
        "w:InvalidSelectors",
        f"The Windows Remote Shell received a request to perform an operation on a {kind} "
        f"identifier that does not exist: {ident}.",
        FAULT_UNKNOWN_ID,
    )


def _operation_timeout() -> Fault:
    return Fault(
        "w:TimedOut",
        "The WS-Management service cannot complete the operation within the time specified "
        "in OperationTimeout.",
        FAULT_OPERATION_TIMEOUT,
        sender=False,
    )


def _seconds(duration: str | None, default: float) -> float:
    """xs:duration ``PT20S`` / ``PT0.5S`` -> seconds (only the forms WinRM clients send)."""
    if not duration or not duration.startswith("PT") or not duration.endswith("S"):
        return default
    try:
        return float(duration[2:-1])
    except ValueError:
        return default


def _text(root: ET.Element, path: str) -> str | None:
    node = root.find(path, NS)
    return node.text if node is not None else None


def _options(root: ET.Element) -> dict[str, str]:
    return {
        node.get("Name", ""): (node.text or "")
        for node in root.findall("s:Header/w:OptionSet/w:Option", NS)
    }


def _run_worker(handler: Handler, command: Command, exe: str, args: list[str]) -> None:
    """The 'process': waits for stdin if it reads it, runs the handler, records the result."""
    if command.stdin_wanted:
        command.stdin_closed.wait()
    try:
        script = decode_invocation(exe, args, bytes(command.stdin))
    except ValueError as exc:
        command.stderr = f"{exe}: {exc}\r\n".encode()
        command.exit_code = 1
        command.done.set()
        return
    try:
        command.stdout, command.stderr, command.exit_code = handler(script)
    except Exception as exc:
        command.stderr = "".join(traceback.format_exception_only(exc)).encode()
        command.exit_code = 1
    command.done.set()


# --------------------------------------------------------------------------
# SOAP


def _envelope(action: str, relates_to: str, body: str) -> bytes:
    xmlns = " ".join(f'xmlns:{prefix}="{uri}"' for prefix, uri in NS.items() if prefix != "f")
    return (
        f'<s:Envelope xml:lang="en-US" {xmlns}><s:Header>'
        f"<a:Action>{escape(action)}</a:Action>"
        f"<a:MessageID>uuid:{str(uuid.uuid4()).upper()}</a:MessageID>"
        f"<a:To>{ANONYMOUS}</a:To>"
        f"<a:RelatesTo>{escape(relates_to)}</a:RelatesTo>"
        f"</s:Header><s:Body>{body}</s:Body></s:Envelope>"
    ).encode()


def _fault_body(fault: Fault, machine: str) -> str:
    code = "s:Sender" if fault.sender else "s:Receiver"
    return (
        f"<s:Fault><s:Code><s:Value>{code}</s:Value><s:Subcode><s:Value>{fault.subcode}"
        f'</s:Value></s:Subcode></s:Code><s:Reason><s:Text xml:lang="en-US">{escape(fault.reason)}'
        f"</s:Text></s:Reason><s:Detail><f:WSManFault xmlns:f={quoteattr(NS['f'])} "
        f"Code={quoteattr(str(fault.wsman_code))} Machine={quoteattr(machine)}>"
        f"<f:Message>{escape(fault.reason)}</f:Message></f:WSManFault></s:Detail></s:Fault>"
    )


class WSManService:
    """The WinRS shell service, HTTP aside: one SOAP envelope in, (status, envelope) out."""

    def __init__(self, handler: Handler, machine: str, stats: Stats) -> None:
        self.handler = handler
        self.machine = machine
        self.stats = stats
        self._shells: dict[str, Shell] = {}
        self._lock = threading.Lock()
        self._actions: dict[str, Callable[[ET.Element, str], tuple[str, str]]] = {
            f"{TRANSFER}/Create": self._create,
            f"{TRANSFER}/Delete": self._delete,
            f"{SHELL}/Command": self._command,
            f"{SHELL}/Send": self._send,
            f"{SHELL}/Receive": self._receive,
            f"{SHELL}/Signal": self._signal,
        }

    def dispatch(self, body: bytes, client: str) -> tuple[int, bytes]:
        try:
            # The lab parses only what its own clients send; expat refuses
            # entity expansion bombs on the Pythons we support.
            root = ET.fromstring(body)
        except ET.ParseError as exc:
            fault = Fault("w:SchemaValidationError", f"The envelope is not XML: {exc}", 2150858817)
            return self._fault(fault, "", client)
        message_id = _text(root, "s:Header/a:MessageID") or ""
        action = (_text(root, "s:Header/a:Action") or "").strip()
        operation = self._actions.get(action)
        try:
            if operation is None:
                raise Fault(
                    "a:ActionNotSupported",
                    f"The action {action!r} is not supported.",
                    FAULT_NOT_SUPPORTED,
                )
            reply_action, reply_body = operation(root, client)
        except Fault as fault:
            return self._fault(fault, message_id, client)
        return 200, _envelope(reply_action, message_id, reply_body)

    def _fault(self, fault: Fault, message_id: str, client: str) -> tuple[int, bytes]:
        counter = "operation_timeouts" if fault.wsman_code == FAULT_OPERATION_TIMEOUT else "faults"
        self.stats.add(client, counter)
        return 500, _envelope(FAULT_ACTION, message_id, _fault_body(fault, self.machine))

    def _shell(self, root: ET.Element) -> Shell:
        shell_id = ""
        for node in root.findall("s:Header/w:SelectorSet/w:Selector", NS):
            if node.get("Name") == "ShellId":
                shell_id = (node.text or "").strip()
        with self._lock:
            shell = self._shells.get(shell_id)
        if shell is None:
            raise _unknown("shell", shell_id)
        return shell

    def _find_command(self, shell: Shell, command_id: str | None) -> Command:
        with self._lock:
            command = shell.commands.get(command_id or "")
        if command is None:
            raise _unknown("command", command_id or "")
        return command

    # -- actions

    def _create(self, root: ET.Element, client: str) -> tuple[str, str]:
        try:
            codepage = int(_options(root).get("WINRS_CODEPAGE", "437"))
        except ValueError:
            codepage = 437
        shell = Shell(str(uuid.uuid4()).upper(), client, codepage)
        with self._lock:
            self._shells[shell.id] = shell
        self.stats.add(client, "shells")
        body = (
            f"<x:ResourceCreated><a:Address>{ANONYMOUS}</a:Address><a:ReferenceParameters>"
            f"<w:ResourceURI>{CMD_RESOURCE}</w:ResourceURI><w:SelectorSet>"
            f'<w:Selector Name="ShellId">{shell.id}</w:Selector></w:SelectorSet>'
            f"</a:ReferenceParameters></x:ResourceCreated>"
            f"<rsp:Shell><rsp:ShellId>{shell.id}</rsp:ShellId><rsp:ResourceUri>{CMD_RESOURCE}"
            f"</rsp:ResourceUri><rsp:ClientIP>{escape(client)}</rsp:ClientIP>"
            f"<rsp:IdleTimeOut>PT7200.000S</rsp:IdleTimeOut><rsp:InputStreams>stdin</rsp:InputStreams>"
            f"<rsp:OutputStreams>stdout stderr</rsp:OutputStreams></rsp:Shell>"
        )
        return f"{TRANSFER}/CreateResponse", body

    def _delete(self, root: ET.Element, client: str) -> tuple[str, str]:
        shell = self._shell(root)
        with self._lock:
            self._shells.pop(shell.id, None)
        self.stats.add(client, "deletes")
        return f"{TRANSFER}/DeleteResponse", ""

    def _command(self, root: ET.Element, client: str) -> tuple[str, str]:
        shell = self._shell(root)
        line = root.find("s:Body/rsp:CommandLine", NS)
        if line is None:
            raise Fault("w:InvalidParameter", "The request has no CommandLine.", 2150858882)
        exe = (_text(line, "rsp:Command") or "").strip()
        args = [node.text or "" for node in line.findall("rsp:Arguments", NS)]
        command = Command(
            line.get("CommandId") or str(uuid.uuid4()).upper(), reads_stdin(exe, args)
        )
        with self._lock:
            shell.commands[command.id] = command
        self.stats.add(client, "commands")
        threading.Thread(
            target=_run_worker,
            args=(self.handler, command, exe, args),
            name=f"wsman-command-{command.id[:8]}",
            daemon=True,  # a handler that never ends must not keep the lab alive
        ).start()
        body = f"<rsp:CommandId>{command.id}</rsp:CommandId>"
        return f"{SHELL}/CommandResponse", f"<rsp:CommandResponse>{body}</rsp:CommandResponse>"

    def _send(self, root: ET.Element, client: str) -> tuple[str, str]:
        shell = self._shell(root)
        stream = root.find("s:Body/rsp:Send/rsp:Stream", NS)
        if stream is None:
            raise Fault("w:InvalidParameter", "The request has no input stream.", 2150858882)
        command = self._find_command(shell, stream.get("CommandId"))
        try:
            data = base64.b64decode(stream.text or "")
        except binascii.Error as exc:
            raise Fault(
                "w:InvalidParameter", f"The input is not base64: {exc}", 2150858882
            ) from exc
        command.stdin += data
        if stream.get("End", "").lower() == "true":
            command.stdin_closed.set()
        return f"{SHELL}/SendResponse", "<rsp:SendResponse/>"

    def _receive(self, root: ET.Element, client: str) -> tuple[str, str]:
        shell = self._shell(root)
        desired = root.find("s:Body/rsp:Receive/rsp:DesiredStream", NS)
        command = self._find_command(
            shell, desired.get("CommandId") if desired is not None else None
        )
        self.stats.add(client, "receives")
        wait = min(
            _seconds(_text(root, "s:Header/w:OperationTimeout"), 20.0), MAX_OPERATION_TIMEOUT
        )
        if not command.done.wait(wait):
            raise _operation_timeout()
        return f"{SHELL}/ReceiveResponse", _receive_body(command)

    def _signal(self, root: ET.Element, client: str) -> tuple[str, str]:
        shell = self._shell(root)
        signal = root.find("s:Body/rsp:Signal", NS)
        command = self._find_command(shell, signal.get("CommandId") if signal is not None else None)
        # terminate / ctrl_c: the command is forgotten; a worker still
        # running (Python cannot kill a thread) ends unseen.
        with self._lock:
            shell.commands.pop(command.id, None)
        command.stdin_closed.set()
        self.stats.add(client, "signals")
        return f"{SHELL}/SignalResponse", "<rsp:SignalResponse/>"


def _receive_body(command: Command) -> str:
    """The next chunk of a finished command's output; Done with the exit code on the last."""
    out = command.stdout[command.stdout_sent : command.stdout_sent + RECEIVE_CHUNK]
    command.stdout_sent += len(out)
    room = RECEIVE_CHUNK - len(out)
    err = command.stderr[command.stderr_sent : command.stderr_sent + room]
    command.stderr_sent += len(err)
    finished = command.stdout_sent >= len(command.stdout) and command.stderr_sent >= len(
        command.stderr
    )
    cid = command.id
    parts = [
        f'<rsp:Stream Name="{name}" CommandId="{cid}">{base64.b64encode(chunk).decode()}'
        "</rsp:Stream>"
        for name, chunk in (("stdout", out), ("stderr", err))
    ]
    if finished:
        parts += [
            f'<rsp:Stream Name="stdout" CommandId="{cid}" End="true"></rsp:Stream>',
            f'<rsp:Stream Name="stderr" CommandId="{cid}" End="true"></rsp:Stream>',
            f'<rsp:CommandState CommandId="{cid}" State="{SHELL}/CommandState/Done">'
            f"<rsp:ExitCode>{command.exit_code}</rsp:ExitCode></rsp:CommandState>",
        ]
    else:
        parts.append(f'<rsp:CommandState CommandId="{cid}" State="{SHELL}/CommandState/Running"/>')
    return "<rsp:ReceiveResponse>" + "".join(parts) + "</rsp:ReceiveResponse>"


# --------------------------------------------------------------------------
# Counters


class Stats:
    """Per client address: requests, auth legs, shells, commands (= PowerShell processes)..."""

    def __init__(self, path: Path | None = None) -> None:
        self._counts: dict[str, Counter[str]] = {}
        self._lock = threading.Lock()
        self._save_lock = threading.Lock()
        self._path = path

    def add(self, client: str, what: str) -> None:
        with self._lock:
            self._counts.setdefault(client, Counter())[what] += 1
        # The file follows the events a benchmark asks about, not every request.
        if what in ("shells", "commands", "deletes", "signals"):
            self.save()

    def snapshot(self) -> dict[str, dict[str, int]]:
        with self._lock:
            return {client: dict(counts) for client, counts in self._counts.items()}

    def save(self) -> None:
        if self._path is None:
            return
        # One writer at a time, so an older snapshot never lands last.
        with self._save_lock:
            data = json.dumps(self.snapshot(), indent=1, sort_keys=True)
            tmp = self._path.with_name(self._path.name + ".tmp")
            tmp.write_text(data, encoding="utf-8")
            tmp.replace(self._path)


# --------------------------------------------------------------------------
# HTTP: authentication, sealing, keep-alive


def _channel_bindings(cert_file: Path) -> GssChannelBindings:
    """tls-server-end-point bindings (RFC 5929) for our certificate, as Windows checks them."""
    cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
    algorithm = cert.signature_hash_algorithm
    if algorithm is None or algorithm.name in ("md5", "sha1"):
        algorithm = hashes.SHA256()
    digest = hashlib.new(algorithm.name, cert.public_bytes(Encoding.DER)).digest()
    return GssChannelBindings(application_data=b"tls-server-end-point:" + digest)


@dataclass(frozen=True)
class ListenerConfig:
    tls: bool
    allow_basic: bool  # Basic offered and accepted on this listener
    allow_unencrypted: bool  # plain SOAP accepted from NTLM over plain HTTP
    path: str
    channel_bindings: GssChannelBindings | None
    kerberos: bool = False  # a keytab (KRB5_KTNAME) holds this host's HTTP/ keys


class _Listener(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self,
        address: tuple[str, int],
        config: ListenerConfig,
        server: WSManServer,
        ssl_context: ssl.SSLContext | None,
    ) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.config = config
        self.wsman = server
        self.ssl_context = ssl_context
        super().__init__(address, _RequestHandler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        # TLS handshakes happen in the connection's thread, never in the accept loop.
        if self.ssl_context is not None:
            request.settimeout(TLS_HANDSHAKE_TIMEOUT)
            try:
                request = self.ssl_context.wrap_socket(request, server_side=True)
            except (ssl.SSLError, OSError) as exc:
                log.debug("TLS handshake from %s failed: %s", client_address[0], exc)
                return
        super().finish_request(request, client_address)


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "Microsoft-HTTPAPI/2.0"
    sys_version = ""
    timeout = IDLE_TIMEOUT
    server: _Listener

    def setup(self) -> None:
        # Headers and body leave in two writes: without NODELAY, Nagle and the
        # client's delayed ACK add 40 ms to every reply.
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().setup()
        # NTLM and Kerberos authenticate the connection, not the request (as HTTP.sys
        # does); the context (either) seals the messages.
        self.context: spnego.ContextProxy | None = None
        self.user: str | None = None
        self.auth_reply: tuple[tuple[str, str], ...] = ()  # Kerberos' AP-REP, sent once

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.client_address[0], format % args)

    @property
    def client(self) -> str:
        return str(self.client_address[0])

    # -- replies

    def _reply(
        self,
        status: int,
        body: bytes = b"",
        content_type: str = SOAP_TYPE,
        headers: tuple[tuple[str, str], ...] = (),
    ) -> None:
        self.send_response(status)
        headers, self.auth_reply = self.auth_reply + headers, ()
        for name, value in headers:
            self.send_header(name, value)
        if body:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _challenge(self, token: bytes | None = None) -> None:
        offers = [
            (
                "WWW-Authenticate",
                "Negotiate" + (f" {base64.b64encode(token).decode()}" if token else ""),
            )
        ]
        if token is None and self.server.config.allow_basic:
            offers.append(("WWW-Authenticate", 'Basic realm="WSMAN"'))
        self._reply(401, headers=tuple(offers))

    # -- verbs

    @property
    def service(self) -> WSManService:
        """The service of the host the client reached (one per address on a block server)."""
        return self.server.wsman.service_for(str(self.request.getsockname()[0]))

    def do_GET(self) -> None:
        if self.path.rstrip("/") == "/stats":
            body = json.dumps(self.service.stats.snapshot(), sort_keys=True).encode()
            self._reply(200, body, "application/json")
        else:
            self._reply(404)

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        service = self.service
        stats = service.stats
        stats.add(self.client, "requests")
        if self.path.split("?")[0].rstrip("/").lower() != self.server.config.path.lower():
            self._reply(404)
            return
        if self._authenticate() is None:
            return
        if not body:
            self._reply(200)  # the empty POST that sets up message encryption
            return
        sealing = _sealing_protocol(self.headers.get("Content-Type", ""))
        encrypted = sealing is not None
        if encrypted:
            stats.add(self.client, "sealed")
        plain = self._unsealed(body) if encrypted else self._cleartext(body)
        if plain is None:
            return
        status, reply = service.dispatch(plain, self.client)
        if sealing is not None:
            assert self.context is not None
            kind = f'multipart/encrypted;protocol="{sealing}";boundary="Encrypted Boundary"'
            self._reply(status, _seal(self.context, reply, sealing), kind)
        else:
            self._reply(status, reply)

    # -- authentication

    def _authenticate(self) -> str | None:
        """The authenticated user, or None once a 401 has been sent."""
        scheme, _, token = self.headers.get("Authorization", "").partition(" ")
        scheme = scheme.lower()
        if scheme in ("negotiate", "ntlm", "kerberos"):
            return self._gss_step(token.strip())
        if scheme == "basic" and self.server.config.allow_basic:
            return self._basic(token.strip())
        if self.user is not None and self.context is not None:
            return self.user
        self._challenge()
        return None

    def _gss_step(self, token: str) -> str | None:
        """One leg of NTLM, or Kerberos' one (an AP-REQ in a Negotiate/Kerberos header)."""
        stats = self.service.stats
        stats.add(self.client, "auth_legs")
        try:
            raw = base64.b64decode(token)
            if raw.startswith(b"NTLMSSP\x00"):
                if self.context is None or _ntlm_type(raw) == NTLM_NEGOTIATE:
                    self.user = None
                    self.context = spnego.server(
                        protocol="ntlm", channel_bindings=self.server.config.channel_bindings
                    )
            elif self.server.config.kerberos:
                self.user = None  # each AP-REQ starts a context (the keytab: KRB5_KTNAME)
                self.context = spnego.server(protocol="kerberos")
            else:
                raise ValueError("Kerberos is not set up on this host")
            answer = self.context.step(raw)
        except AttributeError as exc:
            # MIT answers an AP-REQ it must refuse with a KRB-ERROR token (clock skew)
            # and "continue needed"; pyspnego then fails reading the context's flags.
            # Accepting it again (no replay cache) yields that token.
            stats.add(self.client, "auth_failures")
            self.context = self.user = None
            self._challenge(_refusal(raw) or None)
            log.info("Kerberos authentication from %s refused: %s", self.client, exc)
            return None
        except (SpnegoError, binascii.Error, ValueError, struct.error) as exc:
            log.info("authentication from %s failed: %s", self.client, exc)
            stats.add(self.client, "auth_failures")
            self.context = self.user = None
            # A KRB-ERROR (clock skew...) goes back to the client, as Windows sends it.
            self._challenge(_error_token(exc))
            return None
        if not self.context.complete:
            self._challenge(answer or b"")
            return None
        if answer:  # Kerberos' AP-REP: the client authenticates the host with it
            self.auth_reply = (
                ("WWW-Authenticate", f"Negotiate {base64.b64encode(answer).decode()}"),
            )
        self.user = self.context.client_principal or "?"
        return self.user

    def _basic(self, token: str) -> str | None:
        try:
            user, _, password = base64.b64decode(token).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            user, password = "", ""
        expected = self.server.wsman.users().get(_bare_user(user))
        if expected is None or not _same(expected, password):
            self.service.stats.add(self.client, "auth_failures")
            self._challenge()
            return None
        return user

    # -- sealing

    def _unsealed(self, body: bytes) -> bytes | None:
        if self.context is None:
            self._reply(400, b"encrypted message without an authenticated context", "text/plain")
            return None
        try:
            return _unseal(self.context, body)
        except (SpnegoError, ValueError, IndexError, struct.error) as exc:
            log.info("cannot unseal a message from %s: %s", self.client, type(exc).__name__)
            self._reply(400, b"cannot decrypt the message", "text/plain")
            return None

    def _cleartext(self, body: bytes) -> bytes | None:
        config = self.server.config
        if config.tls or config.allow_unencrypted or self.context is None:
            return body
        # Windows' default AllowUnencrypted=false: NTLM over HTTP must seal.
        self._reply(
            400, b"unencrypted WinRM traffic is refused (AllowUnencrypted=false)", "text/plain"
        )
        return None


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def _sealing_protocol(content_type: str) -> str | None:
    """The sealing protocol a multipart/encrypted body names (None: not sealed)."""
    if not content_type.lower().startswith("multipart/encrypted"):
        return None
    for protocol in SEALING_PROTOCOLS:
        if protocol.lower() in content_type.lower():
            return protocol
    return ENCRYPTED_PROTOCOL


def _error_token(exc: BaseException) -> bytes | None:
    """The output token a failed GSS accept left (a Kerberos KRB-ERROR), if any."""
    seen: BaseException | None = exc
    while seen is not None:
        token = getattr(seen, "token", None)
        if token:
            return bytes(token)
        seen = getattr(seen, "base_error", None) or seen.__cause__
    return None


def _refusal(ap_req: bytes) -> bytes:
    """The KRB-ERROR GSSAPI's acceptor answers ``ap_req`` with (b"" if none)."""
    import gssapi.raw

    try:
        return bytes(gssapi.raw.accept_sec_context(ap_req).token or b"")
    except gssapi.raw.GSSError as exc:
        return bytes(getattr(exc, "token", None) or b"")


def _ntlm_type(token: bytes) -> int:
    if len(token) < 12 or not token.startswith(b"NTLMSSP\x00"):
        raise ValueError("not an NTLM token")
    return int(struct.unpack("<I", token[8:12])[0])


def _unseal(context: spnego.ContextProxy, body: bytes) -> bytes:
    """The SOAP text inside pywinrm's multipart/encrypted body ([MS-WSMV] 2.2.9.1.1)."""
    parts = [part for part in body.split(BOUNDARY + b"\r\n") if part]
    if len(parts) < 2:
        raise ValueError("no encrypted part")
    header, payload = parts[0], parts[1]
    length = int(header.split(b"Length=")[1].strip())
    if payload.endswith(BOUNDARY + b"--\r\n"):
        payload = payload[: -len(BOUNDARY + b"--\r\n")]
    if not payload.startswith(OCTET_STREAM):
        raise ValueError("no octet-stream part")
    payload = payload[len(OCTET_STREAM) :]
    signature_length = struct.unpack("<i", payload[:4])[0]
    signature = payload[4 : 4 + signature_length]
    message = context.unwrap_winrm(signature, payload[4 + signature_length :])
    if len(message) != length:
        raise ValueError("decrypted length differs from OriginalContent")
    return message


def _seal(
    context: spnego.ContextProxy, message: bytes, protocol: str = ENCRYPTED_PROTOCOL
) -> bytes:
    wrapped = context.wrap_winrm(message)
    return (
        BOUNDARY + b"\r\n"
        b"\tContent-Type: " + protocol.encode() + b"\r\n"
        b"\tOriginalContent: type="
        + SOAP_TYPE.encode()
        + b";Length="
        + str(len(message)).encode()
        + b"\r\n"
        + BOUNDARY
        + b"\r\n"
        + OCTET_STREAM
        + struct.pack("<i", len(wrapped.header))
        + wrapped.header
        + wrapped.data
        + BOUNDARY
        + b"--\r\n"
    )


# --------------------------------------------------------------------------
# The server


class WSManServer:
    """WinRM on HTTP (NTLM with sealing; Basic only if allowed) and/or HTTPS (Basic, NTLM).

    Ports given as 0 are picked by the system; read ``http_port`` /
    ``https_port`` after ``start()``.  ``handler(script)`` runs each command.

    ``handler_for(address)``, when given, makes one server many hosts: a listener
    on a wildcard address in a node that answers for a whole block (a ``local``
    route) serves each address the clients reach as a host of its own, with its
    own handler, shells and counters (``GET /stats`` on an address is that host's).
    """

    def __init__(
        self,
        handler: Handler,
        *,
        users_file: str | os.PathLike[str],
        address: str = "127.0.0.1",
        http_port: int | None = 5985,
        https_port: int | None = None,
        cert_file: str | os.PathLike[str] | None = None,
        key_file: str | os.PathLike[str] | None = None,
        allow_unencrypted_basic: bool = False,
        path: str = "/wsman",
        machine: str | None = None,
        stats_file: str | os.PathLike[str] | None = None,
        keytab: str | os.PathLike[str] | None = None,
        handler_for: Callable[[str], Handler] | None = None,
    ) -> None:
        if https_port is not None and not (cert_file and key_file):
            raise ValueError("HTTPS needs cert_file and key_file")
        self.address = address
        self.users_file = Path(users_file)
        self.stats = Stats(Path(stats_file) if stats_file else None)
        self.service = WSManService(handler, machine or address, self.stats)
        self._handler_for = handler_for
        self._hosts: dict[str, WSManService] = {}
        self._hosts_lock = threading.Lock()
        self._wanted = (http_port, https_port)
        self._cert = (Path(cert_file), Path(key_file)) if cert_file and key_file else None
        self._allow_unencrypted_basic = allow_unencrypted_basic
        self._path = path
        self._keytab = Path(keytab) if keytab else None
        self._listeners: list[_Listener] = []
        self._threads: list[threading.Thread] = []
        self.http_port: int | None = None
        self.https_port: int | None = None

    def users(self) -> dict[str, str]:
        return read_users_file(self.users_file)

    def service_for(self, address: str) -> WSManService:
        """The service of the host at ``address``: this server's own unless it serves a block."""
        if self._handler_for is None:
            return self.service
        with self._hosts_lock:
            service = self._hosts.get(address)
            if service is None:
                service = WSManService(self._handler_for(address), address, Stats())
                self._hosts[address] = service
        return service

    def start(self) -> WSManServer:
        # pyspnego's NTLM acceptor reads its users from here (process-wide).
        os.environ["NTLM_USER_FILE"] = str(self.users_file)
        # ...and the Kerberos acceptor (GSSAPI) its keys from here.
        kerberos = self._keytab is not None
        if kerberos:
            os.environ["KRB5_KTNAME"] = f"FILE:{self._keytab}"
            # No replay cache: a refused AP-REQ is accepted again to read its KRB-ERROR
            # (see _refusal), and the lab's hosts share one process.
            os.environ["KRB5RCACHETYPE"] = "none"
        http_port, https_port = self._wanted
        if http_port is not None:
            config = ListenerConfig(
                False, self._allow_unencrypted_basic, False, self._path, None, kerberos
            )
            self.http_port = self._listen(http_port, config, None)
        if https_port is not None and self._cert is not None:
            cert, key = self._cert
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(cert, key)
            config = ListenerConfig(True, True, True, self._path, _channel_bindings(cert), kerberos)
            self.https_port = self._listen(https_port, config, context)
        return self

    def _listen(self, port: int, config: ListenerConfig, context: ssl.SSLContext | None) -> int:
        listener = _Listener((self.address, port), config, self, context)
        thread = threading.Thread(
            target=listener.serve_forever,
            kwargs={"poll_interval": 0.2},
            daemon=True,
            name=f"wsman-{self.address}:{listener.server_address[1]}",
        )
        thread.start()
        self._listeners.append(listener)
        self._threads.append(thread)
        return int(listener.server_address[1])

    def stop(self) -> None:
        for listener in self._listeners:
            listener.shutdown()
            listener.server_close()
        for thread in self._threads:
            thread.join(timeout=5)
        self._listeners.clear()
        self._threads.clear()
        self.stats.save()

    def __enter__(self) -> WSManServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
