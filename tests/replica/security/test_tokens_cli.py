"""``meterchain replica token ...`` and the tools' tokens, as an operator uses them."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from meterchain.cli import main
from replica.auth import READ_CHAIN, READ_READINGS
from replica.storage.base import Storage
from replica.tokens import create_token
from tests.replica.conftest import RunningReplica, StorageFactory, enroll
from tests.support.chains import make_chain

TOKEN_RE = re.compile(r"mct_[0-9a-f]{16}_[0-9a-f]{64}")


def mc(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "meterchain", *args], capture_output=True,
                          text=True, timeout=60)


def test_token_lifecycle(storage_factory: StorageFactory, tmp_path: Path,
                         make_replica: Callable[..., RunningReplica]) -> None:
    cfg = tmp_path / "replica.toml"
    cfg.write_text(f'[storage]\nurl = "{storage_factory.url}"\n')
    r = mc("replica", "token", "create", "--name", "billing", "--scope", "read:readings",
           "--config", str(cfg))
    assert r.returncode == 0, r.stderr
    token = r.stdout.strip()
    assert TOKEN_RE.fullmatch(token)
    assert "not shown again" in r.stderr and token not in r.stderr
    token_id = token[4:20]

    listed = mc("replica", "token", "list", "--json", "--config", str(cfg))
    assert listed.returncode == 0 and token[21:] not in listed.stdout
    [row] = json.loads(listed.stdout)
    assert (row["id"], row["name"], row["scopes"], row["revoked_ms"]) == (
        token_id, "billing", ["read:readings"], None)
    table = mc("replica", "token", "list", "--config", str(cfg)).stdout
    assert token_id in table and token[21:] not in table

    storage = storage_factory.open()
    [rec] = storage.tokens()  # only the hash is stored
    assert rec.hash == hashlib.sha256(token.encode()).digest()
    assert token not in repr(rec) and token[21:] not in repr(rec)

    rep = make_replica(storage=storage)
    key = enroll(storage, b"tok-gw")
    assert rep.push(key, make_chain(b"tok-gw", 1, 2)).status_code == 200
    csv_path = f"/v1/gateways/{key.hex()}/readings.csv"
    auth = {"Authorization": f"Bearer {token}"}
    assert rep.anon.get(csv_path, headers=auth).status_code == 200
    assert rep.anon.get("/v1/gateways", headers=auth).status_code == 403  # not its scope

    r = mc("replica", "token", "revoke", token_id, "--config", str(cfg))
    assert r.returncode == 0, r.stderr
    r = rep.anon.get(csv_path, headers=auth)  # effective at once
    assert r.status_code == 401 and r.json()["error"] == "bad-token"
    rows = json.loads(mc("replica", "token", "list", "--json", "--config", str(cfg)).stdout)
    assert [t["revoked_ms"] is not None for t in rows if t["id"] == token_id] == [True]


def test_token_command_errors_are_one_line(storage_factory: StorageFactory,
                                           tmp_path: Path) -> None:
    cfg = tmp_path / "replica.toml"
    cfg.write_text(f'[storage]\nurl = "{storage_factory.url}"\n')
    for args, words in ((("create", "--name", "x", "--scope", "admin"), "unknown scope"),
                        (("create", "--name", "x", "--scope", ","), "at least one scope"),
                        (("create", "--name", " ", "--scope", "read:chain"), "--name"),
                        (("revoke", "0123456789abcdef"), "no token has id"),
                        (("revoke", "nothex"), "16-hex-character id")):
        r = mc("replica", "token", *args, "--config", str(cfg))
        assert r.returncode == 2 and words in r.stderr, (args, r.stderr)
        assert "Traceback" not in r.stderr


def test_mirror_and_audit_need_a_read_chain_token(
        make_replica: Callable[..., RunningReplica], other_storage: Storage, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("MC_REPLICA_TOKEN", raising=False)
    src, dst = make_replica(), make_replica(storage=other_storage)
    chain = make_chain(b"tools-gw", 4, 2)
    for rep in (src, dst):
        enroll(rep.storage, b"tools-gw")
    assert src.push(chain[0].header.gateway_key, chain).status_code == 200
    # least privilege: read:chain is enough; read:readings alone is not
    src_tok, _ = create_token(src.storage, "mirror", (READ_CHAIN,), 1)
    dst_tok, _ = create_token(dst.storage, "audit", (READ_CHAIN,), 1)
    weak, _ = create_token(src.storage, "billing", (READ_READINGS,), 1)
    (tmp_path / "src.tok").write_text(src_tok + "\n")
    (tmp_path / "dst.tok").write_text(dst_tok + "\n")
    (tmp_path / "weak.tok").write_text(weak + "\n")

    code = main(["replica", "mirror", "--from", src.url, "--to", dst.url, "-q"])
    out = capsys.readouterr()
    assert code == 2 and "token-required" in out.err
    code = main(["replica", "mirror", "--from", src.url, "--to", dst.url, "-q",
                 "--token-file", str(tmp_path / "weak.tok")])
    out = capsys.readouterr()
    assert code == 2 and "insufficient-scope" in out.err and weak not in out.err + out.out
    code = main(["replica", "mirror", "--from", src.url, "--to", dst.url, "-q",
                 "--token-file", str(tmp_path / "src.tok")])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert dst.head(chain[0].header.gateway_key)["height"] == 3

    code = main(["audit", src.url, dst.url, "-q", "--token-file", f"{src.url}={tmp_path}/src.tok",
                 "--token-file", f"{dst.url}={tmp_path}/dst.tok"])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert src_tok not in out.out + out.err and dst_tok not in out.out + out.err
    monkeypatch.setenv("MC_REPLICA_TOKEN", src_tok)  # valid on src only
    code = main(["audit", src.url, dst.url, "-q"])
    out = capsys.readouterr()
    assert code == 2 and "bad-token" in out.err and src_tok not in out.err
    code = main(["audit", src.url, dst.url, "-q", "--token-file", str(tmp_path / "nope")])
    out = capsys.readouterr()
    assert code == 2 and "--token-file" in out.err
