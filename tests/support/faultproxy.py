"""A fault-injecting HTTP/1.1 proxy on loopback, for forwarding tests.

It sits between the agent and a replica and, per request, either passes the exchange
through or injects one fault::

    with FaultProxy(("127.0.0.1", replica_port), seed=7, rates={"drop": 0.1, ...}) as p:
        url = p.url                       # point the forwarder here
        p.script(["reset_after", "pass"]) # force the next faults in order
        p.down = True                     # refuse every connection (an outage)
        p.counts                          # how often each fault was injected

Faults (each request, the scripted one first, otherwise drawn with ``rates``):

``pass``          relay request and response unchanged
``drop``          close the client connection without forwarding the request
``reset``         reset the client connection (RST) without forwarding
``drop_after``    forward (the replica stores it!), then close without answering
``reset_after``   forward, then reset the client connection without answering
``truncate``      forward, relay only part of the response, then close
``delay``         forward, hold the response ``delay_s`` seconds, then relay it
``error_503``     answer 503 with a JSON error without forwarding
``error_502``     forward, then answer 502 instead of the replica's answer
``garbage``       forward, then answer 200 with a body that is not JSON

Client connections are kept alive across requests (so stale keep-alive handling is
exercised); every request goes to the upstream on a fresh connection.
"""

from __future__ import annotations

import contextlib
import random
import socket
import struct
import threading
import time
from collections import Counter, deque
from collections.abc import Iterable

FAULTS = ("pass", "drop", "reset", "drop_after", "reset_after", "truncate", "delay",
          "error_503", "error_502", "garbage")
_MAX_HEAD = 64 * 1024


class FaultProxy:
    """Threaded TCP listener on 127.0.0.1 that relays HTTP/1.1 with injected faults."""

    def __init__(self, upstream: tuple[str, int], *, seed: int = 0,
                 rates: dict[str, float] | None = None, delay_s: float = 0.3,
                 port: int = 0) -> None:
        for name in rates or {}:
            if name not in FAULTS:
                raise ValueError(f"unknown fault {name!r} (known: {', '.join(FAULTS)})")
        self.upstream = upstream
        self.rates = dict(rates or {})
        self.delay_s = delay_s
        self.down = False
        self.counts: Counter[str] = Counter()
        self._rng = random.Random(seed)
        self._scripted: deque[str] = deque()
        self._lock = threading.Lock()
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", port))
        self._sock.listen(64)
        self.port = self._sock.getsockname()[1]
        self._stopping = threading.Event()
        self._clients: set[socket.socket] = set()
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def script(self, faults: Iterable[str]) -> None:
        """Force the next requests' faults, in order (then back to random draws)."""
        with self._lock:
            for f in faults:
                if f not in FAULTS:
                    raise ValueError(f"unknown fault {f!r}")
                self._scripted.append(f)

    def start(self) -> FaultProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._sock.close()
        with self._lock:
            clients = list(self._clients)
        for c in clients:
            _close(c)
        self._thread.join(timeout=5)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- internals ----------------------------------------------------------------------

    def _choose(self) -> str:
        with self._lock:
            if self._scripted:
                fault = self._scripted.popleft()
            else:
                fault = "pass"
                x = self._rng.random()
                for name, p in self.rates.items():
                    if x < p:
                        fault = name
                        break
                    x -= p
            self.counts[fault] += 1
            return fault

    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                client, _ = self._sock.accept()
            except OSError:
                return  # listener closed: stopping
            if self.down:
                _reset(client)
                continue
            with self._lock:
                self._clients.add(client)
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        buf = b""
        try:
            while not self._stopping.is_set():
                request, buf = _read_message(client, buf)
                if request is None:
                    return
                if self.down:
                    _reset(client)
                    return
                if not self._exchange(client, request):
                    return
        except OSError:
            return  # client went away
        finally:
            with self._lock:
                self._clients.discard(client)
            _close(client)

    def _exchange(self, client: socket.socket, request: bytes) -> bool:
        """Handle one request; False when the client connection is finished."""
        fault = self._choose()
        if fault == "drop":
            return False
        if fault == "reset":
            _reset(client)
            return False
        if fault == "error_503":
            client.sendall(_json_response(503, b'{"error":"unavailable","detail":"injected"}'))
            return True
        response = self._forward(request)
        if response is None:
            client.sendall(_json_response(502, b'{"error":"bad-gateway","detail":"upstream"}'))
            return True
        if fault == "drop_after":
            return False
        if fault == "reset_after":
            _reset(client)
            return False
        if fault == "truncate":
            client.sendall(response[: max(1, len(response) // 2)])
            return False
        if fault == "error_502":
            client.sendall(_json_response(502, b'{"error":"bad-gateway","detail":"injected"}'))
            return True
        if fault == "garbage":
            client.sendall(_json_response(200, b"<html>not json</html>"))
            return True
        if fault == "delay":
            time.sleep(self.delay_s)
        client.sendall(response)
        return True

    def _forward(self, request: bytes) -> bytes | None:
        head, _, body = request.partition(b"\r\n\r\n")
        lines = [ln for ln in head.split(b"\r\n") if not ln.lower().startswith(b"connection:")]
        lines.append(b"Connection: close")
        try:
            with socket.create_connection(self.upstream, timeout=30) as up:
                up.sendall(b"\r\n".join(lines) + b"\r\n\r\n" + body)
                response, _ = _read_message(up, b"")
        except OSError:
            return None
        if response is None:
            return None
        rhead, _, rbody = response.partition(b"\r\n\r\n")
        rlines = [ln for ln in rhead.split(b"\r\n") if not ln.lower().startswith(b"connection:")]
        return b"\r\n".join(rlines) + b"\r\n\r\n" + rbody


def _read_message(sock: socket.socket, buf: bytes) -> tuple[bytes | None, bytes]:
    """Read one HTTP message (head + Content-Length body); None at a clean EOF."""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            return None, b""
        buf += chunk
        if len(buf) > _MAX_HEAD and b"\r\n\r\n" not in buf:
            raise OSError("HTTP head too large")
    head, _, rest = buf.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
        if name.strip().lower() == b"transfer-encoding":
            raise OSError("chunked transfer encoding is not supported by the fault proxy")
    while len(rest) < length:
        chunk = sock.recv(max(65536, length - len(rest)))
        if not chunk:
            return None, b""
        rest += chunk
    return head + b"\r\n\r\n" + rest[:length], rest[length:]


def _json_response(status: int, body: bytes) -> bytes:
    reason = {200: "OK", 502: "Bad Gateway", 503: "Service Unavailable"}.get(status, "Error")
    return (f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


def _reset(sock: socket.socket) -> None:
    """Close with SO_LINGER 0 so the peer sees a connection reset."""
    with contextlib.suppress(OSError):  # already closed
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    _close(sock)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # already closed
        sock.close()
