"""IEC 62056-21 mode C (optical D0 head): messages and checks. Pure, no I/O.

The exchange, all 7E1 ASCII, starting at 300 baud::

    HHU -> meter   /?!<CR><LF>                     sign-on (request message)
    meter -> HHU   /XXXZ<identification><CR><LF>   XXX manufacturer, Z baud character
    HHU -> meter   <ACK>0Z0<CR><LF>                 option select: normal protocol,
                                                    baud Z, mode 0 = data readout
    (both switch to the baud rate of Z)
    meter -> HHU   <STX>data lines ... !<CR><LF><ETX><BCC>

The BCC is the XOR of every byte after STX up to and including ETX. Data lines hold
data sets ``address(value*unit)``, e.g. ``1.8.0(001234.567*kWh)``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from drivers.obisvalue import parse_value, vocabulary_unit
from ledger import ClockSource, Reading, format_obis, parse_obis
from ledger.errors import FrameError

STX = 0x02
ETX = 0x03
ACK = 0x06
NAK = 0x15

MODE_C_BAUD: dict[str, int] = {
    "0": 300, "1": 600, "2": 1200, "3": 2400, "4": 4800, "5": 9600, "6": 19200,
}
"""Mode C baud characters (a digit) and their baud rates."""

_IDENT_RE = re.compile(rb"^/([A-Za-z]{2}[A-Za-z0-9])([0-9A-Z])((?:\\[0-9A-Z])?)(.{1,16})\r\n$")
_ADDRESS_RE = re.compile(r"^[\x20-\x7e]{0,32}$")
_DATASET_RE = re.compile(r"([^()\r\n]*)\(([^()]*)\)")
_FULL_OBIS_RE = re.compile(
    r"^(\d{1,3})-(\d{1,3}):(\d{1,3})\.(\d{1,3})\.(\d{1,3})(?:[*&](\d{1,3}))?$")
_SHORT_OBIS_RE = re.compile(r"^(\d{1,3})\.(\d{1,3})\.(\d{1,3})(?:[*&](\d{1,3}))?$")


class BccError(FrameError):
    """A data message's BCC does not match; ``expected`` is what the meter sent."""

    def __init__(self, expected: int, actual: int, *, bus: str | None = None) -> None:
        self.expected = expected
        self.actual = actual
        super().__init__(f"BCC mismatch (meter sent {expected:02X}, computed {actual:02X})",
                         bus=bus, hint="line noise: check the optical head sits straight "
                                       "and clean")


def sign_on(address: str = "") -> bytes:
    """The request message ``/?<address>!\\r\\n`` (empty address: any meter).

    Raises:
        ValueError: the address is over 32 characters or not printable ASCII.
    """
    if not _ADDRESS_RE.match(address) or "!" in address:
        raise ValueError(f"device address must be 0..32 printable characters: {address!r}")
    return b"/?" + address.encode("ascii") + b"!\r\n"


@dataclass(frozen=True, slots=True)
class Identification:
    """The meter's identification message."""

    manufacturer: str
    """Three-letter FLAG id (``LGZ``, ``ISK``, ``EMH``...)."""
    baud_char: str
    enhanced: str
    """The ``\\W`` enhanced-capability escape, or empty."""
    ident: str
    raw: bytes

    @property
    def mode_c(self) -> bool:
        """True if the baud character is a mode C one (a digit 0-6)."""
        return self.baud_char in MODE_C_BAUD

    @property
    def baudrate(self) -> int:
        """Baud rate the meter offers for the readout.

        Raises:
            FrameError: not a mode C baud character.
        """
        try:
            return MODE_C_BAUD[self.baud_char]
        except KeyError:
            raise FrameError(
                f"meter offers baud character {self.baud_char!r}, not mode C (0-6)",
                hint="this meter speaks IEC 62056-21 mode A/B; only mode C is supported",
            ) from None


def parse_identification(line: bytes) -> Identification:
    """Parse ``/XXXZ<ident>\\r\\n``.

    Raises:
        FrameError: the line is not an identification message.
    """
    m = _IDENT_RE.match(line)
    if not m:
        raise FrameError(f"not an identification message: {line[:40]!r}")
    return Identification(
        m.group(1).decode("ascii"), m.group(2).decode("ascii"), m.group(3).decode("ascii"),
        m.group(4).decode("ascii", "replace"), line,
    )


def ack_option_select(baud_char: str, mode: str = "0") -> bytes:
    """``ACK 0 Z Y CR LF``: normal protocol, baud ``baud_char``, mode ``Y``
    (``0`` data readout).

    Raises:
        ValueError: ``baud_char`` is not a mode C character.
    """
    if baud_char not in MODE_C_BAUD:
        raise ValueError(f"not a mode C baud character: {baud_char!r}")
    return bytes((ACK,)) + b"0" + baud_char.encode() + mode.encode() + b"\r\n"


def bcc(data: bytes) -> int:
    """Block check character: XOR of ``data`` (bytes after STX up to and incl. ETX)."""
    x = 0
    for b in data:
        x ^= b
    return x


def data_message(block: str) -> bytes:
    """``STX block ETX BCC`` for a data block text ending in ``!\\r\\n``."""
    body = block.encode("ascii") + bytes((ETX,))
    return bytes((STX,)) + body + bytes((bcc(body),))


def find_data_message(buf: bytes) -> tuple[int, int] | None:
    """Locate a complete data message in ``buf``: ``(stx_index, end_index)`` (end
    exclusive, BCC included), or None when it is not complete yet."""
    stx = buf.find(bytes((STX,)))
    if stx < 0:
        return None
    etx = buf.find(bytes((ETX,)), stx + 1)
    if etx < 0 or etx + 1 >= len(buf):
        return None
    return stx, etx + 2


def check_data_message(msg: bytes) -> str:
    """Check a ``STX ... ETX BCC`` message; return the data block text.

    Raises:
        BccError: the BCC does not match (carries ``expected`` and ``actual``).
        FrameError: bad framing, not ASCII,
            or the block does not end with ``!``.
    """
    if len(msg) < 3 or msg[0] != STX or msg[-2] != ETX:
        raise FrameError("data message is not STX ... ETX BCC")
    body = msg[1:-1]
    sent, actual = msg[-1], bcc(body)
    if sent != actual:
        raise BccError(sent, actual)
    try:
        text = body[:-1].decode("ascii")
    except UnicodeDecodeError as exc:
        raise FrameError(f"data block has a non-ASCII byte at offset {exc.start}") from None
    if not text.rstrip("\r\n").endswith("!"):
        raise FrameError("data block does not end with '!'")
    return text


@dataclass(frozen=True, slots=True)
class DataSet:
    """One ``address(value*unit)`` data set as written."""

    address: str
    value: str


def parse_data_block(text: str) -> list[DataSet]:
    """Data sets of a data block, in order (the final ``!`` line ends it).

    A data set without an address continues the previous one (a second value);
    it gets the previous address.
    """
    out: list[DataSet] = []
    for line in text.replace("\r\n", "\n").split("\n"):
        if line.startswith("!"):
            break
        last = ""
        for address, value in _DATASET_RE.findall(line):
            address = address.strip() or last
            last = address
            out.append(DataSet(address, value))
    return out


def address_obis(address: str) -> str | None:
    """Canonical OBIS for a data set address, None for other addresses.

    ``1-0:1.8.0``, ``1-0:1.8.0*255`` and the short form ``1.8.0`` (electricity,
    A=1, B=0) are accepted; historical values (``1.8.0*01``, ``1.8.0&01``) and
    letter codes (``C.1.0``, ``F.F``) give None.
    """
    m = _FULL_OBIS_RE.match(address)
    if m:
        a, b, c, d, e, f = m.groups()
    else:
        m = _SHORT_OBIS_RE.match(address)
        if not m:
            return None
        a, b = "1", "0"
        c, d, e, f = m.groups()
    if f is not None and int(f) != 255:
        return None
    try:
        return format_obis(parse_obis(f"{a}-{b}:{c}.{d}.{e}"))
    except ValueError:
        return None


def readout_readings(datasets: list[DataSet], meter_id: str, now_ms: int) -> list[Reading]:
    """Readings of the data sets whose address and unit :mod:`drivers.quantities` knows.

    D0 readouts carry no DST flag, so every reading is stamped with ``now_ms`` by the
    gateway clock. The first value of an address wins (later ones are usually a
    maximum-demand timestamp or a repeat).
    """
    seen: set[str] = set()
    out: list[Reading] = []
    for ds in datasets:
        obis = address_obis(ds.address)
        if obis is None or obis in seen:
            continue
        unit = vocabulary_unit(obis)
        if unit is None:
            continue
        try:
            v = parse_value(ds.value)
        except ValueError:
            continue
        if v.unit != unit:
            continue
        try:
            r = Reading.make(meter_id, obis, v.value, v.exponent, v.unit, now_ms,
                             ClockSource.GATEWAY, 0)
        except ValueError:  # out of the ledger's range (value over 64 bits, ...)
            continue
        seen.add(obis)
        out.append(r)
    return out
