"""A small in-process replica speaking replica protocol v1 (push, head, hash, blocks).

It verifies every block with the real ledger core, refuses batches atomically and
answers with the documented error codes, so the forwarder can be exercised against
a real HTTP server on loopback. The full replica (``replica/``) is the product; this
one exists so forwarding tests can also inject replica-side behaviour the product
never shows (a lying head), and so benchmarks can isolate the agent's share::

    with MiniReplica(enrolled=[key]) as rep:
        url = rep.url            # http://127.0.0.1:PORT
        rep.blocks(key)          # list of stored block records
"""

from __future__ import annotations

import base64
import binascii
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from ledger import Block, ChainHead, ChainVerifier
from ledger.errors import ChainError


class _Chain:
    def __init__(self) -> None:
        self.records: list[bytes] = []
        self.hashes: list[bytes] = []
        self.head: ChainHead | None = None


class MiniReplica:
    """Threaded HTTP replica on 127.0.0.1 (port 0 picks a free one)."""

    def __init__(self, enrolled: list[bytes], port: int = 0, max_body: int = 8 << 20) -> None:
        self._lock = threading.Lock()
        self._chains = {k.hex(): _Chain() for k in enrolled}
        self.max_body = max_body
        self.lie_head: dict[str, Any] | None = None
        """When set, every head answer is replaced by this (a replica contradicting us)..."""
        self.lie_after_pushes = 0
        """... once this many pushes were received."""
        self.pushes = 0
        self.body_sizes: list[int] = []
        self.stored_total = 0
        self.duplicates_total = 0
        self._server = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> MiniReplica:
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> MiniReplica:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def preload(self, key: bytes, blocks: list[Block]) -> None:
        """Store blocks directly (verified like a push); raises AssertionError if refused."""
        body = json.dumps({"blocks": [base64.b64encode(b.encode()).decode() for b in blocks]})
        status, obj = self.push(key.hex(), body.encode())
        assert status == 200, obj
        self.pushes -= 1
        self.body_sizes.pop()

    def blocks(self, key: bytes) -> list[bytes]:
        with self._lock:
            return list(self._chains[key.hex()].records)

    # -- protocol ---------------------------------------------------------------------

    def _head(self, chain: _Chain) -> dict[str, Any]:
        if self.lie_head is not None and self.pushes >= self.lie_after_pushes:
            return dict(self.lie_head)
        if chain.head is None:
            return {"height": -1, "hash": None}
        return {"height": chain.head.height, "hash": chain.head.hash.hex()}

    def push(self, gw: str, body: bytes) -> tuple[int, dict[str, Any]]:
        with self._lock:
            self.pushes += 1
            self.body_sizes.append(len(body))
            chain = self._chains.get(gw)
            if chain is None:
                return 403, {"error": "unknown-gateway", "detail": "not enrolled", "head": None}
            if len(body) > self.max_body:
                return 413, {"error": "too-large", "detail": "body too large",
                             "head": self._head(chain)}
            try:
                items = json.loads(body)["blocks"]
                blocks = [Block.decode(base64.b64decode(s, validate=True)) for s in items]
            except (ValueError, KeyError, TypeError, binascii.Error, ChainError) as exc:
                return 400, {"error": "malformed", "detail": str(exc), "index": 0,
                             "head": self._head(chain)}
            verifier = ChainVerifier(chain.head, bytes.fromhex(gw))
            new: list[tuple[bytes, bytes]] = []
            dups = 0
            for b in blocks:
                h = b.height
                if h < len(chain.records):
                    if chain.records[h] == b.encode():
                        dups += 1
                        continue
                    return 409, {"error": "fork", "detail": f"different block at {h}",
                                 "height": h, "head": self._head(chain)}
                expected = len(chain.records) + len(new)
                if h != expected:
                    return 409, {"error": "gap", "detail": f"expected {expected}",
                                 "expected_height": expected, "head": self._head(chain)}
                try:
                    head = verifier.add(b)
                except ChainError as exc:
                    return 422, {"error": exc.reason, "detail": str(exc), "height": h,
                                 "head": self._head(chain)}
                new.append((b.encode(), head.hash))
            for rec, hsh in new:
                chain.records.append(rec)
                chain.hashes.append(hsh)
            chain.head = verifier.head if new else chain.head
            self.stored_total += len(new)
            self.duplicates_total += dups
            return 200, {"head": self._head(chain), "stored": len(new), "duplicates": dups}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        rep = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass  # keep test output quiet

            def _send(self, status: int, obj: dict[str, Any]) -> None:
                data = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # noqa: N802
                parts = self.path.split("?")[0].strip("/").split("/")
                if len(parts) >= 4 and parts[:2] == ["v1", "gateways"]:
                    with rep._lock:
                        chain = rep._chains.get(parts[2])
                        if chain is None:
                            self._send(404, {"error": "unknown-gateway", "detail": "no"})
                            return
                        if parts[3] == "head":
                            self._send(200, rep._head(chain))
                            return
                        if parts[3] == "blocks" and len(parts) == 6 and parts[5] == "hash":
                            h = int(parts[4])
                            if 0 <= h < len(chain.hashes):
                                self._send(200, {"height": h, "hash": chain.hashes[h].hex()})
                            else:
                                self._send(404, {"error": "not-found", "detail": str(h)})
                            return
                self._send(404, {"error": "not-found", "detail": self.path})

            def do_POST(self) -> None:  # noqa: N802
                n = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(n)
                parts = self.path.strip("/").split("/")
                if len(parts) == 4 and parts[:2] == ["v1", "gateways"] and parts[3] == "blocks":
                    status, obj = rep.push(parts[2], body)
                    self._send(status, obj)
                    return
                self._send(404, {"error": "not-found", "detail": self.path})

        return Handler
