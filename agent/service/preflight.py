"""Every start-up check that needs no running meter, shared by ``run`` and ``config check``.

``meterchain config check`` is the unit's ``ExecStartPre``: whatever ``meterchain run``
would refuse at start, it must refuse first, with the same message, or the service
restart-loops behind a check that said OK. So both call :func:`check_startup`, which
reports every problem at once, each under its key path:

- the config itself (types, ranges, cross-field rules: :mod:`agent.service.config`);
- each meter's driver settings (profile, options, serial settings), with a stand-in for
  a value already reported so that ``unit = 0`` and an unknown profile are two problems;
  no port is opened;
- the gateway key file (present, a key, not readable by others) and, when sealing to
  the utility, the utility's public key;
- the metrics textfile's directory, written to as the service would write it (under the
  hardened unit only ``/var/lib/meterchain`` and ``/var/lib/prometheus/node-exporter``
  are writable).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import tempfile
from pathlib import Path
from typing import Any

import keyfiles as keys
from agent.service.config import AgentConfig, MeterConfig, Validated, read_toml, validate_config
from agent.service.daemon import meter_spec
from drivers.base import Meter, MeterSpec, open_meter
from ledger.errors import ConfigError, ConfigErrors, KeyFileError

UNIT_WRITABLE_DIRS = ("/var/lib/meterchain", "/var/lib/prometheus/node-exporter")
"""Directories the installed unit may write (StateDirectory and ReadWritePaths)."""

_STAND_INS: dict[str, Any] = {"unit": 1, "tcp_port": 502, "timeout_s": 1.0}
"""Valid values put in place of a meter value already reported, for the driver check."""


def check_startup(path: str | os.PathLike[str]) -> AgentConfig:
    """Read ``path`` and make every start-up check ``meterchain run`` makes before it
    needs a meter; return the config.

    Raises:
        ConfigError: the file cannot be read or is not TOML (one problem).
        ConfigErrors: every problem found, each with its key path.
    """
    v = validate_config(read_toml(path), source=str(path))
    problems = list(v.problems)
    problems += meter_problems(v)
    problems += key_problems(v)
    problems += textfile_problems(v)
    if problems:
        raise ConfigErrors(problems, source=str(path))
    return v.config


def _spec(v: Validated, path: str, m: MeterConfig) -> MeterSpec:
    for name, value in _STAND_INS.items():
        if v.is_bad(f"{path}.{name}"):
            m = dataclasses.replace(m, **{name: value})
    return meter_spec(m)


def meter_problems(v: Validated) -> list[ConfigError]:
    """What each meter's driver refuses (the meters are created and closed, no port is
    opened); problems at a key already reported are left out."""
    problems: list[ConfigError] = []
    opened: list[Meter] = []
    for i, m in enumerate(v.config.meters):
        path = f"meters[{i}]"
        if v.is_bad(path) or v.is_bad(f"{path}.driver"):
            continue
        try:
            opened.append(open_meter(_spec(v, path, m)))
        except ConfigError as exc:
            key = f"{path}.{exc.path}" if exc.path else path
            if exc.path == "protocol":
                key = f"{path}.driver"
            if not v.is_bad(key):
                problems.append(ConfigError(key, exc.message))
    if opened:
        asyncio.run(_close(opened))
    return problems


async def _close(meters: list[Meter]) -> None:
    for meter in meters:
        with contextlib.suppress(Exception):  # never connected: nothing can fail that matters
            await meter.close()


def key_problems(v: Validated) -> list[ConfigError]:
    """The gateway key must load (present, a key, 0600); the utility key too when used."""
    cfg = v.config
    problems: list[ConfigError] = []
    if not v.is_bad("gateway.key_path"):
        try:
            keys.load_signing_key(cfg.gateway.key_path)
        except KeyFileError as exc:
            hint = ""
            if not os.path.lexists(cfg.gateway.key_path):
                hint = ("; it is created at the service's first start, or by `meterchain "
                        f"keygen --out {Path(cfg.gateway.key_path).parent}`")
            problems.append(ConfigError("gateway.key_path", f"{exc}{hint}"))
    s = cfg.sealing
    if (s.seal_to_utility and s.utility_key and not v.is_bad("sealing.utility_key")
            and not v.is_bad("sealing.seal_to_utility")):
        try:
            keys.load_public_key(s.utility_key)
        except KeyFileError as exc:
            problems.append(ConfigError("sealing.utility_key", str(exc)))
    return problems


def textfile_problems(v: Validated) -> list[ConfigError]:
    """The metrics textfile's directory must take a new file, as the agent writes it
    (a temporary file renamed over the old one)."""
    target = v.config.metrics.textfile
    if target is None or v.is_bad("metrics.textfile") or v.is_bad("metrics"):
        return []
    d = Path(target).parent
    hint = ("; under the installed unit only " + " and ".join(UNIT_WRITABLE_DIRS)
            + " are writable")
    if not d.is_dir():
        return [ConfigError("metrics.textfile", f"directory {d} does not exist{hint}")]
    try:
        fd, tmp = tempfile.mkstemp(prefix=".meterchain-check-", dir=d)
    except OSError as exc:
        return [ConfigError("metrics.textfile", f"cannot write in {d}: {exc.strerror}{hint}")]
    os.close(fd)
    os.unlink(tmp)
    return []
