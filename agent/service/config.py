"""The gateway agent's configuration: one TOML file -> frozen, validated dataclasses.

Every section is a frozen dataclass whose fields are the TOML keys; each field's
``metadata["doc"]`` documents it (``docs/agent.md`` is the reference) and its default
is the documented default. :func:`load_config` reports EVERY problem at once as a
:class:`~ledger.errors.ConfigErrors`, each naming its key path
(``meters[2].unit: must be 1..247, got 0``); unknown keys are refused with the closest
valid name. A config that does not validate never starts the daemon.
"""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import os
import re
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ledger.errors import ConfigError, ConfigErrors

DEFAULT_CONFIG_PATH = "/etc/meterchain/agent.toml"

SERIAL_PROTOCOLS = frozenset({"modbus-rtu", "sunspec-rtu", "dsmr-p1", "iec62056-21"})
TCP_PROTOCOLS = frozenset({"modbus-tcp", "modbus-rtu-over-tcp", "sunspec-tcp"})
MODBUS_PROTOCOLS = frozenset(
    {"modbus-rtu", "modbus-tcp", "modbus-rtu-over-tcp", "sunspec-tcp", "sunspec-rtu"}
)
KNOWN_PROTOCOLS = SERIAL_PROTOCOLS | TCP_PROTOCOLS
STANDARD_BAUDRATES = (300, 600, 1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200)
_METER_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")
_REPLICA_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,31}$")
_HEX64_RE = re.compile(r"^[0-9a-f]{64}$")


def _doc(text: str, **extra: Any) -> dict[str, Any]:
    return {"doc": text, **extra}


# --- sections ---------------------------------------------------------------------------


@dataclass(frozen=True)
class GatewayConfig:
    """``[gateway]``: the gateway's identity and where it keeps its data."""

    key_path: str = field(metadata=_doc("Gateway Ed25519 private key file (mode 0600)."))
    ledger_dir: str = field(metadata=_doc("Directory of the append-only block store."))
    state_path: str = field(metadata=_doc(
        "TinyDB file of small mutable state (replica cursors). The status file "
        "`status.json` is written atomically in the same directory."))
    name: str = field(default="", metadata=_doc("Free-text gateway name shown in status.",
                                                allow_empty=True))
    clock_step_threshold_ms: int = field(default=1000, metadata=_doc(
        "A jump of the wall clock against the monotonic clock larger than this is "
        "logged as a clock step and flags the next reading of every meter CLOCK_STEP.",
        min=50, max=3_600_000))
    stop_timeout_s: float = field(default=4.0, metadata=_doc(
        "On SIGTERM, seal pending readings and exit within this many seconds.",
        min=0.5, max=60.0))


@dataclass(frozen=True)
class MeterConfig:
    """``[[meters]]``: one meter, turned into a ``drivers.base.MeterSpec``."""

    id: str = field(metadata=_doc("Meter id carried in every reading (1..64 of "
                                   "[A-Za-z0-9._:-], unique)."))
    driver: str = field(metadata=_doc("Protocol driver: " + ", ".join(sorted(KNOWN_PROTOCOLS))))
    port: str | None = field(default=None, metadata=_doc("Serial device for serial drivers."))
    host: str | None = field(default=None, metadata=_doc("Host for TCP drivers."))
    tcp_port: int = field(default=502, metadata=_doc("TCP port for TCP drivers.",
                                                     min=1, max=65535))
    baudrate: int | None = field(default=None, metadata=_doc(
        "Serial speed; one of " + ", ".join(map(str, STANDARD_BAUDRATES))
        + " (driver default when unset)."))
    parity: str | None = field(default=None, metadata=_doc("N, E or O (driver default "
                                                           "when unset).",
                                                           choices=("N", "E", "O")))
    stopbits: int | None = field(default=None, metadata=_doc("1 or 2.", choices=(1, 2)))
    bytesize: int | None = field(default=None, metadata=_doc("7 or 8.", choices=(7, 8)))
    unit: int | None = field(default=None, metadata=_doc(
        "Modbus unit id 1..247 (required for Modbus drivers).", min=1, max=247))
    profile: str | None = field(default=None, metadata=_doc(
        "Meter profile name or path (required for Modbus drivers)."))
    poll_interval_s: float = field(default=10.0, metadata=_doc(
        "Poll period; polls are aligned to wall-clock multiples of it.",
        min=0.2, max=86_400.0))
    timeout_s: float = field(default=1.0, metadata=_doc(
        "Per-read timeout; must be below poll_interval_s.", min=0.05, max=600.0))
    backoff_max_s: float = field(default=300.0, metadata=_doc(
        "Upper bound of the exponential backoff (with jitter) of a failing meter.",
        min=0.1, max=86_400.0))
    options: dict[str, Any] = field(default_factory=dict, metadata=_doc(
        "Driver-specific options (see the driver's documentation)."))


@dataclass(frozen=True)
class SealingConfig:
    """``[sealing]``: when pending readings become a signed block."""

    interval_s: float = field(default=60.0, metadata=_doc(
        "Seal a block at least this often while readings are pending.", min=0.1,
        max=86_400.0))
    max_readings: int = field(default=1000, metadata=_doc(
        "...or as soon as this many readings are pending, whichever comes first.",
        min=1, max=65_535))
    seal_to_utility: bool = field(default=False, metadata=_doc(
        "Encrypt each block's payload to the utility's X25519 public key."))
    utility_key: str | None = field(default=None, metadata=_doc(
        "Utility X25519 public key: a file path or 64 hex chars "
        "(required when seal_to_utility)."))
    max_pending_readings: int = field(default=200_000, metadata=_doc(
        "Bound on readings held in memory while the store cannot be written "
        "(disk full); beyond it the OLDEST PENDING readings are dropped with a "
        "critical log. Committed readings are never dropped.", min=100, max=10_000_000))
    retry_interval_s: float = field(default=5.0, metadata=_doc(
        "Retry period for committing while the store is full or failing.",
        min=0.1, max=3600.0))
    max_blocks_in_flight: int = field(default=64, metadata=_doc(
        "Group commit: blocks are sealed and written while an fdatasync runs and the "
        "next one covers them all; at most this many wait for the disk at once (then "
        "sealing waits). A block counts as committed only once durable.",
        min=1, max=4096))


@dataclass(frozen=True)
class ReplicaConfig:
    """``[[replicas]]``: an upstream replica the agent forwards blocks to."""

    name: str = field(metadata=_doc("Short unique name (cursor key, metrics label)."))
    url: str = field(metadata=_doc(
        "Base URL, https:// (http:// only to a loopback address)."))
    ca_cert: str | None = field(default=None, metadata=_doc(
        "PEM file of the CA to trust for this replica (system CAs when unset)."))
    pinned_key_sha256: str | None = field(default=None, metadata=_doc(
        "SHA-256 (64 hex) of the replica's certificate public key (SPKI) to pin."))
    required: bool = field(default=True, metadata=_doc(
        "Blocks are pruned only once every required replica acknowledged them."))
    batch_bytes: int = field(default=256 * 1024, metadata=_doc(
        "Upper bound of the encoded blocks sent in one request.", min=1024,
        max=64 * 1024 * 1024))
    timeout_s: float = field(default=10.0, metadata=_doc("HTTP request timeout.",
                                                         min=0.1, max=600.0))
    backoff_max_s: float = field(default=300.0, metadata=_doc(
        "Upper bound of the backoff (with jitter) while the replica is unreachable.",
        min=0.1, max=86_400.0))


@dataclass(frozen=True)
class RetentionConfig:
    """``[retention]``: how much disk the ledger may use, and when blocks may go."""

    disk_budget_bytes: int = field(default=1024**3, metadata=_doc(
        "Disk the block store may use. Above it, blocks acknowledged by every required "
        "replica and older than min_age_s are pruned; if that is not enough the agent "
        "keeps recording while the disk allows and raises a critical status.",
        min=64 * 1024))
    min_age_s: float = field(default=7 * 86_400.0, metadata=_doc(
        "Blocks younger than this are never pruned.", min=0.0))
    check_interval_s: float = field(default=60.0, metadata=_doc(
        "How often disk use is checked.", min=0.1, max=86_400.0))
    segment_bytes: int = field(default=16 * 1024 * 1024, metadata=_doc(
        "Size of the store's segment files; pruning frees whole segments, so keep it well "
        "below the budget.", min=64 * 1024, max=1024**3))
    reserve_bytes: int = field(default=16 * 1024 * 1024, metadata=_doc(
        "Disk reserve: a preallocated file (LEDGER/RESERVE) released when the disk fills, "
        "so cursors, status and the readings pending at a stop can still be written; "
        "allocated again once twice this is free. The default holds the default "
        "sealing.max_pending_readings for meter ids of up to 30 characters (a reading "
        "takes about 48 bytes plus its meter id). At most an eighth of the filesystem is "
        "held (a larger value is lowered, with a warning). 0 disables it.",
        min=0, max=1024**3))


@dataclass(frozen=True)
class MetricsConfig:
    """``[metrics]``: Prometheus text format over HTTP on loopback, or a textfile."""

    listen: str | None = field(default=None, metadata=_doc(
        "HOST:PORT to serve /metrics on (loopback only, e.g. 127.0.0.1:9477)."))
    textfile: str | None = field(default=None, metadata=_doc(
        "Path of a .prom file written atomically (node_exporter textfile collector)."))
    interval_s: float = field(default=15.0, metadata=_doc(
        "How often the textfile and status.json are rewritten.", min=0.1, max=3600.0))


@dataclass(frozen=True)
class LoggingConfig:
    """``[logging]``."""

    level: str = field(default="info", metadata=_doc(
        "debug, info, warning, error or critical.",
        choices=("debug", "info", "warning", "error", "critical")))
    format: str = field(default="auto", metadata=_doc(
        "journald: syslog priority prefixes (<3>..<7>); plain: timestamps; auto: "
        "journald when started by systemd.", choices=("auto", "journald", "plain")))


@dataclass(frozen=True)
class AgentConfig:
    """The whole agent configuration."""

    gateway: GatewayConfig = field(metadata=_doc("Gateway identity and paths."))
    meters: tuple[MeterConfig, ...] = field(metadata=_doc("Meters to poll."))
    sealing: SealingConfig = field(default_factory=SealingConfig,
                                   metadata=_doc("Sealing policy."))
    replicas: tuple[ReplicaConfig, ...] = field(default=(), metadata=_doc("Replicas."))
    retention: RetentionConfig = field(default_factory=RetentionConfig,
                                       metadata=_doc("Retention and disk budget."))
    metrics: MetricsConfig = field(default_factory=MetricsConfig, metadata=_doc("Metrics."))
    logging: LoggingConfig = field(default_factory=LoggingConfig, metadata=_doc("Logging."))
    source: str | None = field(default=None, metadata=_doc("File this was loaded from.",
                                                           internal=True))

    @property
    def status_path(self) -> Path:
        """Where the daemon writes ``status.json`` (next to the state file)."""
        return Path(self.gateway.state_path).parent / "status.json"


# --- generic loading --------------------------------------------------------------------

Problems = list[ConfigError]


def _type_name(tp: Any) -> str:
    names = {str: "a string", int: "an integer", float: "a number", bool: "true or false",
             dict: "a table"}
    return names.get(tp, getattr(tp, "__name__", str(tp)))


def _check_scalar(path: str, value: Any, tp: Any, meta: dict[str, Any],
                  problems: Problems) -> Any:
    """Type- and range-check one scalar value; return the converted value or None."""
    origin = typing.get_origin(tp)
    if origin is types.UnionType or origin is typing.Union:
        inner = [a for a in typing.get_args(tp) if a is not type(None)]
        tp = inner[0]
    if tp is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif tp is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif tp is bool:
        ok = isinstance(value, bool)
    elif tp is str:
        ok = isinstance(value, str)
    elif typing.get_origin(tp) is dict or tp is dict:
        ok = isinstance(value, dict)
    else:  # pragma: no cover - schema error
        raise TypeError(f"unsupported config field type {tp!r}")
    if not ok:
        shown = _type_name(dict if typing.get_origin(tp) is dict else tp)
        problems.append(ConfigError(path, f"must be {shown}, got {value!r}"))
        return None
    lo, hi = meta.get("min"), meta.get("max")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        if hi is None:
            problems.append(ConfigError(path, f"must be >= {lo}, got {value!r}"))
        elif lo is None:
            problems.append(ConfigError(path, f"must be <= {hi}, got {value!r}"))
        else:
            problems.append(ConfigError(path, f"must be {lo}..{hi}, got {value!r}"))
        return None
    choices = meta.get("choices")
    if choices is not None and value not in choices:
        shown = ", ".join(map(str, choices))
        problems.append(ConfigError(path, f"must be one of {shown}, got {value!r}"))
        return None
    if tp is str and value == "" and not meta.get("allow_empty"):
        problems.append(ConfigError(path, "must not be empty"))
        return None
    return value


def _unknown_keys(path: str, table: dict[str, Any], known: list[str],
                  problems: Problems) -> None:
    for key in table:
        if key in known:
            continue
        close = difflib.get_close_matches(key, known, n=1, cutoff=0.5)
        hint = f"; did you mean {close[0]!r}?" if close else f" (valid: {', '.join(known)})"
        where = f"{path}.{key}" if path else key
        problems.append(ConfigError(where, f"unknown key{hint}"))


_PLACEHOLDER: dict[Any, Any] = {str: "", int: 0, float: 0.0, bool: False}


def _placeholder(f: dataclasses.Field[Any], tp: Any) -> Any:
    """A stand-in for a bad or missing value so the other checks can still run."""
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    if typing.get_origin(tp) is tuple:
        return ()
    return _PLACEHOLDER.get(tp)


def _build(cls: type, path: str, table: Any, problems: Problems, bad: set[str]) -> Any:
    """Build dataclass ``cls`` from a TOML table, collecting problems.

    Always returns an instance (or None when ``table`` is not a table) so cross-field
    checks can still run; keys whose value was wrong are added to ``bad`` and given a
    placeholder, and checks involving them are skipped.
    """
    if not isinstance(table, dict):
        problems.append(ConfigError(path, f"must be a table, got {table!r}"))
        bad.add(path)
        return None
    hints = typing.get_type_hints(cls)
    fields = [f for f in dataclasses.fields(cls) if not f.metadata.get("internal")]
    _unknown_keys(path, table, [f.name for f in fields], problems)
    kwargs: dict[str, Any] = {}
    for f in fields:
        sub = f"{path}.{f.name}" if path else f.name
        tp = hints[f.name]
        required = (f.default is dataclasses.MISSING
                    and f.default_factory is dataclasses.MISSING)
        if f.name not in table:
            if required:
                problems.append(ConfigError(sub, "is required"))
                bad.add(sub)
            kwargs[f.name] = _placeholder(f, tp)
            continue
        value = table[f.name]
        if isinstance(tp, type) and dataclasses.is_dataclass(tp):
            built = _build(tp, sub, value, problems, bad)
            kwargs[f.name] = built if built is not None else _build(tp, sub, {}, [], set())
        elif typing.get_origin(tp) is tuple:
            (item_cls, _ellipsis) = typing.get_args(tp)
            if not isinstance(value, list):
                problems.append(ConfigError(sub, f"must be an array of tables "
                                                 f"([[{f.name}]]), got {value!r}"))
                bad.add(sub)
                kwargs[f.name] = ()
                continue
            items = []
            for i, item in enumerate(value):
                built = _build(item_cls, f"{sub}[{i}]", item, problems, bad)
                if built is None:  # keep indexes stable: a placeholder, marked bad
                    built = _build(item_cls, f"{sub}[{i}]", {}, [], set())
                items.append(built)
            kwargs[f.name] = tuple(items)
        else:
            before = len(problems)
            checked = _check_scalar(sub, value, tp, dict(f.metadata), problems)
            if len(problems) > before:
                bad.add(sub)
                checked = _placeholder(f, tp)
            kwargs[f.name] = checked
    return cls(**kwargs)


# --- cross-field checks -------------------------------------------------------------------


class _Checker:
    """Collects cross-field problems, skipping checks that involve an already-bad key."""

    def __init__(self, problems: Problems, bad: set[str]) -> None:
        self.problems = problems
        self.bad = bad

    def ok(self, *paths: str) -> bool:
        """True if none of ``paths`` (nor a table containing one) was already bad."""
        for p in paths:
            probe = p
            while probe:
                if probe in self.bad:
                    return False
                probe = probe.rpartition(".")[0] if "." in probe else ""
        return True

    def fail(self, path: str, message: str) -> None:
        self.problems.append(ConfigError(path, message))


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_meter(c: _Checker, path: str, m: MeterConfig) -> None:
    if c.ok(f"{path}.id") and not _METER_ID_RE.match(m.id):
        c.fail(f"{path}.id", "must be 1..64 of [A-Za-z0-9._:-] starting with a letter or "
                             f"digit, got {m.id!r}")
    if c.ok(f"{path}.timeout_s", f"{path}.poll_interval_s") and (
            m.timeout_s >= m.poll_interval_s):
        c.fail(f"{path}.timeout_s", f"must be below poll_interval_s ({m.poll_interval_s}), "
                                    f"got {m.timeout_s}")
    if not c.ok(f"{path}.driver"):
        return
    if m.driver not in KNOWN_PROTOCOLS:
        close = difflib.get_close_matches(m.driver, sorted(KNOWN_PROTOCOLS), n=1, cutoff=0.5)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        c.fail(f"{path}.driver", f"unknown driver {m.driver!r} (known: "
                                 f"{', '.join(sorted(KNOWN_PROTOCOLS))}){hint}")
        return
    if m.driver in SERIAL_PROTOCOLS:
        if c.ok(f"{path}.port") and not m.port:
            c.fail(f"{path}.port", f"is required for driver {m.driver} (e.g. /dev/ttyUSB0)")
        if m.host is not None:
            c.fail(f"{path}.host", f"is not used by serial driver {m.driver}; remove it")
        if c.ok(f"{path}.baudrate") and m.baudrate is not None and (
                m.baudrate not in STANDARD_BAUDRATES):
            c.fail(f"{path}.baudrate", "must be one of "
                   f"{', '.join(map(str, STANDARD_BAUDRATES))}, got {m.baudrate}")
    else:
        if c.ok(f"{path}.host") and not m.host:
            c.fail(f"{path}.host", f"is required for driver {m.driver}")
        for key in ("port", "baudrate", "parity", "stopbits", "bytesize"):
            if c.ok(f"{path}.{key}") and getattr(m, key) is not None:
                c.fail(f"{path}.{key}", f"is not used by TCP driver {m.driver}; remove it")
    if m.driver in MODBUS_PROTOCOLS:
        if c.ok(f"{path}.unit") and m.unit is None:
            c.fail(f"{path}.unit", f"is required for driver {m.driver} (Modbus unit id "
                                   "1..247)")
        if c.ok(f"{path}.profile") and m.profile is None and not m.driver.startswith("sunspec"):
            c.fail(f"{path}.profile", f"is required for driver {m.driver}")


def _check_replica(c: _Checker, path: str, r: ReplicaConfig) -> None:
    if c.ok(f"{path}.name") and not _REPLICA_NAME_RE.match(r.name):
        c.fail(f"{path}.name", f"must be 1..32 of [a-z0-9._-], got {r.name!r}")
    if c.ok(f"{path}.url"):
        parts = urlsplit(r.url)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            c.fail(f"{path}.url", f"must be an https:// URL, got {r.url!r}")
        elif parts.scheme == "http" and not _is_loopback(parts.hostname):
            c.fail(f"{path}.url", "plain http:// is allowed only to a loopback address; use "
                                  f"https://, got {r.url!r}")
    pin = r.pinned_key_sha256
    if c.ok(f"{path}.pinned_key_sha256") and pin is not None and not _HEX64_RE.match(pin):
        c.fail(f"{path}.pinned_key_sha256", f"must be 64 lowercase hex chars, got {pin!r}")
    if c.ok(f"{path}.ca_cert") and r.ca_cert is not None and not os.path.isfile(r.ca_cert):
        c.fail(f"{path}.ca_cert", f"file not found: {r.ca_cert}")


def _check_all(cfg: AgentConfig, c: _Checker) -> None:
    if c.ok("meters") and not cfg.meters:
        c.fail("meters", "at least one [[meters]] entry is required")
    seen: dict[str, int] = {}
    for i, m in enumerate(cfg.meters):
        path = f"meters[{i}]"
        if not c.ok(path):
            continue
        _check_meter(c, path, m)
        if c.ok(f"{path}.id"):
            if m.id in seen:
                c.fail(f"{path}.id", f"duplicate id {m.id!r} (also meters[{seen[m.id]}])")
            seen.setdefault(m.id, i)
    names: dict[str, int] = {}
    for i, r in enumerate(cfg.replicas):
        path = f"replicas[{i}]"
        if not c.ok(path):
            continue
        _check_replica(c, path, r)
        if c.ok(f"{path}.name"):
            if r.name in names:
                c.fail(f"{path}.name", f"duplicate name {r.name!r} "
                                       f"(also replicas[{names[r.name]}])")
            names.setdefault(r.name, i)
    s = cfg.sealing
    if c.ok("sealing.seal_to_utility", "sealing.utility_key"):
        if s.seal_to_utility and not s.utility_key:
            c.fail("sealing.utility_key", "is required when seal_to_utility = true")
        if s.utility_key and not s.seal_to_utility:
            c.fail("sealing.utility_key", "is set but seal_to_utility is false, so payloads "
                                          "would NOT be encrypted: set seal_to_utility = true "
                                          "or remove utility_key")
        if s.utility_key and not _HEX64_RE.match(s.utility_key) and not os.path.isfile(
                s.utility_key):
            c.fail("sealing.utility_key", "must be 64 hex chars or an existing file, got "
                                          f"{s.utility_key!r}")
    if c.ok("sealing.max_pending_readings", "sealing.max_readings") and (
            s.max_pending_readings < s.max_readings):
        c.fail("sealing.max_pending_readings", f"must be >= sealing.max_readings "
                                               f"({s.max_readings}), got {s.max_pending_readings}")
    mc = cfg.metrics
    if c.ok("metrics.listen") and mc.listen is not None:
        host, sep, port = mc.listen.rpartition(":")
        if not sep or not port.isdigit() or not 0 <= int(port) < 65536:
            c.fail("metrics.listen", f"must be HOST:PORT, got {mc.listen!r}")
        elif not _is_loopback(host.strip("[]")):
            c.fail("metrics.listen", f"must be a loopback address (127.0.0.1:PORT), got "
                                     f"{mc.listen!r}")
    ret = cfg.retention
    if c.ok("retention.segment_bytes", "retention.disk_budget_bytes") and (
            ret.segment_bytes * 4 > ret.disk_budget_bytes):
        c.fail("retention.segment_bytes", "must be at most a quarter of retention."
               f"disk_budget_bytes ({ret.disk_budget_bytes}), got {ret.segment_bytes}")
    if c.ok("metrics.listen", "metrics.textfile") and (
            mc.listen is not None and mc.textfile is not None):
        c.fail("metrics", "set listen or textfile, not both")


# --- entry points ------------------------------------------------------------------------


@dataclass(frozen=True)
class Validated:
    """A config built as far as possible, with every problem found so far.

    ``bad`` holds the key paths whose value was wrong (they carry placeholders), so
    later checks (drivers, key files) can skip them instead of reporting twice.
    """

    config: AgentConfig
    problems: tuple[ConfigError, ...]
    bad: frozenset[str]

    def is_bad(self, path: str) -> bool:
        """True if ``path`` or a table containing it was already reported."""
        return not _Checker([], set(self.bad)).ok(path)


def validate_config(data: dict[str, Any], *, source: str | None = None) -> Validated:
    """Build and cross-check a parsed TOML document without raising on problems."""
    problems: Problems = []
    bad: set[str] = set()
    cfg = _build(AgentConfig, "", data, problems, bad)
    _check_all(cfg, _Checker(problems, bad))
    return Validated(dataclasses.replace(cfg, source=source), tuple(problems), frozenset(bad))


def parse_config(data: dict[str, Any], *, source: str | None = None) -> AgentConfig:
    """Validate a parsed TOML document.

    Raises:
        ConfigErrors: listing every problem found, each with its key path.
    """
    v = validate_config(data, source=source)
    if v.problems:
        raise ConfigErrors(list(v.problems), source=source)
    return v.config


def read_toml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a TOML file.

    Raises:
        ConfigError: unreadable file or TOML syntax error (one problem).
    """
    src = str(path)
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except OSError as exc:
        raise ConfigError("", f"cannot read config: {exc.strerror}", source=src) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("", f"not valid TOML: {exc}", source=src) from None
    except UnicodeDecodeError as exc:
        raise ConfigError("", f"not a text file (not UTF-8 at byte {exc.start})",
                          source=src) from None


def load_config(path: str | os.PathLike[str]) -> AgentConfig:
    """Read and validate a TOML config file (the config alone: no key file or driver;
    :func:`agent.service.preflight.check_startup` makes every start-up check).

    Raises:
        ConfigError: unreadable file or TOML syntax error (one problem).
        ConfigErrors: every validation problem at once.
    """
    return parse_config(read_toml(path), source=str(path))


def field_docs(cls: type) -> list[tuple[str, str, str]]:
    """``(name, default, doc)`` for each field of a config section (for the reference)."""
    out = []
    for f in dataclasses.fields(cls):
        if f.metadata.get("internal"):
            continue
        if f.default is not dataclasses.MISSING:
            default = repr(f.default)
        elif f.default_factory is not dataclasses.MISSING:
            default = "(table)"
        else:
            default = "required"
        out.append((f.name, default, str(f.metadata.get("doc", ""))))
    return out

