"""Key files: the gateway's Ed25519 signing key and the utility's X25519 key pair.

Formats (text, ASCII, newline-terminated lines)::

    gateway.key   meterchain-ed25519-secret-key-v1\\n<64 hex: 32-byte seed>\\n   (mode 0600)
    gateway.pub   <64 hex: Ed25519 public key>\\n
    utility.key   meterchain-x25519-secret-key-v1\\n<64 hex: 32-byte secret>\\n  (mode 0600)
    utility.pub   <64 hex: X25519 public key>\\n

Private key files are created with ``O_EXCL`` and mode 0600 (never overwritten) and are
refused when group or others may read them. Private key bytes never appear in logs,
error messages or reprs.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import nacl.public
import nacl.signing

from ledger.errors import KeyFileError

GATEWAY_KEY = "gateway.key"
GATEWAY_PUB = "gateway.pub"
UTILITY_KEY = "utility.key"
UTILITY_PUB = "utility.pub"
ED25519_TAG = "meterchain-ed25519-secret-key-v1"
X25519_TAG = "meterchain-x25519-secret-key-v1"


def _create_exclusive(path: Path, text: str, mode: int) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError:
        raise KeyFileError(f"{path}: already exists; refusing to overwrite a key") from None
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot create: {exc.strerror}") from None
    try:
        os.fchmod(fd, mode)  # umask may have narrowed or (for .pub) left it as asked
        os.write(fd, text.encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)


def _generate(directory: str | os.PathLike[str], key_name: str, pub_name: str, tag: str,
              secret: bytes, public: bytes) -> bytes:
    d = Path(directory)
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise KeyFileError(f"{d}: cannot create key directory: {exc.strerror}") from None
    for name in (key_name, pub_name):
        if (d / name).exists():
            raise KeyFileError(f"{d / name}: already exists; refusing to overwrite a key")
    _create_exclusive(d / key_name, f"{tag}\n{secret.hex()}\n", 0o600)
    _create_exclusive(d / pub_name, f"{public.hex()}\n", 0o644)
    return public


def generate_gateway_key(directory: str | os.PathLike[str]) -> bytes:
    """Create ``gateway.key`` (0600) and ``gateway.pub`` in ``directory``; return the public key.

    Raises:
        KeyFileError: a key file already exists or cannot be written.
    """
    sk = nacl.signing.SigningKey.generate()
    return _generate(directory, GATEWAY_KEY, GATEWAY_PUB, ED25519_TAG, bytes(sk),
                     bytes(sk.verify_key))


def generate_utility_key(directory: str | os.PathLike[str]) -> bytes:
    """Create ``utility.key`` (0600) and ``utility.pub`` in ``directory``; return the public key.

    Raises:
        KeyFileError: a key file already exists or cannot be written.
    """
    sk = nacl.public.PrivateKey.generate()
    return _generate(directory, UTILITY_KEY, UTILITY_PUB, X25519_TAG, bytes(sk),
                     bytes(sk.public_key))


def _load_secret(path: str | os.PathLike[str], tag: str) -> bytes:
    p = Path(path)
    try:
        fd = os.open(p, os.O_RDONLY)
    except FileNotFoundError:
        raise KeyFileError(f"{p}: key file not found") from None
    except OSError as exc:
        raise KeyFileError(f"{p}: cannot read key file: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise KeyFileError(f"{p}: not a regular file")
        mode = stat.S_IMODE(st.st_mode)
        if mode & 0o077:
            raise KeyFileError(
                f"{p}: private key file has mode {mode:04o}, readable by others; "
                f"run `chmod 600 {p}`"
            )
        raw = os.read(fd, 4096)
    except OSError as exc:
        raise KeyFileError(f"{p}: cannot read key file: {exc.strerror}") from None
    finally:
        os.close(fd)
    try:
        lines = raw.decode("ascii").split("\n")
    except UnicodeDecodeError:
        raise KeyFileError(f"{p}: not a meterchain key file (not ASCII text)") from None
    if lines[0].strip() != tag:
        raise KeyFileError(f"{p}: not a {tag} file (first line differs)")
    secret = _unhex(lines[1].strip() if len(lines) > 1 else "")
    if secret is None or len(secret) != 32:
        raise KeyFileError(f"{p}: second line must be 64 hex characters (32-byte key)")
    return secret


def _unhex(text: str) -> bytes | None:
    try:
        return bytes.fromhex(text)
    except ValueError:
        return None


def load_signing_key(path: str | os.PathLike[str]) -> bytes:
    """The 32-byte Ed25519 seed from a ``gateway.key`` file.

    Raises:
        KeyFileError: missing, unreadable, malformed, or readable by group/others.
    """
    return _load_secret(path, ED25519_TAG)


def load_utility_secret(path: str | os.PathLike[str]) -> bytes:
    """The 32-byte X25519 secret key from a ``utility.key`` file.

    Raises:
        KeyFileError: missing, unreadable, malformed, or readable by group/others.
    """
    return _load_secret(path, X25519_TAG)


def load_public_key(path_or_hex: str | os.PathLike[str]) -> bytes:
    """A 32-byte public key from 64 hex characters or from a ``.pub`` file holding them.

    Raises:
        KeyFileError: neither valid hex nor a readable file with one.
    """
    text = os.fspath(path_or_hex)
    if isinstance(text, str):
        key = _unhex(text.strip())
        if key is not None and len(key) == 32:
            return key
    p = Path(path_or_hex)
    try:
        raw = p.read_text(encoding="ascii")
    except FileNotFoundError:
        raise KeyFileError(f"{p}: not 64 hex characters and no such key file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise KeyFileError(f"{p}: cannot read public key: {exc}") from None
    key = _unhex(raw.strip())
    if key is None or len(key) != 32:
        raise KeyFileError(f"{p}: must hold 64 hex characters (a 32-byte public key)")
    return key


def public_from_seed(seed: bytes) -> bytes:
    """The Ed25519 public key of a gateway seed."""
    return bytes(nacl.signing.SigningKey(seed).verify_key)
