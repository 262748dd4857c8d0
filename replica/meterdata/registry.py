"""The metering-point registry: what each meter id on each gateway measures, for whom.

A *metering point* is the place energy is measured for billing and sharing (a
household's grid connection, a rooftop PV system, a heat pump). It has a role, the
member (household) it belongs to, the OBIS registers that carry its energy in and out,
and the limits the validation needs (rated maximum power, register modulus). Meters
are *assigned* to a point for a time span: when a meter is replaced or moved to another
gateway, the point stays and gets a new assignment, so its history can span gateways
and keys. docs/replica-api.md ("Metering points") describes the registry file.

This module is pure: values and their checks. Storage is in :mod:`replica.meterdata.store`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ledger.errors import ConfigError
from ledger.readings import format_obis, parse_obis

ROLES = ("grid", "pv", "battery", "ev-charger", "heat-pump", "sub-meter")
"""Roles of a metering point: grid connection, PV generation, battery, EV charger,
heat pump, sub-meter."""

DEFAULT_IMPORT = ("1-0:1.8.x",)
DEFAULT_EXPORT = ("1-0:2.8.x",)
"""Default registers: active energy imported / exported. ``x`` stands for the tariff
group: the total register (E = 0) when the meter has it, else the tariff registers
(E = 1..63) summed."""

MAX_ID = 100
MAX_MEMBER = 200
_POINT_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,99}")
_PATTERN_RE = re.compile(r"(\d{1,3})-(\d{1,3}):(\d{1,3})\.(\d{1,3})\.x")


class RegistryError(ConfigError):
    """A metering point, assignment or registry file is wrong; ``path`` names the field."""


@dataclass(frozen=True, slots=True)
class MeteringPoint:
    """A metering point and how its energy is read.

    ``import_registers`` and ``export_registers`` are OBIS codes or patterns ending in
    ``.x`` (see :data:`DEFAULT_IMPORT`). ``rated_max_w`` and ``register_modulus`` (Wh)
    go to the interval engine's validation; None means not known.
    """

    point_id: str
    role: str
    member: str | None = None
    import_registers: tuple[str, ...] = DEFAULT_IMPORT
    export_registers: tuple[str, ...] = DEFAULT_EXPORT
    rated_max_w: int | None = None
    register_modulus: int | None = None

    def registers(self, direction: str) -> tuple[str, ...]:
        """The register specs of ``direction`` (``import`` or ``export``)."""
        return self.import_registers if direction == "import" else self.export_registers


@dataclass(frozen=True, slots=True)
class Assignment:
    """Meter ``meter_id`` on gateway ``gateway_key`` measures ``point_id`` in
    ``[from_ms, to_ms)`` (``to_ms`` None: still does)."""

    point_id: str
    gateway_key: bytes
    meter_id: str
    from_ms: int
    to_ms: int | None = None

    def overlaps(self, start_ms: int, end_ms: int | None) -> bool:
        """Whether the assignment's span meets ``[start_ms, end_ms)`` (None: open end)."""
        a_end = self.to_ms if self.to_ms is not None else 2**63
        b_end = end_ms if end_ms is not None else 2**63
        return self.from_ms < b_end and start_ms < a_end


DIRECTIONS = ("import", "export")


def check_point_id(text: str, key: str = "id") -> str:
    """A metering point id: 1..100 of letters, digits, ``._:-``, starting alphanumeric.

    Raises:
        RegistryError: it is not one.
    """
    if not isinstance(text, str) or not _POINT_ID_RE.fullmatch(text):
        raise RegistryError(key, f"want 1..{MAX_ID} letters, digits or . _ : - (starting "
                            f"with a letter or digit), got {text!r}")
    return text


def check_register_spec(spec: str, key: str) -> str:
    """An OBIS code (``1-0:1.8.0``) or a tariff pattern (``1-0:1.8.x``) in canonical form.

    Raises:
        RegistryError: neither.
    """
    t = spec.strip() if isinstance(spec, str) else ""
    m = _PATTERN_RE.fullmatch(t)
    if m:
        if any(int(g) > 255 for g in m.groups()):
            raise RegistryError(key, f"OBIS group over 255: {spec!r}")
        return f"{int(m[1])}-{int(m[2])}:{int(m[3])}.{int(m[4])}.x"
    try:
        return format_obis(parse_obis(t))
    except ValueError:
        raise RegistryError(key, f"want an OBIS code such as 1-0:1.8.0 or a tariff pattern "
                            f"such as 1-0:1.8.x, got {spec!r}") from None


def make_point(point_id: str, role: str, *, member: str | None = None,
               import_registers: Sequence[str] | None = None,
               export_registers: Sequence[str] | None = None,
               rated_max_w: int | None = None,
               register_modulus: int | None = None) -> MeteringPoint:
    """A checked :class:`MeteringPoint` (registers default to :data:`DEFAULT_IMPORT` /
    :data:`DEFAULT_EXPORT`).

    Raises:
        RegistryError: a field is wrong; ``path`` names it.
    """
    check_point_id(point_id)
    if role not in ROLES:
        raise RegistryError("role", f"want one of {', '.join(ROLES)}, got {role!r}")
    if member is not None and (not isinstance(member, str) or not member.strip()
                               or len(member) > MAX_MEMBER):
        raise RegistryError("member", f"want 1..{MAX_MEMBER} characters, got {member!r}")
    imp = tuple(check_register_spec(s, "import") for s in (import_registers or DEFAULT_IMPORT))
    exp = tuple(check_register_spec(s, "export") for s in (export_registers or DEFAULT_EXPORT))
    for name, v in (("rated_max_w", rated_max_w), ("register_modulus", register_modulus)):
        if v is not None and (type(v) is not int or v <= 0):
            raise RegistryError(name, f"want a positive integer, got {v!r}")
    return MeteringPoint(point_id, role, member.strip() if member else None, imp, exp,
                         rated_max_w, register_modulus)


def select_registers(specs: Iterable[str], available: Iterable[str]) -> list[str]:
    """The OBIS codes among ``available`` that ``specs`` select, sorted.

    An exact code selects itself when present. A pattern ``A-B:C.D.x`` selects the total
    register ``A-B:C.D.0`` when present, else every tariff register ``A-B:C.D.E``
    (E = 1..63) present: their energies are summed.
    """
    have = set(available)
    out: set[str] = set()
    for spec in specs:
        if spec.endswith(".x"):
            prefix = spec[:-1]
            if prefix + "0" in have:
                out.add(prefix + "0")
                continue
            for code in have:
                tail = code[len(prefix):]
                if code.startswith(prefix) and tail.isdigit() and 1 <= int(tail) <= 63:
                    out.add(code)
        elif spec in have:
            out.add(spec)
    return sorted(out)


def check_assignments(existing: Sequence[Assignment], new: Assignment) -> None:
    """Refuse ``new`` when its meter already measures another span that overlaps it.

    Raises:
        RegistryError: the meter is assigned elsewhere in an overlapping span, or
            ``to`` is not after ``from``.
    """
    if new.to_ms is not None and new.to_ms <= new.from_ms:
        raise RegistryError("to", f"must be after from ({new.from_ms}), got {new.to_ms}")
    for a in existing:
        if (a.gateway_key == new.gateway_key and a.meter_id == new.meter_id
                and a.overlaps(new.from_ms, new.to_ms)
                and not (a.point_id == new.point_id and a.from_ms == new.from_ms)):
            raise RegistryError("meter", f"meter {new.meter_id!r} on gateway "
                                f"{new.gateway_key.hex()[:16]}... already measures "
                                f"{a.point_id!r} from {a.from_ms}"
                                + (f" to {a.to_ms}" if a.to_ms is not None else "")
                                + "; end that assignment first (--to)")


_POINT_KEYS = {"id", "role", "member", "import", "export", "rated_max_w", "register_modulus",
               "meter"}
_METER_KEYS = {"gateway", "meter", "from", "to"}


def parse_registry_file(data: dict[str, Any], *, source: str | None = None
                        ) -> list[tuple[MeteringPoint, list[dict[str, str]]]]:
    """The points of a registry file (parsed TOML) with their meters as written.

    Format (docs/replica-api.md, "Registry file")::

        [[point]]
        id = "miller-grid"
        role = "grid"
        member = "Miller"
        rated_max_w = 30000           # optional
        register_modulus = 100000000  # optional, Wh
        import = ["1-0:1.8.x"]        # optional (default)
        export = ["1-0:2.8.x"]        # optional (default)
          [[point.meter]]
          gateway = "north"           # name or key
          meter = "grid-p1"
          from = "2026-01-01"         # optional: date, ISO 8601 time or ms
          to = "2026-06-30"           # optional

    Raises:
        RegistryError: an unknown or wrong key, named by its path
            (``point[2].meter[0].gateway``); every point is checked before any is used.
    """
    if set(data) - {"point"}:
        raise RegistryError(sorted(set(data) - {"point"})[0], "unknown key (want [[point]] "
                            "tables)", source=source)
    items = data.get("point", [])
    if not isinstance(items, list):
        raise RegistryError("point", "must be an array of tables ([[point]])", source=source)
    out = []
    seen: set[str] = set()
    for i, item in enumerate(items):
        where = f"point[{i}]"
        _check_table(item, where, _POINT_KEYS, source)
        for req in ("id", "role"):
            if req not in item:
                raise RegistryError(f"{where}.{req}", "missing", source=source)
        try:
            point = make_point(
                item["id"], item["role"], member=item.get("member"),
                import_registers=_str_list(item.get("import"), f"{where}.import"),
                export_registers=_str_list(item.get("export"), f"{where}.export"),
                rated_max_w=item.get("rated_max_w"),
                register_modulus=item.get("register_modulus"))
        except RegistryError as exc:
            raise RegistryError(f"{where}.{exc.path}", exc.message, source=source) from None
        if point.point_id in seen:
            raise RegistryError(f"{where}.id", f"{point.point_id!r} appears twice",
                                source=source)
        seen.add(point.point_id)
        meters = item.get("meter", [])
        if not isinstance(meters, list):
            raise RegistryError(f"{where}.meter", "must be an array of tables "
                                "([[point.meter]])", source=source)
        got = []
        for j, m in enumerate(meters):
            mw = f"{where}.meter[{j}]"
            _check_table(m, mw, _METER_KEYS, source)
            for req in ("gateway", "meter"):
                if not isinstance(m.get(req), str) or not m[req].strip():
                    raise RegistryError(f"{mw}.{req}", "missing or not text", source=source)
            for opt in ("from", "to"):
                if opt in m and not isinstance(m[opt], str | int):
                    raise RegistryError(f"{mw}.{opt}", "want a date, an ISO 8601 time in "
                                        "quotes or milliseconds", source=source)
            got.append({k: str(v) for k, v in m.items()})
        out.append((point, got))
    return out


def _check_table(item: Any, where: str, allowed: set[str], source: str | None) -> None:
    """Check that ``item`` is a table holding only ``allowed`` keys (points and meters alike).

    Raises :class:`RegistryError` naming ``where`` (or its first unknown key).
    """
    if not isinstance(item, dict):
        raise RegistryError(where, "must be a table", source=source)
    unknown = set(item) - allowed
    if unknown:
        raise RegistryError(f"{where}.{sorted(unknown)[0]}", "unknown key (want one of "
                            f"{', '.join(sorted(allowed))})", source=source)


def _str_list(value: Any, key: str) -> list[str] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value) or not value:
        raise RegistryError(key, f"want a non-empty list of OBIS codes, got {value!r}")
    return value
