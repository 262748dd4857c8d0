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
- the ledger directory, read strictly read-only through the store's own read path
  (``StoreOptions(read_only=True, create=False)``: no writer lock, no tail repair, nothing
  created or removed, so a running agent is never disturbed): it must be a ledger the
  store opens, its chain must have been sealed by the configured gateway key, and a
  directory still to be made must be creatable;
- the state file (its directory present, the file readable JSON when it exists);
- each https replica's CA file, loaded as the forwarder loads it;
- the metrics ``listen`` address, bound and released (unless this config's running agent
  holds it: its status file names the port and its process lives);
- the metrics textfile's directory, written to as the service would write it (under the
  hardened unit only ``/var/lib/meterchain`` and ``/var/lib/prometheus/node-exporter``
  are writable).

Only what needs a running meter or network (a port that answers, a replica that is up)
and what a running agent itself holds (the ledger's writer lock) is left to ``run``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import os
import socket
import tempfile
from pathlib import Path
from typing import Any

import keyfiles as keys
from agent.pipeline.replica_client import make_ssl_context
from agent.service.config import AgentConfig, MeterConfig, Validated, read_toml, validate_config
from agent.service.daemon import key_mismatch, meter_spec
from agent.service.metrics import listen_refusal
from agent.service.status import claimed_pid, pid_exists, read_status
from agent.storage.segfile import SEGMENT_DIR
from agent.storage.state import AtomicJSONStorage
from agent.storage.store import BlockStore, StoreOptions
from drivers.base import Meter, MeterSpec, open_meter
from ledger import ChainHead
from ledger.errors import ConfigError, ConfigErrors, KeyFileError, StoreError

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
    problems += ledger_problems(v)
    problems += state_problems(v)
    problems += replica_problems(v)
    problems += textfile_problems(v)
    problems += listen_problems(v)
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


def ledger_problems(v: Validated) -> list[ConfigError]:
    """The ledger directory as ``run`` opens it, read without writing anything: a ledger
    the store accepts, sealed by the configured key; or a directory ``run`` can create."""
    cfg = v.config
    if v.is_bad("gateway.ledger_dir"):
        return []
    d = Path(cfg.gateway.ledger_dir)
    try:
        if not d.exists() or (d.is_dir() and not any(d.iterdir())):
            return _creatable(d)
        head = stored_head(d)
        if not os.access(d / SEGMENT_DIR, os.W_OK | os.X_OK):
            return [ConfigError("gateway.ledger_dir", f"{d / SEGMENT_DIR}: not writable")]
    except StoreError as exc:
        return [ConfigError("gateway.ledger_dir", str(exc))]
    except OSError as exc:
        return [ConfigError("gateway.ledger_dir", f"{exc.filename or d}: cannot read: "
                                                  f"{exc.strerror}")]
    if head is None or v.is_bad("gateway.key_path"):
        return []
    try:
        key = keys.public_from_seed(keys.load_signing_key(cfg.gateway.key_path))
    except KeyFileError:
        return []  # reported by key_problems
    if head.header.gateway_key != key:
        return [ConfigError("gateway.key_path", key_mismatch(cfg, key, head.header.gateway_key))]
    return []


def stored_head(directory: Path) -> ChainHead | None:
    """The head of the chain stored in ``directory``, read as ``verify`` and ``show`` read
    a live ledger: no writer lock, no repair, nothing created, truncated or removed.

    Raises:
        StoreError: not a ledger, or damage the store refuses (the message ``run`` gives).
        OSError: a file cannot be read.
    """
    for attempt in (1, 2):
        try:
            with BlockStore.open(directory, options=StoreOptions(read_only=True,
                                                                 create=False)) as store:
                return store.head
        except FileNotFoundError:
            if attempt == 2:  # a segment pruned while listing is not a problem; twice is
                raise
    return None


def _creatable(d: Path) -> list[ConfigError]:
    """``run`` creates a missing (or fills an empty) ledger directory: probe that it can,
    leaving nothing behind."""
    parent = d if d.is_dir() else next((p for p in d.parents if p.exists()), d.parent)
    if not parent.is_dir():
        return [ConfigError("gateway.ledger_dir", f"cannot create {d}: {parent} is not a "
                                                  "directory")]
    try:
        probe = tempfile.mkdtemp(prefix=".meterchain-check-", dir=parent)
    except OSError as exc:
        return [ConfigError("gateway.ledger_dir", f"cannot create {d}: {exc.strerror}")]
    os.rmdir(probe)
    return []


def state_problems(v: Validated) -> list[ConfigError]:
    """The state file as ``run`` reads it: its directory present, the file (if any)
    readable JSON holding an object. Nothing is written."""
    if v.is_bad("gateway.state_path"):
        return []
    try:
        AtomicJSONStorage(v.config.gateway.state_path).read()
    except StoreError as exc:
        return [ConfigError("gateway.state_path", str(exc))]
    return []


def replica_problems(v: Validated) -> list[ConfigError]:
    """Each https replica's TLS settings, loaded as the forwarder loads them (no
    connection is made)."""
    problems: list[ConfigError] = []
    for i, r in enumerate(v.config.replicas):
        path = f"replicas[{i}]"
        if (v.is_bad(path) or not r.url.startswith("https:") or v.is_bad(f"{path}.ca_cert")
                or v.is_bad(f"{path}.pinned_key_sha256")):
            continue
        try:
            make_ssl_context(r.ca_cert, r.pinned_key_sha256)
        except ConfigError as exc:
            problems.append(ConfigError(f"{path}.ca_cert", exc.message))
    return problems


def listen_problems(v: Validated) -> list[ConfigError]:
    """``metrics.listen`` must be free to listen on, as the agent binds it; a port the
    agent of this very config already holds (its status says it runs there) is fine."""
    listen = v.config.metrics.listen
    if listen is None or v.is_bad("metrics.listen") or v.is_bad("metrics"):
        return []
    host, _, port_text = listen.rpartition(":")
    port = int(port_text)
    if port == 0:
        return []
    try:
        for family, kind, proto, _, addr in socket.getaddrinfo(
                host.strip("[]"), port, type=socket.SOCK_STREAM):
            with socket.socket(family, kind, proto) as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as asyncio does
                sock.bind(addr)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE and _agent_listens(v.config, port):
            return []
        return [listen_refusal(listen, exc)]
    return []


def _agent_listens(cfg: AgentConfig, port: int) -> bool:
    """True if this config's agent runs (its status file says so and its process lives)
    and serves its metrics on ``port``."""
    try:
        snap = read_status(cfg.status_path)
    except StoreError:
        return False
    pid = claimed_pid(snap)
    if pid is None or not pid_exists(pid):
        return False
    return str(snap.get("metrics_url") or "").endswith(f":{port}/metrics")


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
