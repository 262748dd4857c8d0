"""Run the real replica server (``replica.app``) as a separate process on loopback.

Used by the forwarding end-to-end tests, the demo tests and ``bench/forward.py``::

    rep = ReplicaProcess(tmp_path / "rep", enroll=[gateway_key_bytes])
    rep.start()            # waits until /v1/health answers
    rep.url                # http://127.0.0.1:PORT
    rep.records(key)       # the replica's stored block records, from its database
    rep.stop(); rep.start()  # an outage: same port, same database
    rep.kill()             # SIGKILL

The database is SQLite in the given directory; gateways are enrolled directly in the
storage before the server starts (as ``meterchain replica enroll`` does).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from replica.storage import open_storage


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ReplicaProcess:
    """The replica app served by uvicorn in a child process."""

    def __init__(self, directory: Path, *, enroll: list[bytes], port: int | None = None,
                 limits: dict[str, object] | None = None,
                 tls: tuple[Path, Path] | None = None, log_level: str = "warning") -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.tls = tls
        """(certificate PEM, key PEM) to serve HTTPS."""
        self.log_level = log_level
        self.db = self.directory / "replica.db"
        self.storage_url = f"sqlite:///{self.db}"
        lim = {"rate_per_gateway": 0.0, "max_future_skew_ms": 10 * 365 * 86_400_000}
        lim.update(limits or {})
        lines = ["[listen]", 'host = "127.0.0.1"', f"port = {self.port}", "[storage]",
                 f'url = "{self.storage_url}"', "[limits]"]
        lines += [f"{k} = {json.dumps(v)}" for k, v in lim.items()]
        self.config = self.directory / "replica.toml"
        self.config.write_text("\n".join(lines) + "\n")
        for i, key in enumerate(enroll):
            self.enroll(key, f"gw-{i}")
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = self.directory / "replica.log"

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def enroll(self, key: bytes, name: str = "gw") -> None:
        """Enroll a gateway key (also while the server runs)."""
        enroll(self.storage_url, key, name)

    def start(self, timeout: float = 20.0) -> ReplicaProcess:
        env = dict(os.environ, MC_REPLICA_CONFIG=str(self.config))
        cmd = [sys.executable, "-m", "uvicorn", "--factory", "replica.app:app_from_env",
               "--host", "127.0.0.1", "--port", str(self.port), "--log-level", self.log_level,
               "--no-access-log"]
        if self.tls:
            cmd += ["--ssl-certfile", str(self.tls[0]), "--ssl-keyfile", str(self.tls[1])]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=log,
                                         cwd=Path(__file__).resolve().parents[2])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"replica exited with {self.proc.returncode}: "
                                   f"{self.log.read_text()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    pass
                if self.tls:
                    return self
                with urllib.request.urlopen(self.url + "/v1/health", timeout=1) as r:
                    if r.status == 200:
                        return self
            except (urllib.error.URLError, OSError):
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"replica did not come up in {timeout} s")

    def stop(self) -> None:
        """SIGTERM and wait (a clean shutdown)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def __enter__(self) -> ReplicaProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def records(self, key: bytes) -> list[bytes]:
        """Every block record the replica stored for ``key``, in height order."""
        storage = open_storage(self.storage_url)
        try:
            out: list[bytes] = []
            while True:
                batch = storage.blocks(key, len(out), 1000)
                if not batch:
                    return out
                out.extend(batch)
        finally:
            storage.close()

    def head(self, key: bytes) -> dict[str, object]:
        with urllib.request.urlopen(f"{self.url}/v1/gateways/{key.hex()}/head", timeout=5) as r:
            return dict(json.loads(r.read()))


def enroll(storage_url: str, key: bytes, name: str = "gw") -> None:
    """Enroll ``key`` in a replica database (works while the server runs)."""
    storage = open_storage(storage_url)
    try:
        if storage.gateway(key) is None:
            storage.enroll(key, name, None, int(time.time() * 1000))
    finally:
        storage.close()


def push(url: str, key: bytes, records: list[bytes]) -> dict[str, object]:
    """POST block records to a replica; return the JSON answer (raises on non-200)."""
    import base64

    body = json.dumps({"blocks": [base64.b64encode(r).decode() for r in records]}).encode()
    req = urllib.request.Request(f"{url}/v1/gateways/{key.hex()}/blocks", data=body,
                                 headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(req, timeout=10) as r:
        return dict(json.loads(r.read()))
