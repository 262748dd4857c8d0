"""Client certificates (listen.tls_client_ca) in addition to tokens, on a served replica."""

from __future__ import annotations

import ssl
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from replica.auth import READ_CHAIN
from replica.storage.base import open_storage
from replica.tokens import create_token
from tests.replica.test_cli import _serve, _stop, mc, write_config
from tests.support.pgserver import free_port


def openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def make_cert(tmp: Path, name: str, ca: tuple[Path, Path] | None = None,
              san: str | None = None) -> tuple[Path, Path]:
    cert, key = tmp / f"{name}.pem", tmp / f"{name}.key"
    if ca is None:
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj",
                f"/CN={name}", *(["-addext", f"subjectAltName={san}"] if san else []))
        return cert, key
    csr = tmp / f"{name}.csr"
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={name}")
    openssl("x509", "-req", "-in", str(csr), "-CA", str(ca[0]), "-CAkey", str(ca[1]),
            "-CAcreateserial", "-out", str(cert), "-days", "2")
    return cert, key


@pytest.mark.slow
def test_client_certificate_required_besides_the_token(tmp_path: Path) -> None:
    server = make_cert(tmp_path, "127.0.0.1", san="IP:127.0.0.1")
    ca = make_cert(tmp_path, "clients-ca")
    client = make_cert(tmp_path, "auditor", ca=ca)
    stranger = make_cert(tmp_path, "stranger")  # self-signed, not from the CA
    port = free_port()
    db = f"sqlite:///{tmp_path / 'r.db'}"
    cfg = write_config(tmp_path, db, port)
    cfg.write_text(cfg.read_text().replace(
        "[storage]", f'tls_cert = "{server[0]}"\ntls_key = "{server[1]}"\n'
        f'tls_client_ca = "{ca[0]}"\n\n[storage]'))
    storage = open_storage(db)
    token, _ = create_token(storage, "auditor", (READ_CHAIN,), 1)
    storage.close()

    def ctx(cert: tuple[Path, Path] | None) -> ssl.SSLContext:
        c = ssl.create_default_context(cafile=str(server[0]))
        if cert:
            c.load_cert_chain(str(cert[0]), str(cert[1]))
        return c

    url = f"https://127.0.0.1:{port}"
    auth = {"Authorization": f"Bearer {token}"}
    proc = _serve(cfg)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                r = httpx.get(f"{url}/v1/health", verify=ctx(client), timeout=2)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline and proc.poll() is None
                time.sleep(0.1)
        assert r.status_code == 200
        assert httpx.get(f"{url}/v1/gateways", verify=ctx(client), headers=auth,
                         timeout=5).status_code == 200
        # the certificate does not replace the token
        assert httpx.get(f"{url}/v1/gateways", verify=ctx(client), timeout=5
                         ).status_code == 401
        for cert in (None, stranger):  # no certificate, or one the CA did not sign
            with pytest.raises(httpx.TransportError):
                httpx.get(f"{url}/v1/gateways", verify=ctx(cert), headers=auth,
                          timeout=5).raise_for_status()
    finally:
        _stop(proc)
    cfg.write_text(cfg.read_text().replace("tls_cert", "#").replace("tls_key", "#"))
    r = mc("replica", "serve", "--config", str(cfg))
    assert r.returncode == 2 and "listen.tls_client_ca" in r.stderr
