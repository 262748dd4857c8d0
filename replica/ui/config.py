"""The ``[ui]`` and ``[audit]`` sections of ``replica.toml``.

Example::

    [ui]
    behind_after_s = 900         # a gateway's newest block older than this: "behind"
    silent_after_s = 3600        # older than this (or never): "silent"
    session_ttl_s = 28800        # a login lasts this long
    max_sessions = 1000          # logouts remembered per process (the oldest forgotten)

    [audit]
    peers = ["https://replica-b.example:8470"]   # other replicas whose heads /ui/audit shows
    token_file = "peers.token"   # a read:chain token the peers accept (file mode 0600)
    timeout_s = 5.0              # per peer request
    cache_s = 10                 # heads of peers are fetched at most this often
    max_peers = 16
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from ledger.errors import ConfigError


@dataclass(frozen=True)
class UiConfig:
    """Settings of the web view (every field optional)."""

    behind_after_s: int = 900
    """Age of a gateway's last accepted block above which the overview says ``behind``."""
    silent_after_s: int = 3600
    """Age above which (or no block at all) the overview says ``silent``."""
    session_ttl_s: int = 8 * 3600
    """How long a login lasts, in seconds."""
    max_sessions: int = 1000
    """Most ended (logged-out) sessions a process remembers until they expire; beyond,
    the oldest is forgotten (see :class:`replica.ui.session.SessionStore`)."""


@dataclass(frozen=True)
class AuditPeersConfig:
    """Other replicas whose heads ``GET /v1/peers/heads`` compares with this one's."""

    peers: tuple[str, ...] = field(default_factory=tuple)
    """Base URLs of the other replicas."""
    token_file: Path | None = None
    """File holding an API token (scope ``read:chain``) sent to the peers; relative paths
    resolve from the config file's folder. Without it the peers are asked anonymously."""
    timeout_s: float = 5.0
    cache_s: int = 10
    max_peers: int = 16


_UI_INTS = {f.name for f in fields(UiConfig)}


def parse_ui(body: dict[str, Any], source: str | None) -> tuple[UiConfig, list[ConfigError]]:
    """``[ui]`` as a :class:`UiConfig` and every problem found (key named)."""
    errors: list[ConfigError] = []
    values: dict[str, int] = {}
    for key, value in body.items():
        where = f"ui.{key}"
        if key not in _UI_INTS:
            errors.append(ConfigError(where, f"unknown key (want one of "
                                      f"{', '.join(sorted(_UI_INTS))})", source=source))
        elif not isinstance(value, int) or isinstance(value, bool) or value < 1:
            errors.append(ConfigError(where, f"must be a positive integer, got {value!r}",
                                      source=source))
        else:
            values[key] = value
    cfg = UiConfig(**values)
    if not errors and cfg.silent_after_s < cfg.behind_after_s:
        errors.append(ConfigError("ui.silent_after_s", "must be at least ui.behind_after_s "
                                  f"({cfg.behind_after_s}), got {cfg.silent_after_s}",
                                  source=source))
    return cfg, errors


def parse_audit(body: dict[str, Any], source: str | None, base: Path | None = None
                ) -> tuple[AuditPeersConfig, list[ConfigError]]:
    """``[audit]`` as an :class:`AuditPeersConfig` and every problem found (key named)."""
    errors: list[ConfigError] = []
    out: dict[str, Any] = {}
    for key, value in body.items():
        where = f"audit.{key}"
        if key == "peers":
            if not isinstance(value, list) or not all(
                    isinstance(u, str) and u.startswith(("http://", "https://")) for u in value):
                errors.append(ConfigError(where, "must be a list of http:// or https:// URLs",
                                          source=source))
            else:
                out["peers"] = tuple(u.rstrip("/") for u in value)
        elif key == "token_file":
            if not isinstance(value, str) or not value:
                errors.append(ConfigError(where, f"must be a file path, got {value!r}",
                                          source=source))
            else:
                path = Path(value)
                out["token_file"] = path if path.is_absolute() or base is None else base / path
        elif key == "timeout_s":
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                errors.append(ConfigError(where, f"must be a positive number, got {value!r}",
                                          source=source))
            else:
                out["timeout_s"] = float(value)
        elif key in ("cache_s", "max_peers"):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                errors.append(ConfigError(where, f"must be a positive integer, got {value!r}",
                                          source=source))
            else:
                out[key] = value
        else:
            errors.append(ConfigError(where, "unknown key (want one of peers, token_file, "
                                      "timeout_s, cache_s, max_peers)", source=source))
    cfg = AuditPeersConfig(**out)
    if len(cfg.peers) > cfg.max_peers:
        errors.append(ConfigError("audit.peers", f"at most audit.max_peers ({cfg.max_peers}) "
                                  f"peers, got {len(cfg.peers)}", source=source))
    return cfg, errors
