"""The replica's configuration file (``replica.toml``).

Example::

    [listen]
    host = "127.0.0.1"
    port = 8470
    workers = 1
    tls_cert = "/etc/meterchain-replica/tls/cert.pem"   # optional: serve HTTPS
    tls_key = "/etc/meterchain-replica/tls/key.pem"

    [storage]
    url = "sqlite:///var/lib/meterchain/replica.db"     # or "postgresql://user@host/db"

    [limits]
    max_body_bytes = 8388608
    max_blocks_per_batch = 256
    max_blocks_per_read = 1000
    rate_per_gateway = 20.0        # pushes per second, sustained
    rate_burst = 40                # pushes allowed at once
    max_future_skew_ms = 300000    # blocks may end at most this far after the replica's clock

    [keys]
    utility_secret_key = "/etc/meterchain/utility.key"   # optional: opens sealed payloads

    [auth]
    public = ["health", "heads"]   # route groups anyone may read without a token

Every field is optional and has the documented default below. A bad value raises
:class:`~ledger.errors.ConfigError` naming the key (``limits.max_body_bytes``).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from ledger.errors import ConfigError, ConfigErrors
from replica.auth import DEFAULT_PUBLIC, PUBLIC_GROUPS
from replica.ui.config import AuditPeersConfig, UiConfig, parse_audit, parse_ui


@dataclass(frozen=True)
class Limits:
    """Limits applied to every request (see ``docs/replica-api.md``)."""

    max_body_bytes: int = 8 * 1024 * 1024
    """Largest request body accepted (413 ``too-large`` above)."""
    max_blocks_per_batch: int = 256
    """Most blocks in one push (413 ``too-large`` above)."""
    max_blocks_per_read: int = 1000
    """Cap on ``limit`` when reading a range of blocks."""
    rate_per_gateway: float = 20.0
    """Sustained pushes per second per gateway (429 ``rate-limited`` above); 0 = no limit."""
    rate_burst: int = 40
    """Pushes a gateway may make at once before the sustained rate applies."""
    max_future_skew_ms: int = 5 * 60 * 1000
    """How far after the replica's clock a block's time span may end (422 ``bad-time``)."""
    max_block_bytes: int = 1024 * 1024
    """Largest block record accepted in a push (413 ``too-large`` with ``index``)."""
    max_inflight_body_bytes: int = 64 * 1024 * 1024
    """Bytes of push bodies one server process holds at once, being received or verified
    (503 ``busy`` above); at least ``max_body_bytes``."""
    max_inflight_body_bytes_per_client: int = 16 * 1024 * 1024
    """The same per client address; at least ``max_body_bytes``."""
    body_timeout_s: float = 30.0
    """Seconds a push body may take to arrive (408 ``body-timeout`` after)."""
    junk_per_client: float = 2.0
    """Sustained refused or unsigned pushes per second per client address (429 above);
    0 = no limit. Charged for every push whose first block's signature is not verified."""
    junk_burst: int = 20
    """Refused or unsigned pushes a client address may make at once."""
    max_read_bytes: int = 8 * 1024 * 1024
    """Bytes of block records one ``GET .../blocks`` answers at most (fewer blocks then)."""
    max_forks_per_height: int = 4
    """Pieces of fork evidence kept per gateway and height; further ones are only counted."""
    max_bytes_per_gateway: int = 16 * 1024**3
    """Bytes of block records stored per gateway (507 ``quota-exceeded`` above); 0 = none."""


@dataclass(frozen=True)
class ReplicaConfig:
    """Everything ``meterchain replica serve`` needs."""

    host: str = "127.0.0.1"
    port: int = 8470
    workers: int = 1
    """uvicorn worker processes; more than one only when the storage allows it."""
    tls_cert: Path | None = None
    """PEM certificate (chain) to serve HTTPS with; gateways pin it or its CA."""
    tls_key: Path | None = None
    """The certificate's private key (PEM). Without both, plain HTTP (behind a TLS proxy)."""
    storage_url: str = "sqlite:///replica.db"
    """``sqlite:///relative.db``, ``sqlite:////absolute.db`` or a ``postgresql://`` DSN."""
    limits: Limits = field(default_factory=Limits)
    utility_secret_key: Path | None = None
    """The utility's X25519 secret key file, as `meterchain keygen --utility` writes it."""
    public: frozenset[str] = frozenset(DEFAULT_PUBLIC)
    """Route groups open without a token (``auth.public``; see :mod:`replica.auth`)."""
    tls_client_ca: Path | None = None
    """CA bundle (PEM) for client certificates: when set, HTTPS requires one (mTLS),
    in addition to tokens."""
    source: str | None = None
    """The file this was loaded from (for messages)."""
    ui: UiConfig = field(default_factory=UiConfig)
    """``[ui]``: the web view (see :mod:`replica.ui.config`)."""
    audit: AuditPeersConfig = field(default_factory=AuditPeersConfig)
    """``[audit]``: other replicas whose heads the audit page compares."""


_SECTIONS: dict[str, dict[str, tuple[str, type]]] = {
    "listen": {"host": ("host", str), "port": ("port", int), "workers": ("workers", int),
               "tls_cert": ("tls_cert", str), "tls_key": ("tls_key", str),
               "tls_client_ca": ("tls_client_ca", str)},
    "storage": {"url": ("storage_url", str)},
    "keys": {"utility_secret_key": ("utility_secret_key", str)},
    "auth": {"public": ("public", list)},
}


def load_config(path: str | Path) -> ReplicaConfig:
    """Read and check ``replica.toml``.

    Raises:
        ConfigError: the file does not exist, is not TOML or a value is wrong (every
            problem is listed).
        OSError: the file cannot be read otherwise.
    """
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError("", "no such file: give the replica's config with --config FILE "
                          "(a [storage] url is all it needs; see docs/replica-api.md)",
                          source=str(p)) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("", f"not valid TOML: {exc}", source=str(p)) from None
    except UnicodeDecodeError as exc:
        raise ConfigError("", f"not a text file (not UTF-8 at byte {exc.start})",
                          source=str(p)) from None
    return parse_config(data, source=str(p), base=p.parent)


def parse_config(data: dict[str, Any], *, source: str | None = None,
                 base: Path | None = None) -> ReplicaConfig:
    """Build a :class:`ReplicaConfig` from parsed TOML (relative paths resolve from ``base``).

    Raises:
        ConfigError: unknown keys or wrong values, all listed at once.
    """
    errors: list[ConfigError] = []
    top: dict[str, Any] = {}
    limit_values: dict[str, Any] = {}
    limit_types = {f.name: type(getattr(Limits(), f.name)) for f in fields(Limits)}
    extra: dict[str, Any] = {}
    for section, body in data.items():
        if section not in (*_SECTIONS, "limits", "ui", "audit"):
            errors.append(ConfigError(section, "unknown section (want listen, storage, "
                                      "limits, keys, auth, ui, audit)", source=source))
            continue
        if not isinstance(body, dict):
            errors.append(ConfigError(section, "must be a table", source=source))
            continue
        if section in ("ui", "audit"):
            parsed, problems = (parse_ui(body, source) if section == "ui"
                                else parse_audit(body, source, base))
            extra[section] = parsed
            errors.extend(problems)
            continue
        for key, value in body.items():
            where = f"{section}.{key}"
            if section == "limits":
                want = limit_types.get(key)
                if want is None:
                    errors.append(ConfigError(where, f"unknown key (want one of "
                                              f"{', '.join(limit_types)})", source=source))
                    continue
                ok = _typed(value, want)
                if ok is None or ok < 0:
                    errors.append(ConfigError(where, f"must be a non-negative {want.__name__}, "
                                              f"got {value!r}", source=source))
                    continue
                limit_values[key] = ok
                continue
            spec = _SECTIONS[section].get(key)
            if spec is None:
                errors.append(ConfigError(where, f"unknown key (want one of "
                                          f"{', '.join(_SECTIONS[section])})", source=source))
                continue
            name, want = spec
            if _typed(value, want) is None:
                errors.append(ConfigError(where, f"must be a {want.__name__}, got {value!r}",
                                          source=source))
                continue
            top[name] = value
    errors.extend(_check_values(top, limit_values, source))
    if errors:
        raise errors[0] if len(errors) == 1 else ConfigErrors(errors, source=source)
    if "public" in top:
        top["public"] = frozenset(top["public"])
    for name in ("utility_secret_key", "tls_cert", "tls_key", "tls_client_ca"):
        value = top.pop(name, None)
        if value is not None:
            kp = Path(value)
            top[name] = kp if kp.is_absolute() or base is None else base / kp
    url = top.get("storage_url")
    if url and url.startswith("sqlite:///") and base is not None:
        rel = url[len("sqlite:///"):]
        if not rel.startswith("/") and rel != ":memory:":
            top["storage_url"] = "sqlite:///" + str((base / rel).resolve())
    return ReplicaConfig(limits=Limits(**limit_values), source=source, **top, **extra)


def _typed(value: Any, want: type) -> Any:
    if want is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if want is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if want is str and isinstance(value, str):
        return value
    if want is list and isinstance(value, list):
        return value
    return None


def _check_values(top: dict[str, Any], limits: dict[str, Any], source: str | None
                  ) -> list[ConfigError]:
    errors = []
    port = top.get("port")
    if port is not None and not 0 <= port <= 65535:
        errors.append(ConfigError("listen.port", f"must be 0..65535, got {port}", source=source))
    if ("tls_cert" in top) != ("tls_key" in top):
        errors.append(ConfigError("listen.tls_key" if "tls_cert" in top else "listen.tls_cert",
                                  "tls_cert and tls_key go together (PEM certificate chain "
                                  "and its private key)", source=source))
    public = top.get("public")
    if public is not None:
        bad = [g for g in public if g not in PUBLIC_GROUPS]
        if bad:
            errors.append(ConfigError("auth.public", f"unknown group {bad[0]!r} (want some of "
                                      f"{', '.join(PUBLIC_GROUPS)})", source=source))
    if "tls_client_ca" in top and "tls_cert" not in top:
        errors.append(ConfigError("listen.tls_client_ca", "client certificates need HTTPS: "
                                  "set tls_cert and tls_key too", source=source))
    workers = top.get("workers")
    if workers is not None and not 1 <= workers <= 64:
        errors.append(ConfigError("listen.workers", f"must be 1..64, got {workers}",
                                  source=source))
    url = top.get("storage_url")
    if url is not None and not url.startswith(("sqlite:///", "postgresql://", "postgres://")):
        errors.append(ConfigError("storage.url", "must start with sqlite:/// or postgresql://, "
                                  f"got {url!r}", source=source))
    for name in ("max_body_bytes", "max_blocks_per_batch", "max_blocks_per_read", "rate_burst",
                 "max_block_bytes", "junk_burst", "max_read_bytes", "max_forks_per_height"):
        if name in limits and limits[name] < 1:
            errors.append(ConfigError(f"limits.{name}", "must be at least 1", source=source))
    body = limits.get("max_body_bytes", Limits.max_body_bytes)
    for name in ("max_inflight_body_bytes", "max_inflight_body_bytes_per_client"):
        value = limits.get(name, getattr(Limits, name))
        if value < body:
            errors.append(ConfigError(f"limits.{name}", f"must be at least max_body_bytes "
                                      f"({body}), got {value}", source=source))
    return errors
