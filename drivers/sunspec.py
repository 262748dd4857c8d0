"""SunSpec over Modbus TCP or RTU: find the base, walk the model chain, read with scale factors.

Registers drivers ``sunspec-tcp`` and ``sunspec-rtu``. The device's SunSpec map
starts with the marker ``'SunS'`` (0x5375 0x6E53) at holding register 40000, 0 or
50000 (tried in that order); after it come models, each ``ID, L`` then ``L``
registers, until ID 0xFFFF. We read the common model (1), inverter models
101/102/103 and meter models 201-204. Each point's value is ``raw * 10**SF`` with
its scale-factor point read from the same model; the profile's ``[[point]]`` tables
say which points become which OBIS quantities at which exponent, and the float-free
rule of :mod:`drivers.decode` turns them into integers. Points holding SunSpec's
"not implemented" value (0x8000 int16, 0xFFFF uint16, 0 acc32) are left out.

``MeterSpec``: as for Modbus (``host``/``tcp_port`` or ``port`` + serial settings,
``unit``, ``timeout_s``); ``profile`` defaults to ``sunspec-inverter``;
``options["base"]`` pins the base address instead of searching; ``inter_frame_gap_ms``
as for Modbus. Other option keys are refused.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from drivers import decode
from drivers.base import Meter, MeterSpec, check_options, register
from drivers.modbus import OPTIONS as MODBUS_OPTIONS
from drivers.modbus import bus_for, check_timeout, check_unit
from drivers.profile import PointDef, Profile
from drivers.profile import load as load_profile
from ledger import Reading
from ledger.errors import ConfigError, DeviceError, DeviceExceptionResponse

log = logging.getLogger(__name__)

MARKER = (0x5375, 0x6E53)  # "SunS"
BASE_ADDRESSES = (40000, 0, 50000)
END_ID = 0xFFFF
MAX_MODELS = 64
"""Longest model chain walked before giving up (a device looping its chain)."""

# point -> (offset after the ID/L header, type, scale-factor point)
_INVERTER: dict[str, tuple[int, str, str | None]] = {
    "A": (0, "u16", "A_SF"), "AphA": (1, "u16", "A_SF"), "AphB": (2, "u16", "A_SF"),
    "AphC": (3, "u16", "A_SF"), "A_SF": (4, "i16", None), "PhVphA": (8, "u16", "V_SF"),
    "PhVphB": (9, "u16", "V_SF"), "PhVphC": (10, "u16", "V_SF"), "V_SF": (11, "i16", None),
    "W": (12, "i16", "W_SF"), "W_SF": (13, "i16", None), "Hz": (14, "u16", "Hz_SF"),
    "Hz_SF": (15, "i16", None), "VA": (16, "i16", "VA_SF"), "VA_SF": (17, "i16", None),
    "VAr": (18, "i16", "VAr_SF"), "VAr_SF": (19, "i16", None), "PF": (20, "i16", "PF_SF"),
    "PF_SF": (21, "i16", None), "WH": (22, "acc32", "WH_SF"), "WH_SF": (24, "i16", None),
    "DCW": (29, "i16", "DCW_SF"), "DCW_SF": (30, "i16", None),
}
_METER: dict[str, tuple[int, str, str | None]] = {
    "A": (0, "i16", "A_SF"), "AphA": (1, "i16", "A_SF"), "AphB": (2, "i16", "A_SF"),
    "AphC": (3, "i16", "A_SF"), "A_SF": (4, "i16", None), "PhV": (5, "i16", "V_SF"),
    "PhVphA": (6, "i16", "V_SF"), "PhVphB": (7, "i16", "V_SF"), "PhVphC": (8, "i16", "V_SF"),
    "V_SF": (13, "i16", None), "Hz": (14, "i16", "Hz_SF"), "Hz_SF": (15, "i16", None),
    "W": (16, "i16", "W_SF"), "WphA": (17, "i16", "W_SF"), "WphB": (18, "i16", "W_SF"),
    "WphC": (19, "i16", "W_SF"), "W_SF": (20, "i16", None), "VA": (21, "i16", "VA_SF"),
    "VA_SF": (25, "i16", None), "VAR": (26, "i16", "VAR_SF"), "VAR_SF": (30, "i16", None),
    "PF": (31, "i16", "PF_SF"), "PF_SF": (35, "i16", None),
    "TotWhExp": (36, "acc32", "TotWh_SF"), "TotWhImp": (44, "acc32", "TotWh_SF"),
    "TotWh_SF": (52, "i16", None),
}
MODEL_POINTS: dict[int, dict[str, tuple[int, str, str | None]]] = {
    **{m: _INVERTER for m in (101, 102, 103)}, **{m: _METER for m in (201, 202, 203, 204)}}
NOT_IMPLEMENTED = {"i16": 0x8000, "u16": 0xFFFF, "acc32": 0}


def point_raw(words: Mapping[int, int] | Sequence[int], offset: int, type_name: str
              ) -> int | None:
    """A point's raw integer from a model's registers, or None if not implemented."""
    if type_name == "acc32":
        raw = words[offset] << 16 | words[offset + 1]
        return None if raw == 0 else raw
    w = words[offset]
    if w == NOT_IMPLEMENTED[type_name]:
        return None
    return int(decode.decode_raw(type_name, [w]))


@dataclass
class ModelRef:
    """Where one model sits: its id, first data register and length."""

    model: int
    address: int
    length: int


@dataclass
class SunSpecChain:
    """A discovered SunSpec map."""

    base: int
    models: list[ModelRef] = field(default_factory=list)

    def find(self, ids: tuple[int, ...]) -> ModelRef | None:
        return next((m for m in self.models if m.model in ids), None)


async def find_chain(read: Callable[[int, int], Awaitable[list[int]]],
                     bases: tuple[int, ...] = BASE_ADDRESSES) -> SunSpecChain | None:
    """The SunSpec map behind the first 'SunS' marker among ``bases`` (holding registers
    read by ``read(address, count)``), or None if no base has the marker.

    Raises:
        DeviceError: a read failed other than by refusing the base address, or the chain
        is longer than :data:`MAX_MODELS` (a broken map).
    """
    for base in bases:
        try:
            if tuple(await read(base, 2)) != MARKER:
                continue
        except DeviceExceptionResponse:
            continue
        chain = SunSpecChain(base)
        addr = base + 2
        for _ in range(MAX_MODELS):
            model_id, length = await read(addr, 2)
            if model_id == END_ID:
                return chain
            chain.models.append(ModelRef(model_id, addr + 2, length))
            addr += 2 + length
        raise DeviceError(f"SunSpec model chain longer than {MAX_MODELS} models",
                          register=base, hint="the device's SunSpec map is broken")
    return None


@dataclass(frozen=True)
class PointResult:
    """One point of a technician's read: its reading, or the error that kept it (both
    None: left out, the device reports it as not implemented or lacks its model)."""

    point: PointDef
    reading: Reading | None
    error: DeviceError | None

    @property
    def quantity(self) -> str:
        return self.point.quantity


class SunSpecMeter(Meter):
    """An inverter or meter speaking SunSpec; what is read comes from the profile's points."""

    def __init__(self, spec: MeterSpec, profile: Profile) -> None:
        self.spec = spec
        self.profile = profile
        self.unit = check_unit(spec)
        self.timeout = check_timeout(spec)
        base = spec.options.get("base")
        if base is not None and (type(base) is not int or not 0 <= base <= 65533):
            raise ConfigError("options.base", f"{base!r} is not a register address")
        self.bus = bus_for(spec, "serial" if spec.protocol == "sunspec-rtu" else "tcp")
        self.chain: SunSpecChain | None = None
        self._bases: tuple[int, ...] = (base,) if isinstance(base, int) else BASE_ADDRESSES
        self._closed = False

    async def _read(self, address: int, count: int) -> list[int]:
        return await self.bus.read_registers(3, address, count, self.unit, self.timeout)

    async def discover(self) -> SunSpecChain:
        """Find the base address and walk the model chain.

        Raises:
            DeviceError: no 'SunS' marker at any base address, or the chain is broken.
        """
        chain = await find_chain(self._read, self._bases)
        if chain is not None:
            self.chain = chain
            return chain
        raise DeviceError("no SunSpec marker 'SunS' at base "
                          + ", ".join(str(b) for b in self._bases), bus=self.bus.name,
                          unit=self.unit, register=self._bases[0],
                          hint="the device does not speak SunSpec on this unit id: check the "
                          "unit id (often 1 or 126) and that SunSpec/Modbus is enabled")

    async def probe(self) -> bool:
        """True if the device has a SunSpec map with a model the profile reads.

        Raises:
            DeviceError: no answer.
        """
        try:
            chain = await self.discover()
        except DeviceError as exc:
            if "no SunSpec marker" in str(exc):
                return False
            raise
        return any(chain.find(p.models) for p in self.profile.points)

    async def read(self, now_ms: int) -> list[Reading]:
        """Read each needed model in one request and apply its scale factors.

        Raises:
            DeviceError: discovery or a read failed, or no model the profile needs exists.
        """
        chain = self.chain or await self.discover()
        blocks: dict[int, dict[int, int]] = {}
        out: list[Reading] = []
        for p in self.profile.points:
            ref = chain.find(p.models)
            if ref is None:
                continue
            if ref.model not in blocks:
                blocks[ref.model] = dict(enumerate(await self._read(ref.address,
                                                                    min(ref.length, 125))))
            reading = self._reading(ref, p, blocks[ref.model], now_ms)
            if reading is not None:
                out.append(reading)
        if not blocks:
            raise self._no_model(chain)
        return out

    async def read_each(self, now_ms: int) -> list[PointResult]:
        """For a technician's one-off read: every point of the profile with its reading or
        the error that kept it, instead of failing the whole read on one register.

        A model whose request is refused with an exception response is read point by point
        (the point's registers, then its scale factor), so each refused point carries its
        own error; a model request that times out or brings no valid frame marks each of
        its points with that error.

        Raises:
            DeviceError: discovery failed (nothing to show), or no model the profile reads
            is present.
        """
        chain = self.chain or await self.discover()
        blocks: dict[int, dict[int, int] | DeviceError | None] = {}
        out: list[PointResult] = []
        for p in self.profile.points:
            ref = chain.find(p.models)
            if ref is None:
                out.append(PointResult(p, None, None))
                continue
            if ref.model not in blocks:
                try:
                    blocks[ref.model] = dict(enumerate(await self._read(
                        ref.address, min(ref.length, 125))))
                except DeviceExceptionResponse:
                    blocks[ref.model] = None  # each point gets its own answer
                except DeviceError as exc:
                    blocks[ref.model] = exc
            got = blocks[ref.model]
            try:
                if isinstance(got, DeviceError):
                    raise got
                words = got if got is not None else await self._read_point(ref, p)
            except DeviceError as exc:
                out.append(PointResult(p, None, DeviceError(
                    f"model {ref.model} point {p.point}: {exc}")))
                continue
            out.append(PointResult(p, self._reading(ref, p, words, now_ms), None))
        if not blocks:
            raise self._no_model(chain)
        return out

    async def _read_point(self, ref: ModelRef, p: PointDef) -> dict[int, int]:
        """One point's registers and its scale factor's, each in its own request, as
        ``{offset in the model: word}``.

        Raises:
            DeviceError: either read failed (the point is not in the model: ConfigError).
        """
        offset, type_name, sf_name = self._layout(ref, p)[p.point]
        words: dict[int, int] = {}
        wanted = [(offset, 2 if type_name == "acc32" else 1)]
        if sf_name is not None:
            wanted.append((self._layout(ref, p)[sf_name][0], 1))
        for at, count in wanted:
            for i, w in enumerate(await self._read(ref.address + at, count)):
                words[at + i] = w
        return words

    def _layout(self, ref: ModelRef, p: PointDef) -> dict[str, tuple[int, str, str | None]]:
        layout = MODEL_POINTS.get(ref.model, {})
        if p.point not in layout:
            raise ConfigError(f"point {p.point}", f"model {ref.model} has no point "
                              f"{p.point!r}", source=self.profile.source)
        return layout

    def _reading(self, ref: ModelRef, p: PointDef, words: dict[int, int],
                 now_ms: int) -> Reading | None:
        """The point's reading from its model's registers (``{offset: word}``), or None
        when the device reports it as not implemented or its scale factor is out of range.

        Raises:
            ConfigError: the profile names a point the model does not have.
        """
        layout = self._layout(ref, p)
        offset, type_name, sf_name = layout[p.point]
        need = [offset + i for i in range(2 if type_name == "acc32" else 1)]
        if sf_name is not None:
            need.append(layout[sf_name][0])
        if any(at not in words for at in need):
            return None  # beyond the model's length on this device
        raw = point_raw(words, offset, type_name)
        sf = 0 if sf_name is None else point_raw(words, layout[sf_name][0], "i16")
        if raw is None or sf is None or not -10 <= sf <= 10:
            return None
        value, quality = decode.to_integer(raw, Decimal(10) ** sf, p.exponent)
        return Reading.make(self.spec.meter_id, p.quantity, value, p.exponent, p.unit,
                            now_ms, quality=quality)

    def _no_model(self, chain: SunSpecChain) -> DeviceError:
        return DeviceError(f"none of the models profile {self.profile.name} reads is "
                           f"present (device has {[m.model for m in chain.models]})",
                           bus=self.bus.name, unit=self.unit, register=chain.base,
                           hint="pick the profile that matches: sunspec-inverter or "
                           "sunspec-meter")

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            await self.bus.release()


def _make(spec: MeterSpec) -> Meter:
    check_options(spec, ("base", *MODBUS_OPTIONS))
    profile = load_profile(spec.profile or "sunspec-inverter")
    if profile.protocol != "sunspec":
        raise ConfigError("profile", f"{profile.name} is not a SunSpec profile")
    return SunSpecMeter(spec, profile)


_MODELS = "(models 1, 101-103, 201-204)"
register("sunspec-tcp", _make, f"SunSpec inverter/meter over Modbus TCP {_MODELS}")
register("sunspec-rtu", _make, f"SunSpec inverter/meter over Modbus RTU {_MODELS}")
