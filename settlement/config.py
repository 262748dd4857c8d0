"""``community.toml``: the community, its members, sharing mode and prices, validated.

:func:`load_community` reports EVERY problem at once as a
:class:`~ledger.errors.ConfigErrors`, each naming its key path
(``members[2].key: must be an integer >= 0, got -5``); unknown keys are refused with
the closest valid name. ``docs/settlement.md`` documents every key.

Prices are integers in minor currency units per MWh (12.5 ct/kWh is 12500 with the
cent as minor unit): no floats in money.
"""

from __future__ import annotations

import csv
import difflib
import hashlib
import io
import os
import re
import tomllib
import zoneinfo
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ledger.errors import ConfigError, ConfigErrors
from settlement.clearing.orders import FEE_KINDS, Fee
from settlement.rules.schedule import ANY_PRODUCER, SLOT_KINDS, Coefficient
from settlement.rules.static_keys import UNUSED_MODES

MODES = ("pro_rata", "static_keys", "static_keys_redistributed", "priority_cascade",
         "coefficient_schedule", "market")
MECHANISMS = ("pay_as_bid", "pay_as_clear")
INTERVAL_MINUTES = (5, 10, 15, 30, 60)
MAX_MEMBERS = 100_000
MAX_COEFFICIENTS = 1_000_000
MAX_COEFFICIENTS_FILE_BYTES = 64 * 1024 * 1024
MAX_PRICE = 10**9  # minor units per MWh
ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
"""Member ids and metering point ids: 1..64 of [A-Za-z0-9._-] (no comma, so the
canonical output lines need no escaping)."""


@dataclass(frozen=True)
class Member:
    """``[[members]]``: a household or plant with its metering points."""

    id: str
    consumption: tuple[str, ...] = ()
    generation: tuple[str, ...] = ()
    key: int = 0
    priority: int | None = None
    bid_limit: int | None = None
    offer_limit: int | None = None


@dataclass(frozen=True)
class Prices:
    """``[prices]``: minor units per MWh."""

    community: int = 0
    grid_supply: int = 0
    feed_in: int = 0
    grid_fee: Fee = field(default_factory=Fee)


@dataclass(frozen=True)
class Sharing:
    """``[sharing]``: the rule and its parameters."""

    mode: str = "pro_rata"
    unused: str = "producer"
    mechanism: str = "pay_as_clear"
    slot: str = "hour_of_year"
    coefficients: tuple[Coefficient, ...] = ()
    coefficient_paths: tuple[str, ...] = ()
    """Where each coefficient was given (key path or file line), for error messages."""


@dataclass(frozen=True)
class Community:
    """The whole validated ``community.toml``; ``sha256`` is of the file's bytes,
    ``coefficients_sha256`` of the coefficients file's (empty when there is none)."""

    name: str
    time_zone: str
    interval_minutes: int
    currency: str
    members: tuple[Member, ...]
    sharing: Sharing
    prices: Prices
    sha256: str = ""
    coefficients_sha256: str = ""

    @property
    def interval_ms(self) -> int:
        return self.interval_minutes * 60_000

    @property
    def consumers(self) -> tuple[str, ...]:
        """Ids of members with a consumption point, sorted."""
        return tuple(sorted(m.id for m in self.members if m.consumption))

    @property
    def producers(self) -> tuple[str, ...]:
        """Ids of members with a generation point, sorted."""
        return tuple(sorted(m.id for m in self.members if m.generation))

    def member(self, member_id: str) -> Member:
        """The member with this id.

        Raises:
            KeyError: no such member.
        """
        for m in self.members:
            if m.id == member_id:
                return m
        raise KeyError(member_id)


# --- a small checker that collects every problem ------------------------------------------


class _Table:
    """Reads one TOML table, recording a problem per bad key and refusing unknown keys."""

    def __init__(self, path: str, data: Any, problems: list[ConfigError],
                 known: tuple[str, ...]) -> None:
        self.path = path
        self.problems = problems
        self.data: Mapping[str, Any] = data if isinstance(data, dict) else {}
        if not isinstance(data, dict):
            self.fail("", f"must be a table, got {data!r}")
        for key in self.data:
            if key not in known:
                close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                self.fail(key, f"unknown key (known: {', '.join(known)}){hint}")

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path and name else (self.path or name)

    def fail(self, name: str, message: str) -> None:
        self.problems.append(ConfigError(self.key(name), message))

    def get(self, name: str, default: Any, check: Callable[[Any], str | None],
            *, required: bool = False) -> Any:
        if name not in self.data:
            if required:
                self.fail(name, "is required")
            return default
        value = self.data[name]
        problem = check(value)
        if problem:
            self.fail(name, f"{problem}, got {value!r}")
            return default
        return value


def _int(lo: int, hi: int) -> Callable[[Any], str | None]:
    def check(v: Any) -> str | None:
        if isinstance(v, bool) or not isinstance(v, int):
            return f"must be an integer {lo}..{hi} (no fractions: prices are minor units per MWh)"
        return None if lo <= v <= hi else f"must be an integer {lo}..{hi}"
    return check


def _choice(choices: tuple[Any, ...]) -> Callable[[Any], str | None]:
    return lambda v: None if v in choices else f"must be one of {', '.join(map(str, choices))}"


def _ident(v: Any) -> str | None:
    if isinstance(v, str) and ID_RE.match(v):
        return None
    return "must be 1..64 of [A-Za-z0-9._-] starting with a letter or digit"


def _ids(v: Any) -> str | None:
    if not isinstance(v, list) or any(_ident(x) for x in v):
        return "must be an array of metering point ids (1..64 of [A-Za-z0-9._-])"
    return None


def _zone(v: Any) -> str | None:
    if not isinstance(v, str):
        return "must be an IANA time zone name such as Europe/Vienna"
    try:
        zoneinfo.ZoneInfo(v)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return "unknown time zone (IANA name such as Europe/Vienna)"
    return None


def _currency(v: Any) -> str | None:
    ok = isinstance(v, str) and len(v) == 3 and v.isascii() and v.isupper() and v.isalpha()
    return None if ok else "must be an ISO 4217 code such as EUR"


# --- sections ---------------------------------------------------------------------------------


def _member(i: int, data: Any, problems: list[ConfigError]) -> Member:
    t = _Table(f"members[{i}]", data, problems, ("id", "consumption", "generation", "key",
                                                  "priority", "bid_limit", "offer_limit"))
    m = Member(
        id=t.get("id", f"?{i}", _ident, required=True),
        consumption=tuple(t.get("consumption", [], _ids)),
        generation=tuple(t.get("generation", [], _ids)),
        key=t.get("key", 0, _int(0, 10**9)),
        priority=t.get("priority", None, _int(0, 10**6)),
        bid_limit=t.get("bid_limit", None, _int(0, MAX_PRICE)),
        offer_limit=t.get("offer_limit", None, _int(0, MAX_PRICE)),
    )
    if isinstance(data, dict) and not m.consumption and not m.generation:
        t.fail("", "needs at least one metering point (consumption or generation)")
    return m


def _coefficient(path: str, data: Any, problems: list[ConfigError]) -> Coefficient:
    t = _Table(path, data, problems, ("first", "end", "producer", "member", "weight"))
    c = Coefficient(
        first=t.get("first", 0, _int(0, 10**7), required=True),
        end=t.get("end", 0, _int(0, 10**7), required=True),
        producer=t.get("producer", ANY_PRODUCER,
                       lambda v: None if v == ANY_PRODUCER else _ident(v)),
        member=t.get("member", "", _ident, required=True),
        weight=t.get("weight", 0, _int(0, 10**9), required=True),
    )
    if c.end <= c.first and "end" in t.data and "first" in t.data:
        t.fail("end", f"must be greater than first ({c.first}), got {c.end}")
    return c


def _sharing(data: Any, problems: list[ConfigError],
             file_rows: list[tuple[int, dict[str, Any]]]) -> Sharing:
    t = _Table("sharing", data, problems, ("mode", "unused", "mechanism", "slot",
                                           "coefficients", "coefficients_file"))
    raw = t.get("coefficients", [], lambda v: None if isinstance(v, list) and len(v) <= (
        MAX_COEFFICIENTS) else f"must be an array of at most {MAX_COEFFICIENTS} tables")
    t.get("coefficients_file", "", lambda v: None if isinstance(v, str) and v else
          "must be the path of a CSV file (first,end,producer,member,weight)")
    paths = [f"sharing.coefficients[{i}]" for i in range(len(raw))]
    paths += [f"sharing.coefficients_file:{line}" for line, _ in file_rows]
    tables = list(raw) + [row for _, row in file_rows]
    coefficients = [_coefficient(p, c, problems) for p, c in zip(paths, tables, strict=True)]
    if len(coefficients) > MAX_COEFFICIENTS:
        t.fail("coefficients", f"at most {MAX_COEFFICIENTS} coefficients in all")
    return Sharing(
        mode=t.get("mode", "pro_rata", _choice(MODES)),
        unused=t.get("unused", "producer", _choice(UNUSED_MODES)),
        mechanism=t.get("mechanism", "pay_as_clear", _choice(MECHANISMS)),
        slot=t.get("slot", "hour_of_year", _choice(SLOT_KINDS)),
        coefficients=tuple(coefficients),
        coefficient_paths=tuple(paths),
    )


def _prices(data: Any, problems: list[ConfigError]) -> Prices:
    t = _Table("prices", data, problems, ("community", "grid_supply", "feed_in",
                                          "grid_fee", "grid_fee_kind"))
    kind = t.get("grid_fee_kind", "per_mwh", _choice(FEE_KINDS))
    value = t.get("grid_fee", 0, _int(0, 9_999 if kind == "percent_bp" else MAX_PRICE))
    return Prices(
        community=t.get("community", 0, _int(0, MAX_PRICE)),
        grid_supply=t.get("grid_supply", 0, _int(0, MAX_PRICE)),
        feed_in=t.get("feed_in", 0, _int(0, MAX_PRICE)),
        grid_fee=Fee(kind, value),
    )


def _cross_checks(c: Community, problems: list[ConfigError]) -> None:
    def fail(path: str, message: str) -> None:
        problems.append(ConfigError(path, message))

    if not c.members:
        fail("members", "at least one [[members]] entry is required")
    ids: dict[str, int] = {}
    points: dict[str, str] = {}
    for i, m in enumerate(c.members):
        if m.id in ids:
            fail(f"members[{i}].id", f"duplicate id {m.id!r} (also members[{ids[m.id]}])")
        ids.setdefault(m.id, i)
        for kind in ("consumption", "generation"):
            for k, p in enumerate(getattr(m, kind)):
                if p in points:
                    fail(f"members[{i}].{kind}[{k}]",
                         f"metering point {p!r} is already {points[p]}")
                points.setdefault(p, f"members[{i}].{kind}")
    if c.members and not c.producers:
        fail("members", "no member has a generation point: nothing to share")
    mode = c.sharing.mode
    if mode in ("static_keys", "static_keys_redistributed") and not any(
            m.key for m in c.members if m.consumption):
        fail("members", f"mode {mode} needs a key > 0 for at least one consumer")
    if mode == "coefficient_schedule":
        if not c.sharing.coefficients:
            fail("sharing.coefficients", "mode coefficient_schedule needs coefficients")
        for where, co in zip(c.sharing.coefficient_paths, c.sharing.coefficients,
                             strict=True):
            if co.member and co.member not in ids:
                fail(f"{where}.member", f"unknown member {co.member!r}")
            if co.producer != ANY_PRODUCER and co.producer not in c.producers:
                fail(f"{where}.producer",
                     f"{co.producer!r} is not a member with a generation point")
    if mode == "market":
        for i, m in enumerate(c.members):
            if m.bid_limit is not None and not m.consumption:
                fail(f"members[{i}].bid_limit", "only a member with a consumption point bids")
            if m.offer_limit is not None and not m.generation:
                fail(f"members[{i}].offer_limit",
                     "only a member with a generation point offers")
        if not any(m.bid_limit is not None for m in c.members) or not any(
                m.offer_limit is not None for m in c.members):
            fail("members", "mode market needs a bid_limit on some consumer and an "
                            "offer_limit on some producer")
    if len(c.members) > MAX_MEMBERS:
        fail("members", f"at most {MAX_MEMBERS} members")


def parse_community(data: Mapping[str, Any], *, sha256: str = "",
                    source: str | None = None,
                    coefficient_rows: list[tuple[int, dict[str, Any]]] | None = None,
                    coefficients_sha256: str = "") -> Community:
    """Validate a parsed ``community.toml`` (``coefficient_rows``: the coefficients
    file's rows as tables with their line numbers, read by :func:`load_community`).

    Raises:
        ConfigErrors: every problem found, each with its key path.
    """
    problems: list[ConfigError] = []
    top = _Table("", data, problems, ("community", "sharing", "prices", "members"))
    head = _Table("community", top.data.get("community", {}), problems,
                  ("name", "time_zone", "interval_minutes", "currency"))
    if "community" not in top.data:
        top.fail("community", "is required ([community] with name and time_zone)")
    members_raw = top.get("members", [], lambda v: None if isinstance(v, list) else
                          "must be an array of tables ([[members]])", required=True)
    community = Community(
        name=head.get("name", "", _ident, required=True),
        time_zone=head.get("time_zone", "UTC", _zone, required=True),
        interval_minutes=head.get("interval_minutes", 15, _choice(INTERVAL_MINUTES)),
        currency=head.get("currency", "EUR", _currency),
        members=tuple(_member(i, m, problems) for i, m in enumerate(members_raw)),
        sharing=_sharing(top.data.get("sharing", {}), problems, coefficient_rows or []),
        prices=_prices(top.data.get("prices", {}), problems),
        sha256=sha256,
        coefficients_sha256=coefficients_sha256,
    )
    _cross_checks(community, problems)
    if problems:
        raise ConfigErrors(problems, source=source)
    return community


def load_community(path: str) -> Community:
    """Read and validate a ``community.toml``.

    Raises:
        ConfigError: unreadable file or TOML syntax error.
        ConfigErrors: every validation problem at once.
    """
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except OSError as exc:
        raise ConfigError("", f"cannot read community config: {exc.strerror}",
                          source=path) from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError("", f"not valid TOML: {exc}", source=path) from None
    rows: list[tuple[int, dict[str, Any]]] = []
    file_hash = ""
    name = data.get("sharing", {}).get("coefficients_file") if isinstance(
        data.get("sharing"), dict) else None
    if isinstance(name, str) and name:
        rows, file_hash = _read_coefficients(os.path.join(os.path.dirname(path), name), path)
    return parse_community(data, sha256=hashlib.sha256(raw).hexdigest(), source=path,
                           coefficient_rows=rows, coefficients_sha256=file_hash)


COEFFICIENT_COLUMNS = ("first", "end", "producer", "member", "weight")


def _read_coefficients(path: str, source: str) -> tuple[list[tuple[int, dict[str, Any]]], str]:
    """Rows of a coefficients CSV (header ``first,end,producer,member,weight``) as tables
    with their line numbers, and the file's SHA-256.

    Raises:
        ConfigError: unreadable, too large, or without the header.
    """
    key = "sharing.coefficients_file"
    try:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_COEFFICIENTS_FILE_BYTES + 1)
    except OSError as exc:
        raise ConfigError(key, f"cannot read {path}: {exc.strerror}", source=source) from None
    if len(raw) > MAX_COEFFICIENTS_FILE_BYTES:
        raise ConfigError(key, f"{path} is larger than {MAX_COEFFICIENTS_FILE_BYTES} bytes",
                          source=source)
    try:
        reader = csv.reader(io.StringIO(raw.decode("utf-8")))
        header = next(reader, None)
        if header is None or tuple(h.strip() for h in header) != COEFFICIENT_COLUMNS:
            raise ConfigError(key, f"{path}: the first line must be "
                                   f"{','.join(COEFFICIENT_COLUMNS)}", source=source)
        rows = []
        bad = []
        for row in reader:
            if not row:
                continue
            if len(row) != len(COEFFICIENT_COLUMNS):
                bad.append(ConfigError(f"{key}:{reader.line_num}", f"has {len(row)} fields, "
                                       f"want {len(COEFFICIENT_COLUMNS)}"))
                continue
            table: dict[str, Any] = dict(zip(COEFFICIENT_COLUMNS, (v.strip() for v in row),
                                             strict=False))
            for col in ("first", "end", "weight"):
                if col in table and re.fullmatch(r"[0-9]{1,10}", table[col]):
                    table[col] = int(table[col])
            rows.append((reader.line_num, table))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise ConfigError(key, f"{path}: not a CSV file: {exc}", source=source) from None
    if bad:
        raise ConfigErrors(bad, source=source)
    return rows, hashlib.sha256(raw).hexdigest()
