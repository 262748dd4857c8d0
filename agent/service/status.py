"""The agent's status file (``status.json``) and ``meterchain status`` for the technician.

The daemon writes one JSON snapshot atomically (temp file, fsync, rename) next to its
state file every ``[metrics] interval_s`` and when it stops. The same snapshot feeds the
Prometheus metrics. Snapshot keys: ``version``, ``written_ms``, ``pid``, ``started_ms``,
``running``, ``interval_s``, ``gateway`` (``name``, ``key``), ``health`` (``state`` ok /
degraded / critical, ``problems``), ``meters`` (see ``agent.pipeline.poller.MeterStats``),
``chain`` (``height``, ``head_hash``, ``head_time_ms``, ``first_height``), ``sealer``,
``replicas`` (the forwarder's status dicts), ``disk`` (``used_bytes``, ``budget_bytes``,
``free_bytes``, ``pruned_bytes``, ``over_budget``, and the disk reserve's
``reserve_bytes``, ``reserve_held``, ``reserve_releases``, ``reserve_released_ms``),
``clock`` (``steps``, ``last_step_s``).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from agent.storage.atomic import write_atomically
from ledger.errors import StoreError

STATUS_VERSION = 1
STALE_FACTOR = 3.0
"""A status older than this many write intervals means the daemon is not running."""


def write_status(path: str | os.PathLike[str], snap: dict[str, Any]) -> None:
    """Write the snapshot atomically (a reader never sees a half-written file); on
    failure the old file is left as it was and the temporary file removed.

    Raises:
        OSError: the directory is not writable or the disk is full.
    """
    p = Path(path)
    tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
    data = json.dumps(snap, indent=1, sort_keys=True).encode()
    write_atomically(p, data, tmp)


def read_status(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a status file.

    Raises:
        StoreError: missing (the daemon never ran with this config) or not a status file.
    """
    try:
        with open(path, encoding="utf-8") as fh:
            snap = json.load(fh)
    except FileNotFoundError:
        raise StoreError(f"{path}: no status file -- has `meterchain run` started with this "
                         "config? (systemctl status meterchain-agent)") from None
    except OSError as exc:
        raise StoreError(f"{path}: unreadable status file: {exc.strerror}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise StoreError(f"{path}: not a meterchain status file (not JSON: {exc})") from None
    if not isinstance(snap, dict) or snap.get("version") != STATUS_VERSION:
        raise StoreError(f"{path}: not a meterchain status file (version "
                         f"{snap.get('version') if isinstance(snap, dict) else None!r})")
    return snap


def staleness_s(snap: dict[str, Any], now_s: float | None = None) -> float:
    """Seconds since the snapshot was written."""
    now = time.time() if now_s is None else now_s
    return max(0.0, now - snap.get("written_ms", 0) / 1000.0)


def is_stale(snap: dict[str, Any], now_s: float | None = None) -> bool:
    """True if a running daemon should have rewritten the file by now."""
    return bool(snap.get("running")) and staleness_s(snap, now_s) > STALE_FACTOR * float(
        snap.get("interval_s", 15.0))


def claimed_pid(snap: dict[str, Any]) -> int | None:
    """The process id of an agent whose status says it runs, or None (stopped, no pid)."""
    pid = snap.get("pid")
    if not snap.get("running") or not isinstance(pid, int) or pid <= 0:
        return None
    return pid


def pid_exists(pid: int) -> bool:
    """True if process ``pid`` exists (also when it runs as another user)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by the service user
        return True
    return True


def pid_gone(snap: dict[str, Any]) -> bool:
    """True if the status says running but its process no longer exists (killed, crashed
    or the machine rebooted), so the file will never be rewritten."""
    pid = claimed_pid(snap)
    return pid is not None and not pid_exists(pid)


def agent_state(snap: dict[str, Any], now_s: float | None = None) -> str:
    """``running``, ``stopped`` (it wrote its final status), ``not-responding`` (status
    older than a few write intervals) or ``gone`` (its process no longer exists)."""
    if not snap.get("running"):
        return "stopped"
    if pid_gone(snap):
        return "gone"
    if is_stale(snap, now_s):
        return "not-responding"
    return "running"


def assess(snap: dict[str, Any], now_s: float | None = None) -> dict[str, Any]:
    """What ``meterchain status`` concludes: the agent's state, health and exit code."""
    agent = agent_state(snap, now_s)
    health = snap.get("health", {}).get("state", "?")
    return {"agent": agent, "health": health, "exit_code": exit_code(snap, now_s),
            "status_age_s": round(staleness_s(snap, now_s), 1)}


def _named(obis: str) -> tuple[str, str]:
    """(short name, OBIS code) of a value key, the name empty when unknown."""
    try:
        from drivers.quantities import lookup

        return lookup(obis).name, obis
    except (KeyError, ValueError):
        return "", obis


def _ago(ms: int | None, now_s: float) -> str:
    if ms is None:
        return "never"
    secs = now_s - ms / 1000.0
    if secs < 120:
        return f"{secs:.0f} s ago"
    if secs < 7200:
        return f"{secs / 60:.0f} min ago"
    return f"{secs / 3600:.1f} h ago"


def _size(n: int | None) -> str:
    if n is None:
        return "?"
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def render_status(snap: dict[str, Any], now_s: float | None = None) -> str:
    """The snapshot as text for a technician at the gateway's console."""
    now = time.time() if now_s is None else now_s
    out: list[str] = []
    gw = snap.get("gateway", {})
    health = snap.get("health", {})
    state = health.get("state", "?")
    agent = agent_state(snap, now)
    if agent == "stopped":
        run = f"STOPPED (final status written {_ago(snap.get('written_ms'), now)})"
    elif agent == "gone":
        run = (f"NOT RUNNING: process {snap.get('pid')} is gone without a final status "
               f"(last written {_ago(snap.get('written_ms'), now)}); "
               "see journalctl -u meterchain-agent")
        state = "critical"
    elif agent == "not-responding":
        run = (f"NOT RESPONDING: status last written {_ago(snap.get('written_ms'), now)} "
               f"(pid {snap.get('pid')})")
        state = "critical"
    else:
        run = f"running (pid {snap.get('pid')}, since {_ago(snap.get('started_ms'), now)})"
    out.append(f"gateway  {gw.get('name') or '-'}  public key {gw.get('key', '?')}")
    out.append(f"agent    {run}")
    out.append(f"health   {state.upper()}")
    for problem in health.get("problems", []):
        out.append(f"  ! {problem}")
    chain = snap.get("chain", {})
    sealer = snap.get("sealer", {})
    head = chain.get("head_hash") or "-"
    out.append(f"chain    height {chain.get('height', -1)}  head {head[:16]}  first stored "
               f"{chain.get('first_height', 0)}  pending readings "
               f"{sealer.get('pending_readings', 0)}  dropped {sealer.get('dropped_readings', 0)}")
    disk = snap.get("disk", {})
    out.append(f"disk     {_size(disk.get('used_bytes'))} used of {_size(disk.get('budget_bytes'))}"
               f" budget, {_size(disk.get('free_bytes'))} free on the filesystem"
               + ("  OVER BUDGET" if disk.get("over_budget") else "")
               + ("  DISK FULL (reserve released)" if disk.get("reserve_bytes")
                  and not disk.get("reserve_held") else ""))
    out.append("meters")
    for m in snap.get("meters", []):
        err = f"  last error {_ago(m.get('last_error_ms'), now)}: {m['last_error']}" if m.get(
            "last_error") else ""
        out.append(f"  {m['meter_id']:<16} {m['driver']:<12} reads {m['reads']:<7} errors "
                   f"{m['errors']:<5} last ok {_ago(m.get('last_success_ms'), now)}{err}")
        for obis, value in sorted(m.get("last_values", {}).items()):
            name, code = _named(obis)
            out.append(f"    {code:<12} {name:<22} {value}")
    out.append("replicas")
    if not snap.get("replicas"):
        out.append("  (none configured)")
    for r in snap.get("replicas", []):
        req = "required" if r.get("required") else "optional"
        out.append(f"  {r['name']:<16} {req:<8} {r.get('state', '?'):<11} acked "
                   f"{r.get('acked_height', -1)}  backlog {r.get('backlog_blocks', '?')} blocks"
                   f"  last ok {_ago(r.get('last_success_ms'), now)}")
        if r.get("discrepancy"):
            out.append(f"    DISCREPANCY: {r['discrepancy']}")
        if r.get("last_error"):
            out.append(f"    last error {_ago(r.get('last_error_ms'), now)}: {r['last_error']}")
    return "\n".join(out) + "\n"


def exit_code(snap: dict[str, Any], now_s: float | None = None) -> int:
    """0 running and healthy; 1 degraded, critical, stopped, not responding or gone.
    (2, a usage error, is the command's.)"""
    if agent_state(snap, now_s) != "running" or snap.get("health", {}).get("state") != "ok":
        return 1
    return 0
