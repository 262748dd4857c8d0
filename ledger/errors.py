"""Every error meterchain raises on purpose, under a few roots.

Roots:

- :class:`ConfigError` -- a config file, profile file or command-line value is wrong.
  Carries the key path (``meters[2].unit``) and what is wrong.
- :class:`DeviceError` -- talking to a meter failed. Carries the bus, unit and register.
- :class:`ChainError` -- bytes do not form a valid block, chain or proof. Carries the
  height at which verification failed and a stable machine-readable ``reason``.
- :class:`StoreError` -- the local block store cannot be opened or written.
- :class:`ForwardingError` -- a replica refused, contradicted or could not be reached.

Mismatch errors carry both values (``expected`` and ``actual``) so an operator can
see exactly what differed. Messages never contain private key material.
"""

from __future__ import annotations


class MeterchainError(Exception):
    """Root of every error meterchain raises on purpose."""


# --- configuration -------------------------------------------------------------------


class ConfigError(MeterchainError):
    """A configuration value is wrong. ``path`` names the key (``meters[2].unit``)."""

    def __init__(self, path: str, message: str, *, source: str | None = None) -> None:
        self.path = path
        self.message = message
        self.source = source
        where = f"{source}: " if source else ""
        super().__init__(f"{where}{path}: {message}" if path else f"{where}{message}")


class ConfigErrors(ConfigError):
    """Several configuration problems found at once; ``errors`` lists each one."""

    def __init__(self, errors: list[ConfigError], *, source: str | None = None) -> None:
        self.errors = list(errors)
        lines = "\n".join(str(e) for e in self.errors)
        super().__init__("", f"{len(self.errors)} problem(s):\n{lines}", source=source)


# --- devices ---------------------------------------------------------------------------


class DeviceError(MeterchainError):
    """Talking to a meter failed.

    ``bus`` names the port or host, ``unit`` the Modbus unit id (or meter address),
    ``register`` the first register involved; any may be ``None`` when not applicable.
    ``hint`` says what to check next.
    """

    def __init__(
        self,
        message: str,
        *,
        bus: str | None = None,
        unit: int | None = None,
        register: int | None = None,
        hint: str | None = None,
    ) -> None:
        self.bus = bus
        self.unit = unit
        self.register = register
        self.hint = hint
        parts = []
        if bus is not None:
            parts.append(f"bus {bus}")
        if unit is not None:
            parts.append(f"unit {unit}")
        if register is not None:
            parts.append(f"register {register}")
        where = f"[{', '.join(parts)}] " if parts else ""
        text = f"{where}{message}"
        if hint:
            text += f" -- {hint}"
        super().__init__(text)


class DeviceTimeout(DeviceError):
    """The device did not answer in time."""


class DeviceExceptionResponse(DeviceError):
    """The device answered with a protocol exception (e.g. Modbus illegal address)."""

    def __init__(self, message: str, *, code: int, **kw: object) -> None:
        self.code = code
        super().__init__(message, **kw)  # type: ignore[arg-type]


class FrameError(DeviceError):
    """A frame from the device was malformed or failed its checksum."""


# --- chain ---------------------------------------------------------------------------


class ChainError(MeterchainError):
    """Bytes do not form a valid block, chain or proof.

    ``reason`` is a stable short code (``bad-signature``, ``broken-link``, ...), the
    same string the corruption test vectors name in ``want_error``. ``height`` is the
    height of the first failing block when known.
    """

    reason = "invalid"

    def __init__(self, message: str, *, height: int | None = None) -> None:
        self.height = height
        self.message = message
        super().__init__(self._render())

    def _render(self) -> str:
        at = f"height {self.height}: " if self.height is not None else ""
        return f"{at}{self.reason}: {self.message}"

    def at_height(self, height: int) -> ChainError:
        """Set the height the error is reported at (e.g. the chain position) and return self."""
        self.height = height
        self.args = (self._render(),)
        return self


class MismatchError(ChainError):
    """A value differs from the one it must equal; carries both."""

    reason = "mismatch"

    def __init__(
        self, message: str, *, expected: object, actual: object, height: int | None = None
    ) -> None:
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"{message} (expected {_show(expected)}, got {_show(actual)})", height=height
        )


def _show(value: object) -> str:
    if isinstance(value, bytes | bytearray):
        return bytes(value).hex()
    return repr(value)


class MalformedError(ChainError):
    """Bytes cannot be decoded as the documented encoding."""

    reason = "malformed"


class UnsupportedVersionError(MismatchError):
    """The format version is not one this code understands."""

    reason = "unsupported-version"


class SignatureError(ChainError):
    """The Ed25519 signature does not verify against the block's key."""

    reason = "bad-signature"


class BrokenLinkError(MismatchError):
    """A block's previous-hash field is not the hash of the block before it."""

    reason = "broken-link"


class HeightError(MismatchError):
    """A block's height is not the one that must come next (gap, repeat or rollback)."""

    reason = "height-mismatch"


class KeyChangeError(MismatchError):
    """A block is signed by a different gateway key than the chain so far."""

    reason = "key-change"


class MerkleMismatchError(MismatchError):
    """The readings do not hash to the Merkle root in the header."""

    reason = "merkle-mismatch"


class PayloadHashMismatchError(MismatchError):
    """The payload bytes do not hash to the payload hash in the header."""

    reason = "payload-hash-mismatch"


class CountMismatchError(MismatchError):
    """The payload holds a different number of readings than the header says."""

    reason = "count-mismatch"


class DigestMismatchError(MismatchError):
    """An export file's closing SHA-256 digest does not match the bytes before it."""

    reason = "digest-mismatch"


class TimeError(ChainError):
    """A block's time span is inverted, goes backwards, or lies in the future."""

    reason = "bad-time"


class ProofError(ChainError):
    """An inclusion proof does not prove what it claims."""

    reason = "bad-proof"


class ForkError(ChainError):
    """Fork evidence is not two valid, different signed headers at one height."""

    reason = "bad-fork-evidence"


class DecryptError(ChainError):
    """A sealed payload cannot be opened with the given key."""

    reason = "decrypt-failed"


# --- storage ---------------------------------------------------------------------------


class StoreError(MeterchainError):
    """The local block store cannot be opened, read or written."""


class StoreFullError(StoreError):
    """The disk (or the configured budget) has no room for the next block."""


class StoreCorruptError(StoreError):
    """Stored bytes are damaged beyond a torn tail (a bad record inside committed data)."""


class KeyFileError(MeterchainError):
    """A key file is missing, unreadable, malformed or has unsafe permissions."""


# --- forwarding ------------------------------------------------------------------------


class ForwardingError(MeterchainError):
    """A replica could not be reached, refused a batch, or contradicted the local chain."""

    def __init__(self, message: str, *, replica: str | None = None) -> None:
        self.replica = replica
        super().__init__(f"replica {replica}: {message}" if replica else message)


class ReplicaRefused(ForwardingError):
    """The replica answered with a 4xx; ``status`` and ``detail`` say why."""

    def __init__(self, message: str, *, status: int, detail: object, replica: str | None = None):
        self.status = status
        self.detail = detail
        super().__init__(f"HTTP {status}: {message}", replica=replica)


class ReplicaDiscrepancy(ForwardingError):
    """The replica's copy contradicts the local chain (a fork or tampered copy)."""

    def __init__(
        self, message: str, *, height: int, expected: bytes, actual: bytes, replica: str | None
    ) -> None:
        self.height = height
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"{message} at height {height} (local {expected.hex()}, replica {actual.hex()})",
            replica=replica,
        )
