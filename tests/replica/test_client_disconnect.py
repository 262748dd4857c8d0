"""A gateway that goes away in the middle of its upload costs the replica one info line,
not a traceback, and stores nothing."""

from __future__ import annotations

import socket
import time
from pathlib import Path

from tests.support.chains import gateway_key, make_chain
from tests.support.replicaproc import ReplicaProcess, push


def test_client_disconnecting_mid_body_is_one_info_line(tmp_path: Path) -> None:
    key = gateway_key(b"disconnect")
    rep = ReplicaProcess(tmp_path / "rep", enroll=[key], log_level="info").start()
    try:
        with socket.create_connection(("127.0.0.1", rep.port), timeout=5) as s:
            s.sendall(f"POST /v1/gateways/{key.hex()}/blocks HTTP/1.1\r\n"
                      f"Host: 127.0.0.1\r\nContent-Type: application/json\r\n"
                      f"Content-Length: 100000\r\n\r\n".encode() + b'{"blocks": ["' + b"A" * 500)
            time.sleep(0.2)  # the replica is reading the body when the client goes away
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            text = rep.log.read_text()
            if "disconnected" in text or "Traceback" in text:
                break
            time.sleep(0.1)
        time.sleep(0.5)  # anything logged after the first line shows up too
        # the replica still serves, and stored nothing of the abandoned push
        chain = make_chain(b"disconnect", 3, 2)
        answer = push(rep.url, key, [b.encode() for b in chain])
        assert answer["stored"] == 3
    finally:
        rep.stop()
    text = rep.log.read_text()
    assert "Traceback" not in text and "ClientDisconnect" not in text, text
    lines = [ln for ln in text.splitlines() if "disconnected" in ln]
    assert len(lines) == 1, text
    assert lines[0].startswith("INFO") and key.hex()[:16] in lines[0], lines
