"""Headless Chromium (Debian's package, driven by Playwright) and a replica app served
by uvicorn on loopback, for the web view's tests and ``bench/ui.py``.

``playwright install`` downloads its own browsers, which these machines cannot fetch;
the system's ``chromium`` (``apt-get install chromium``, done by ``tests/run.sh``) is
driven through ``executable_path``. A missing browser raises: the tests fail, never skip.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import uvicorn

from tests.support.pgserver import free_port

CHROMIUM_ENV = "MC_CHROMIUM"


def chromium_path() -> str:
    """The Chromium binary to drive (``$MC_CHROMIUM`` or ``chromium`` on PATH).

    Raises:
        RuntimeError: no Chromium found (install it: ``apt-get install chromium``).
    """
    path = os.environ.get(CHROMIUM_ENV) or shutil.which("chromium") \
        or shutil.which("chromium-browser")
    if not path:
        raise RuntimeError("no Chromium: apt-get install chromium (tests/run.sh does), "
                           f"or set {CHROMIUM_ENV}")
    return path


def launch(playwright: Any) -> Any:
    """A headless Chromium browser from the system's package."""
    return playwright.chromium.launch(executable_path=chromium_path(), headless=True,
                                      args=["--no-sandbox", "--disable-gpu"])


class ServedApp:
    """An ASGI app served by uvicorn on 127.0.0.1 in a daemon thread."""

    def __init__(self, app: Any, tls: tuple[Path, Path] | None = None) -> None:
        self.port = free_port()
        ssl = {} if tls is None else {"ssl_certfile": str(tls[0]), "ssl_keyfile": str(tls[1])}
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port,
                                                    log_level="warning", lifespan="on", **ssl))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"app did not start on port {self.port}")
            time.sleep(0.01)
        self.url = f"{'http' if tls is None else 'https'}://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(15)


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate and key for 127.0.0.1 (openssl), as PEM files."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "2", "-subj", "/CN=127.0.0.1", "-addext",
                    "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    return cert, key
