"""``meterchain replica ...`` as an operator runs it: real processes, real config files."""

from __future__ import annotations

import json
import signal
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx
import nacl.public
import pytest

from keyfiles import load_utility_secret
from ledger.errors import ConfigError, KeyFileError
from replica.config import load_config
from tests.replica.conftest import StorageFactory
from tests.support.chains import encode_b64, gateway_key, make_chain
from tests.support.pgserver import free_port


def mc(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "meterchain", *args], capture_output=True,
                          text=True, timeout=60)


def write_config(tmp_path: Path, url: str, port: int = 0, extra: str = "") -> Path:
    p = tmp_path / "replica.toml"
    p.write_text(f'[listen]\nhost = "127.0.0.1"\nport = {port}\n\n[storage]\nurl = "{url}"\n'
                 f"{extra}")
    return p


def test_enroll_revoke_list(storage_factory: StorageFactory, tmp_path: Path) -> None:
    cfg = str(write_config(tmp_path, storage_factory.url))
    key = gateway_key(b"cli-gw").hex()
    r = mc("replica", "enroll", key, "--name", "north", "--site", "plant 2", "--config", cfg)
    assert r.returncode == 0, r.stderr
    assert key in r.stdout
    r = mc("replica", "enroll", key, "--name", "again", "--config", cfg)
    assert r.returncode == 2 and "already enrolled" in r.stderr
    r = mc("replica", "enroll", "abc", "--name", "x", "--config", cfg)
    assert r.returncode == 2 and "64 hex characters" in r.stderr
    r = mc("replica", "enroll", "ab" * 32, "--name", "typo", "--config", cfg)  # not a point
    assert r.returncode == 2 and "not a valid Ed25519 public key" in r.stderr
    r = mc("replica", "revoke", key, "--at", "2026-01-31T12:00:00Z", "--config", cfg)
    assert r.returncode == 0, r.stderr
    r = mc("replica", "revoke", gateway_key(b"nobody").hex(), "--config", cfg)
    assert r.returncode == 2 and "not enrolled" in r.stderr
    r = mc("replica", "revoke", key, "--at", "yesterday", "--config", cfg)
    assert r.returncode == 2 and "--at" in r.stderr
    r = mc("replica", "list", "--json", "--config", cfg)
    assert r.returncode == 0, r.stderr
    [g] = json.loads(r.stdout)
    assert (g["key"], g["name"], g["site"], g["height"]) == (key, "north", "plant 2", -1)
    assert g["revoked_at_ms"] == 1_769_860_800_000
    r = mc("replica", "list", "--config", cfg)
    assert "north (plant 2)" in r.stdout and "1 gateway(s)" in r.stdout


def test_missing_config_is_one_clear_line(tmp_path: Path) -> None:
    r = mc("replica", "list", "--config", str(tmp_path / "nope.toml"))
    assert r.returncode == 2
    assert "nope.toml" in r.stderr and "Traceback" not in r.stderr


def _serve(cfg: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "meterchain", "replica", "serve", "--config",
                             str(cfg)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)


def _wait_up(proc: subprocess.Popen[str], url: str,
             verify: bool | ssl.SSLContext = True) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out = proc.stdout.read() if proc.stdout else ""
            raise AssertionError(f"replica exited with {proc.returncode}: {out}")
        try:
            if httpx.get(f"{url}/v1/health", timeout=1, verify=verify).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    raise AssertionError("replica did not come up")


def _stop(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.mark.slow
def test_serve_process_restart_keeps_chain(storage_factory: StorageFactory,
                                           tmp_path: Path) -> None:
    port = free_port()
    cfg = write_config(tmp_path, storage_factory.url, port)
    url = f"http://127.0.0.1:{port}"
    key = gateway_key(b"served").hex()
    chain = make_chain(b"served", 5, 4)
    proc = _serve(cfg)
    try:
        _wait_up(proc, url)
        # enrolling while the server runs takes effect on the next push
        r = httpx.post(f"{url}/v1/gateways/{key}/blocks", json={"blocks": encode_b64(chain[:3])})
        assert r.status_code == 403
        assert mc("replica", "enroll", key, "--name", "gw", "--config", str(cfg)).returncode == 0
        r = httpx.post(f"{url}/v1/gateways/{key}/blocks", json={"blocks": encode_b64(chain[:3])})
        assert r.status_code == 200, r.text
    finally:
        _stop(proc)
    assert proc.returncode == 0
    proc = _serve(cfg)
    try:
        _wait_up(proc, url)
        assert httpx.get(f"{url}/v1/gateways/{key}/head").json()["height"] == 2
        r = httpx.post(f"{url}/v1/gateways/{key}/blocks", json={"blocks": encode_b64(chain[3:])})
        assert r.json()["head"] == {"height": 4, "hash": chain[4].hash.hex()}
    finally:
        _stop(proc)


@pytest.mark.slow
def test_serve_https_with_the_configured_certificate(tmp_path: Path) -> None:
    """[listen] tls_cert/tls_key: the replica itself serves HTTPS that gateways can pin."""
    cert, keyf = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", str(keyf), "-out",
                    str(cert), "-days", "2", "-subj", "/CN=127.0.0.1", "-addext",
                    "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    port = free_port()
    cfg = write_config(tmp_path, f"sqlite:///{tmp_path / 'r.db'}", port)
    cfg.write_text(cfg.read_text().replace(
        "[storage]", 'tls_cert = "cert.pem"\ntls_key = "key.pem"\n\n[storage]'))
    proc = _serve(cfg)
    try:
        _wait_up(proc, f"https://127.0.0.1:{port}",
                 verify=ssl.create_default_context(cafile=str(cert)))
        with pytest.raises(httpx.TransportError):  # plain HTTP is not served
            httpx.get(f"http://127.0.0.1:{port}/v1/health", timeout=2)
    finally:
        _stop(proc)
    cfg.write_text(cfg.read_text().replace('tls_key = "key.pem"\n', ""))
    r = mc("replica", "serve", "--config", str(cfg))
    assert r.returncode == 2 and "listen.tls_key" in r.stderr


def test_config_errors_name_the_key(tmp_path: Path) -> None:
    p = tmp_path / "r.toml"
    p.write_text('[limits]\nmax_body_bytes = "big"\nrate_per_gateway = -1\nnope = 1\n'
                 '[listen]\nport = 70000\n[storage]\nurl = "mysql://x"\n[extra]\n')
    with pytest.raises(ConfigError) as info:
        load_config(p)
    text = str(info.value)
    for key in ("limits.max_body_bytes", "limits.rate_per_gateway", "limits.nope",
                "listen.port", "storage.url", "extra"):
        assert key in text, key
    p.write_text("not = [toml")
    with pytest.raises(ConfigError, match="TOML"):
        load_config(p)


def test_config_defaults_and_relative_paths(tmp_path: Path) -> None:
    p = tmp_path / "r.toml"
    p.write_text('[storage]\nurl = "sqlite:///data/r.db"\n[keys]\nutility_secret_key = "u.key"\n'
                 "[limits]\nrate_per_gateway = 5\nmax_blocks_per_batch = 10\n")
    cfg = load_config(p)
    assert cfg.storage_url == f"sqlite:///{tmp_path.resolve() / 'data' / 'r.db'}"
    assert cfg.utility_secret_key == tmp_path / "u.key"
    assert (cfg.limits.rate_per_gateway, cfg.limits.max_blocks_per_batch) == (5.0, 10)
    assert cfg.limits.max_body_bytes == 8 * 1024 * 1024
    with pytest.raises(KeyFileError, match="u.key"):
        load_utility_secret(cfg.utility_secret_key)


def test_utility_key_from_keygen_opens_sealed_payloads_and_must_be_private(
        tmp_path: Path) -> None:
    """The replica reads the utility key file `meterchain keygen --utility` writes, and
    refuses it when others can read it."""
    r = mc("keygen", "--out", str(tmp_path), "--utility")
    assert r.returncode == 0, r.stderr
    sk = load_utility_secret(tmp_path / "utility.key")
    assert bytes(nacl.public.PrivateKey(sk).public_key).hex() == (
        tmp_path / "utility.pub").read_text().strip()
    (tmp_path / "utility.key").chmod(0o644)
    with pytest.raises(KeyFileError, match="chmod 600"):
        load_utility_secret(tmp_path / "utility.key")
    cfg = write_config(tmp_path, f"sqlite:///{tmp_path / 'r.db'}",
                       extra=f'[keys]\nutility_secret_key = "{tmp_path / "utility.key"}"\n')
    r = mc("replica", "serve", "--config", str(cfg))
    assert r.returncode == 2 and "chmod 600" in r.stderr and "Traceback" not in r.stderr


def test_replica_commands_without_the_replica_extra(tmp_path: Path) -> None:
    """A gateway install (no fastapi, uvicorn, httpx, psycopg) still administers a SQLite
    replica and says which extra serving needs."""
    cfg = write_config(tmp_path, f"sqlite:///{tmp_path / 'r.db'}")
    key = gateway_key(b"no-extra").hex()
    code = (
        "import sys\n"
        "for m in ('httpx', 'fastapi', 'uvicorn', 'psycopg', 'psycopg_pool'):\n"
        "    sys.modules[m] = None\n"
        "from meterchain.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-c", code, *args], capture_output=True,
                              text=True, timeout=60)

    r = run("replica", "enroll", key, "--name", "gw", "--config", str(cfg))
    assert r.returncode == 0, r.stderr
    r = run("replica", "list", "--config", str(cfg))
    assert r.returncode == 0 and key in r.stdout
    r = run("replica", "serve", "--config", str(cfg))
    assert r.returncode == 2 and "meterchain[replica]" in r.stderr
