"""Luxembourg Smarty P1 frames: the DSMR telegram encrypted with AES-128-GCM. Pure.

Smarty meters (Luxembourg Smarty P1 specification v1.1.3, "P1 software - channel
security") wrap each DSMR 5 telegram in a DLMS general-glo-ciphering frame::

    DB 08 <system title: 8> 82 <length: u16 BE> 30 <frame counter: u32 BE>
    <ciphertext: length - 17> <GCM tag: 12>

``length`` counts the security byte, the frame counter, the ciphertext and the tag.
The nonce is the system title followed by the frame counter; the additional
authenticated data is the security byte ``0x30`` followed by the fixed
authentication key ``00112233445566778899AABBCCDDEEFF``. The 16-byte decryption key
(GUEK) comes from the grid operator. The plaintext is an ordinary telegram with
its CRC, parsed by :func:`drivers.dsmr.parse_telegram`.

Needs the ``cryptography`` package (``pip install meterchain[smarty]``).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from ledger.errors import FrameError

TAG = 0xDB
SYSTEM_TITLE_LEN = 8
LONG_LENGTH = 0x82
SECURITY_CONTROL = 0x30
AUTH_KEY = bytes.fromhex("00112233445566778899AABBCCDDEEFF")
GCM_TAG_LEN = 12
HEADER_LEN = 18
_HEADER = struct.Struct(">BB8sBHBI")


class DecryptError(FrameError):
    """A Smarty frame does not authenticate with the configured key."""


def parse_key(text: str) -> bytes:
    """A 32-hex-digit key -> 16 bytes.

    Raises:
        ValueError: not 32 hex digits.
    """
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) != 16:
        raise ValueError("must be 32 hex digits (the 16-byte key from the grid operator)")
    return key


def _aad() -> bytes:
    return bytes((SECURITY_CONTROL,)) + AUTH_KEY


def encrypt(telegram: bytes, key: bytes, system_title: bytes, frame_counter: int) -> bytes:
    """Wrap ``telegram`` in a Smarty frame (what a Smarty meter sends; for simulators)."""
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    nonce = system_title + frame_counter.to_bytes(4, "big")
    enc = Cipher(algorithms.AES(key), modes.GCM(nonce)).encryptor()
    enc.authenticate_additional_data(_aad())
    ciphertext = enc.update(telegram) + enc.finalize()
    tag = enc.tag[:GCM_TAG_LEN]
    length = 5 + len(ciphertext) + GCM_TAG_LEN
    header = _HEADER.pack(TAG, SYSTEM_TITLE_LEN, system_title, LONG_LENGTH, length,
                          SECURITY_CONTROL, frame_counter)
    return header + ciphertext + tag


def decrypt(frame: bytes, key: bytes) -> bytes:
    """The telegram inside one complete Smarty frame.

    Raises:
        FrameError: the header is malformed or the length does not match.
        DecryptError: the GCM tag does not verify (wrong key or corrupted frame).
    """
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    if len(frame) < HEADER_LEN + GCM_TAG_LEN:
        raise FrameError(f"Smarty frame too short ({len(frame)} bytes)")
    tag, st_len, title, long_len, length, sc, counter = _HEADER.unpack_from(frame)
    if (tag, st_len, long_len, sc) != (TAG, SYSTEM_TITLE_LEN, LONG_LENGTH, SECURITY_CONTROL):
        raise FrameError("not a Smarty frame header (want DB 08 .. 82 .. 30)")
    if len(frame) != 13 + length:
        raise FrameError(f"Smarty frame length says {13 + length} bytes, got {len(frame)}")
    nonce = title + counter.to_bytes(4, "big")
    body = frame[HEADER_LEN:-GCM_TAG_LEN]
    dec = Cipher(algorithms.AES(key),
                 modes.GCM(nonce, frame[-GCM_TAG_LEN:], min_tag_length=GCM_TAG_LEN)).decryptor()
    dec.authenticate_additional_data(_aad())
    try:
        return dec.update(body) + dec.finalize()
    except InvalidTag:
        raise DecryptError(
            f"Smarty frame {counter} does not decrypt with the configured key",
            hint="check options.key is the P1 key (GUEK) your grid operator issued "
                 "for this meter") from None


@dataclass
class SmartyFramer:
    """Cut a byte stream into complete Smarty frames (bytes outside frames counted)."""

    max_frame_bytes: int = 16_384
    garbage_bytes: int = 0
    """Bytes outside frames after the first frame since (re)start."""
    sync_bytes: int = 0
    """Bytes dropped before the first frame since (re)start."""
    _buf: bytearray = field(default_factory=bytearray)
    _synced: bool = False

    def resync(self) -> None:
        """Forget partial data (after a port flush)."""
        self._buf.clear()
        self._synced = False

    def _drop(self, n: int) -> None:
        if self._synced:
            self.garbage_bytes += n
        else:
            self.sync_bytes += n
        del self._buf[:n]

    def feed(self, data: bytes) -> list[bytes]:
        """Add ``data``; return the frames it completed."""
        out: list[bytes] = []
        self._buf += data
        while True:
            start = self._buf.find(bytes((TAG, SYSTEM_TITLE_LEN)))
            if start < 0:
                keep = 1 if self._buf.endswith(bytes((TAG,))) else 0
                self._drop(len(self._buf) - keep)
                return out
            self._drop(start)
            if len(self._buf) < HEADER_LEN:
                return out
            length = int.from_bytes(self._buf[11:13], "big")
            total = 13 + length
            if self._buf[10] != LONG_LENGTH or length < 5 + GCM_TAG_LEN or (
                    total > self.max_frame_bytes):
                self._drop(1)  # a false start: skip its first byte
                continue
            if len(self._buf) < total:
                return out
            out.append(bytes(self._buf[:total]))
            del self._buf[:total]
            self._synced = True
