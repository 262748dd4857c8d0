"""Prometheus text exposition (format 0.0.4) of the agent's status snapshot.

The daemon builds one JSON-ready snapshot (see :mod:`agent.service.status`) and this module
renders it, so ``/metrics``, the textfile and ``meterchain status`` always agree.
Served by :class:`MetricsServer` on a loopback address (``[metrics] listen``) or
written atomically to a ``.prom`` file for node_exporter's textfile collector
(``[metrics] textfile``). The metric list is documented in ``docs/agent.md``.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent.storage.atomic import write_atomically
from ledger.errors import ConfigError

log = logging.getLogger("meterchain.metrics")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
MAX_REQUEST_BYTES = 8192
"""Request line and headers larger than this are refused (431)."""
REQUEST_TIMEOUT_S = 5.0

Snapshot = dict[str, Any]

# (metric name, type, help, key in the per-meter stats)
_METER_METRICS = (
    ("meterchain_meter_reads_total", "counter", "Successful reads of the meter.", "reads"),
    ("meterchain_meter_errors_total", "counter", "Failed reads (timeouts included).", "errors"),
    ("meterchain_meter_timeouts_total", "counter", "Reads that timed out.", "timeouts"),
    ("meterchain_meter_readings_total", "counter", "Readings taken from the meter.",
     "readings"),
    ("meterchain_meter_skipped_ticks_total", "counter",
     "Poll ticks skipped because the bus or the previous read was busy.", "skipped_ticks"),
    ("meterchain_meter_invalid_readings_total", "counter",
     "Readings refused by the canonical encoding (not sealed).", "invalid_readings"),
    ("meterchain_meter_consecutive_failures", "gauge", "Failed reads in a row.",
     "consecutive_failures"),
)


def _esc(value: object) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _num(value: object) -> str:
    if value is None:
        return "NaN"
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        return repr(value)
    return str(value)


class Writer:
    """Collects samples by metric family and writes each family once, HELP and TYPE
    first and all its samples together, whatever order they were added in (a family
    split into groups is read as untyped by Prometheus parsers)."""

    def __init__(self) -> None:
        self._families: dict[str, tuple[str, str, list[str]]] = {}

    def add(self, name: str, kind: str, help_text: str, value: object,
            labels: dict[str, object] | None = None) -> None:
        family = self._families.setdefault(name, (kind, help_text, []))
        lab = ""
        if labels:
            lab = "{" + ",".join(f'{k}="{_esc(v)}"' for k, v in labels.items()) + "}"
        family[2].append(f"{name}{lab} {_num(value)}")

    def text(self) -> str:
        """The exposition (ends with a newline; empty when nothing was added)."""
        lines: list[str] = []
        for name, (kind, help_text, samples) in self._families.items():
            lines.append(f"# HELP {name} {help_text}")
            lines.append(f"# TYPE {name} {kind}")
            lines += samples
        return "\n".join(lines) + "\n" if lines else ""


def _seconds(ms: object) -> float | None:
    return ms / 1000.0 if isinstance(ms, int) else None


def render(snap: Snapshot) -> str:
    """The snapshot as Prometheus text (ends with a newline)."""
    w = Writer()
    for m in snap.get("meters", []):
        labels = {"meter": m["meter_id"], "driver": m["driver"]}
        for name, kind, help_text, key in _METER_METRICS:
            w.add(name, kind, help_text, m[key], labels)
    for m in snap.get("meters", []):
        w.add("meterchain_meter_last_success_timestamp_seconds", "gauge",
              "Unix time of the last successful read (NaN: never).",
              _seconds(m["last_success_ms"]), {"meter": m["meter_id"], "driver": m["driver"]})
    chain = snap.get("chain", {})
    w.add("meterchain_chain_height", "gauge", "Height of the last committed block (-1: none).",
          chain.get("height", -1))
    w.add("meterchain_chain_first_height", "gauge", "Lowest height still stored (pruning).",
          chain.get("first_height", 0))
    sealer = snap.get("sealer", {})
    w.add("meterchain_pending_readings", "gauge",
          "Readings not yet committed (waiting to be sealed, or sealed and waiting for the disk).",
          sealer.get("pending_readings", 0))
    w.add("meterchain_blocks_in_flight", "gauge",
          "Blocks written and waiting for an fdatasync to cover them.",
          sealer.get("blocks_in_flight", 0))
    w.add("meterchain_blocks_committed_total", "counter", "Blocks committed since start.",
          sealer.get("blocks_committed", 0))
    w.add("meterchain_readings_committed_total", "counter", "Readings committed since start.",
          sealer.get("readings_committed", 0))
    w.add("meterchain_dropped_readings_total", "counter",
          "Pending readings dropped because memory was full while the store refused blocks.",
          sealer.get("dropped_readings", 0))
    w.add("meterchain_store_full", "gauge", "1 while the store refuses blocks (disk full).",
          bool(sealer.get("store_full", False)))
    for r in snap.get("replicas", []):
        labels = {"replica": r["name"]}
        w.add("meterchain_replica_acked_height", "gauge",
              "Highest height the replica acknowledged (-1: none).", r.get("acked_height"),
              labels)
        w.add("meterchain_replica_backlog_blocks", "gauge",
              "Committed blocks the replica has not acknowledged.", r.get("backlog_blocks"),
              labels)
        w.add("meterchain_replica_required", "gauge",
              "1 if pruning waits for this replica.", bool(r.get("required")), labels)
        w.add("meterchain_replica_discrepancy", "gauge",
              "1 if the replica's copy contradicts the local chain (sending stopped).",
              r.get("discrepancy") is not None, labels)
        w.add("meterchain_replica_last_success_timestamp_seconds", "gauge",
              "Unix time of the last successful exchange (NaN: never).",
              _seconds(r.get("last_success_ms")), labels)
        w.add("meterchain_replica_last_error_timestamp_seconds", "gauge",
              "Unix time of the last error (NaN: none).", _seconds(r.get("last_error_ms")),
              labels)
        if r.get("last_error"):
            w.add("meterchain_replica_last_error_info", "gauge",
                  "The replica's last error text as a label.", 1,
                  {"replica": r["name"], "error": str(r["last_error"])[:200]})
    disk = snap.get("disk", {})
    w.add("meterchain_disk_used_bytes", "gauge", "Bytes the block store uses.",
          disk.get("used_bytes"))
    w.add("meterchain_disk_budget_bytes", "gauge", "Configured disk budget of the store.",
          disk.get("budget_bytes"))
    w.add("meterchain_disk_free_bytes", "gauge", "Free bytes on the store's filesystem.",
          disk.get("free_bytes"))
    w.add("meterchain_disk_pruned_bytes_total", "counter", "Bytes freed by pruning.",
          disk.get("pruned_bytes", 0))
    w.add("meterchain_disk_reserve_bytes", "gauge",
          "Bytes held in the disk reserve (0 while it is released: the disk is full).",
          disk.get("reserve_bytes", 0) if disk.get("reserve_held") else 0)
    clock = snap.get("clock", {})
    w.add("meterchain_clock_steps_total", "counter", "Gateway wall-clock steps detected.",
          clock.get("steps", 0))
    health = snap.get("health", {})
    w.add("meterchain_critical", "gauge", "1 while the agent reports a critical condition.",
          health.get("state") == "critical")
    return w.text()


def write_textfile(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` atomically (temp file in the same directory, then rename); on
    failure the old file is left as it was and the temporary file removed.

    Raises:
        OSError: the directory is not writable or the disk is full.
    """
    p = Path(path)
    tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
    # mode 0o666 (less the umask), as open() creates it; no fsync: rewritten every cycle
    write_atomically(p, text.encode("utf-8"), tmp, fsync=False, mode=0o666)


def listen_refusal(listen: str, exc: OSError) -> ConfigError:
    """Why ``metrics.listen`` cannot be listened on, as ``run`` and ``config check`` say it."""
    port = listen.rpartition(":")[2]
    hint = (f"; another program holds the port (ss -ltnp 'sport = :{port}' shows which)"
            if exc.errno == errno.EADDRINUSE else "")
    return ConfigError("metrics.listen", f"cannot listen on {listen}: "
                                         f"{exc.strerror or exc}{hint}")


class MetricsServer:
    """Serves ``GET /metrics`` on a loopback address (HTTP/1.0-style, one response)."""

    def __init__(self, listen: str, snapshot: Callable[[], Snapshot]) -> None:
        host, _, port = listen.rpartition(":")
        self.listen = listen
        self.host = host.strip("[]")
        self.port = int(port)
        self._snapshot = snapshot
        self._server: asyncio.Server | None = None
        self.requests = 0

    async def start(self) -> int:
        """Start listening; returns the bound port (useful with port 0).

        Raises:
            ConfigError: the address is in use or not local (key ``metrics.listen``).
        """
        try:
            self._server = await asyncio.start_server(self._handle, self.host, self.port,
                                                      limit=MAX_REQUEST_BYTES)
        except OSError as exc:
            raise listen_refusal(self.listen, exc) from None
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), REQUEST_TIMEOUT_S)
            parts = head.split(b"\r\n", 1)[0].split()
            if len(parts) != 3:
                await self._reply(writer, 400, "bad request line\n")
            elif parts[0] not in (b"GET", b"HEAD"):
                await self._reply(writer, 405, "only GET\n")
            elif parts[1].split(b"?")[0] != b"/metrics":
                await self._reply(writer, 404, "see /metrics\n")
            else:
                self.requests += 1
                body = render(self._snapshot())
                await self._reply(writer, 200, body, head_only=parts[0] == b"HEAD")
        except asyncio.LimitOverrunError:
            await self._reply(writer, 431, "request header too large\n")
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError) as exc:
            log.debug("metrics request dropped: %r", exc)
        finally:
            writer.close()

    async def _reply(self, writer: asyncio.StreamWriter, code: int, body: str, *,
                     head_only: bool = False) -> None:
        reason = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
                  431: "Request Header Fields Too Large"}[code]
        data = body.encode()
        writer.write(f"HTTP/1.1 {code} {reason}\r\nContent-Type: {CONTENT_TYPE}\r\n"
                     f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n".encode())
        if not head_only:
            writer.write(data)
        try:
            await writer.drain()
        except ConnectionError as exc:
            log.debug("metrics client went away: %r", exc)
