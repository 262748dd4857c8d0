"""Key files: formats, 0600, no overwrite, unsafe permissions refused, no secrets in errors."""

from __future__ import annotations

import stat
from pathlib import Path

import nacl.public
import nacl.signing
import pytest

import keyfiles as keys
from ledger.errors import KeyFileError


def test_gateway_key_files(tmp_path: Path) -> None:
    pub = keys.generate_gateway_key(tmp_path / "k")
    key_file = tmp_path / "k" / "gateway.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    lines = key_file.read_text().splitlines()
    assert lines[0] == "meterchain-ed25519-secret-key-v1" and len(lines[1]) == 64
    seed = keys.load_signing_key(key_file)
    assert bytes(nacl.signing.SigningKey(seed).verify_key) == pub
    assert (tmp_path / "k" / "gateway.pub").read_text() == pub.hex() + "\n"
    assert keys.load_public_key(tmp_path / "k" / "gateway.pub") == pub
    assert keys.load_public_key(pub.hex()) == pub
    assert keys.public_from_seed(seed) == pub


def test_utility_key_pair(tmp_path: Path) -> None:
    pub = keys.generate_utility_key(tmp_path)
    secret = keys.load_utility_secret(tmp_path / "utility.key")
    assert bytes(nacl.public.PrivateKey(secret).public_key) == pub
    assert (tmp_path / "utility.key").read_text().startswith("meterchain-x25519-secret-key-v1\n")
    with pytest.raises(KeyFileError, match="not a meterchain-ed25519"):
        keys.load_signing_key(tmp_path / "utility.key")


def test_refuses_to_overwrite(tmp_path: Path) -> None:
    keys.generate_gateway_key(tmp_path)
    before = (tmp_path / "gateway.key").read_bytes()
    with pytest.raises(KeyFileError, match="refusing to overwrite"):
        keys.generate_gateway_key(tmp_path)
    assert (tmp_path / "gateway.key").read_bytes() == before


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_unsafe_permissions_are_refused_without_leaking_the_key(tmp_path: Path,
                                                                mode: int) -> None:
    keys.generate_gateway_key(tmp_path)
    path = tmp_path / "gateway.key"
    secret_hex = path.read_text().splitlines()[1]
    path.chmod(mode)
    with pytest.raises(KeyFileError) as info:
        keys.load_signing_key(path)
    msg = str(info.value)
    assert f"chmod 600 {path}" in msg and f"{mode:04o}" in msg
    assert secret_hex not in msg


@pytest.mark.parametrize("text", [
    "", "meterchain-ed25519-secret-key-v1\n", "meterchain-ed25519-secret-key-v1\nzz\n",
    "meterchain-ed25519-secret-key-v1\n" + "ab" * 31 + "\n", "\xff\xfe",
])
def test_malformed_key_files(tmp_path: Path, text: str) -> None:
    path = tmp_path / "gateway.key"
    path.write_bytes(text.encode("latin-1"))
    path.chmod(0o600)
    with pytest.raises(KeyFileError):
        keys.load_signing_key(path)


def test_missing_key_and_bad_public_keys(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="not found"):
        keys.load_signing_key(tmp_path / "nope.key")
    with pytest.raises(KeyFileError, match="no such key file"):
        keys.load_public_key("abc")
    (tmp_path / "bad.pub").write_text("12\n")
    with pytest.raises(KeyFileError, match="64 hex"):
        keys.load_public_key(tmp_path / "bad.pub")
