"""A small blocking HTTP(S) client for the replica protocol, using only the standard library.

The gateway must not need the ``[replica]`` extra, so this speaks HTTP/1.1 with
:mod:`http.client` and :mod:`ssl`. One :class:`ReplicaClient` keeps one keep-alive
connection; it is not thread-safe and is meant to be driven from one worker thread
(the forwarder gives each replica its own thread).

TLS trust, per replica:

- ``ca_file``: verify the server's certificate chain and host name against this CA
  bundle (PEM);
- ``pin_sha256``: the hex SHA-256 of the server certificate's SubjectPublicKeyInfo
  (DER). With a pin alone the chain is not checked, the key is: the connection is
  refused unless the server presents exactly that key. With both, both must hold;
- neither: the system's default CA store.

Every failure to get a complete, well-formed answer (refused, reset, timeout,
truncated body, not JSON) raises :class:`ReplicaUnreachable`; an answer with any HTTP
status is returned as a :class:`Response` for the caller to interpret.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import http.client
import json
import socket
import ssl
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ledger.errors import ConfigError, ForwardingError

USER_AGENT = "meterchain-agent/1"


class ReplicaUnreachable(ForwardingError):
    """No complete answer came back (connect/read failure, timeout, truncated or bad body)."""


class PinMismatch(ForwardingError):
    """The server's public key is not the pinned one (a wrong or impostor server)."""


@dataclass(frozen=True, slots=True)
class Response:
    """One complete HTTP answer: status, JSON body (``None`` if empty) and headers."""

    status: int
    body: Any
    headers: dict[str, str]


def spki_sha256(cert_der: bytes) -> str:
    """Hex SHA-256 of the SubjectPublicKeyInfo inside an X.509 certificate (DER).

    This is the value ``openssl x509 -pubkey -noout | openssl pkey -pubin -outform der |
    sha256sum`` prints, and what a replica's ``pin_sha256`` setting holds.

    Raises:
        ValueError: the bytes are not a DER certificate this parser understands.
    """
    return hashlib.sha256(_spki_der(cert_der)).hexdigest()


def _tlv(data: bytes, pos: int) -> tuple[int, int, int]:
    """Parse one DER TLV at ``pos``: return (tag, content start, content end)."""
    if pos + 2 > len(data):
        raise ValueError("DER: truncated")
    tag = data[pos]
    length = data[pos + 1]
    pos += 2
    if length & 0x80:
        n = length & 0x7F
        if n == 0 or n > 4 or pos + n > len(data):
            raise ValueError("DER: bad length")
        length = int.from_bytes(data[pos : pos + n], "big")
        pos += n
    end = pos + length
    if end > len(data):
        raise ValueError("DER: length runs past the end")
    return tag, pos, end


def _spki_der(cert: bytes) -> bytes:
    tag, start, _ = _tlv(cert, 0)  # Certificate ::= SEQUENCE
    if tag != 0x30:
        raise ValueError("DER: certificate is not a SEQUENCE")
    tag, pos, tbs_end = _tlv(cert, start)  # tbsCertificate ::= SEQUENCE
    if tag != 0x30:
        raise ValueError("DER: tbsCertificate is not a SEQUENCE")
    fields: list[tuple[int, int]] = []
    while pos < tbs_end and len(fields) < 8:
        tag, cstart, cend = _tlv(cert, pos)
        fields.append((tag, pos))
        pos = cend
    # [0] version (optional), serial, signature alg, issuer, validity, subject, SPKI
    index = 6 if fields and fields[0][0] == 0xA0 else 5
    if len(fields) <= index or fields[index][0] != 0x30:
        raise ValueError("DER: no SubjectPublicKeyInfo where expected")
    spki_pos = fields[index][1]
    _, _, spki_end = _tlv(cert, spki_pos)
    return cert[spki_pos:spki_end]


def make_ssl_context(ca_file: str | None, pin_sha256: str | None) -> ssl.SSLContext:
    """The TLS context for a replica (see the module docstring for the trust rules).

    Raises:
        ConfigError: the CA file cannot be loaded.
    """
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if ca_file:
        try:
            ctx.load_verify_locations(cafile=ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError("replicas.ca_file", f"cannot load CA file {ca_file}: {exc}"
                              ) from None
    elif pin_sha256:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE  # trust comes from the pinned key, checked per connection
    return ctx


class ReplicaClient:
    """Blocking client for one replica (``url`` is its base, e.g. ``https://r1:8443``).

    Raises:
        ConfigError: from the constructor, for a URL that is not http(s) or a bad CA file.
    """

    def __init__(
        self,
        url: str,
        gateway_key_hex: str,
        *,
        timeout_s: float,
        ca_file: str | None = None,
        pin_sha256: str | None = None,
        name: str | None = None,
    ) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError("replicas.url", f"must be an http:// or https:// URL, got {url!r}")
        self.name = name or url
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port or (443 if self._https else 80)
        self._base = parts.path.rstrip("/")
        self._gw = gateway_key_hex
        self._timeout = timeout_s
        self._pin = pin_sha256.lower() if pin_sha256 else None
        self._ctx = make_ssl_context(ca_file, pin_sha256) if self._https else None
        self._conn: http.client.HTTPConnection | None = None

    # -- connection ------------------------------------------------------------------

    def _connect(self) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection
        if self._https:
            conn = http.client.HTTPSConnection(self._host, self._port, timeout=self._timeout,
                                               context=self._ctx)
        else:
            conn = http.client.HTTPConnection(self._host, self._port, timeout=self._timeout)
        try:
            conn.connect()
            if self._https and self._pin is not None:
                sock = conn.sock
                der = sock.getpeercert(binary_form=True) if isinstance(sock, ssl.SSLSocket) \
                    else None
                got = spki_sha256(der) if der else ""
                if not hmac.compare_digest(got, self._pin):
                    raise PinMismatch(
                        f"server key sha256 {got or '(none)'} is not the pinned {self._pin}",
                        replica=self.name,
                    )
        except BaseException:
            conn.close()
            raise
        return conn

    def abort(self) -> None:
        """Break the connection from another thread so a blocked request returns now."""
        conn = self._conn
        sock = conn.sock if conn is not None else None
        if sock is not None:
            with contextlib.suppress(OSError):  # already closed: nothing to interrupt
                sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        """Close the keep-alive connection (reopened by the next request)."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # -- requests --------------------------------------------------------------------

    def request(self, method: str, path: str, body: bytes | None = None) -> Response:
        """Send one request; retry once on a fresh connection if a kept-alive one failed.

        Raises:
            ReplicaUnreachable: no complete answer.
            PinMismatch: the server's key is not the pinned one.
        """
        reused = self._conn is not None
        try:
            return self._request_once(method, path, body)
        except ReplicaUnreachable:
            if not reused:
                raise
            return self._request_once(method, path, body)

    def _request_once(self, method: str, path: str, body: bytes | None) -> Response:
        headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        try:
            if self._conn is None:
                self._conn = self._connect()
            self._conn.request(method, self._base + path, body=body, headers=headers)
            resp = self._conn.getresponse()
            raw = resp.read()
            status = resp.status
            hdrs = {k.lower(): v for k, v in resp.getheaders()}
            if resp.will_close:
                self.close()
        except PinMismatch:
            self.close()
            raise
        except (OSError, http.client.HTTPException, ssl.SSLError) as exc:
            self.close()
            raise ReplicaUnreachable(f"{method} {path}: {type(exc).__name__}: {exc}",
                                     replica=self.name) from None
        try:
            parsed = json.loads(raw) if raw else None
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            self.close()
            raise ReplicaUnreachable(
                f"{method} {path}: HTTP {status} with a body that is not JSON ({exc})",
                replica=self.name,
            ) from None
        return Response(status, parsed, hdrs)

    def get_head(self) -> Response:
        """``GET /v1/gateways/{gw}/head``."""
        return self.request("GET", f"/v1/gateways/{self._gw}/head")

    def get_hash(self, height: int) -> Response:
        """``GET /v1/gateways/{gw}/blocks/{height}/hash``."""
        return self.request("GET", f"/v1/gateways/{self._gw}/blocks/{height}/hash")

    def push(self, records: Sequence[bytes]) -> Response:
        """``POST /v1/gateways/{gw}/blocks`` with the block records, base64 in JSON."""
        return self.request("POST", f"/v1/gateways/{self._gw}/blocks", push_body(records))


def push_body(records: Sequence[bytes]) -> bytes:
    """The JSON body of a push: ``{"blocks": [base64, ...]}``."""
    parts = b'","'.join(base64.b64encode(r) for r in records)
    return b'{"blocks":["' + parts + b'"]}' if records else b'{"blocks":[]}'


def push_body_size(record_len: int) -> int:
    """Bytes one record of ``record_len`` adds to a push body (base64, quotes, comma)."""
    return 4 * ((record_len + 2) // 3) + 3


PUSH_BODY_OVERHEAD = len(b'{"blocks":[]}')
