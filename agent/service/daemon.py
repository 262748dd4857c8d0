"""The gateway agent daemon (``meterchain run``): wires config, store, poller, sealer,
forwarders, retention, metrics, status and systemd notification together.

Start-up: validate the config (every problem at once), open the store (recovering a
torn tail), open the state DB, load the gateway key (refusing a key that differs from
the chain's), open every meter through its driver, start one forwarder per replica
(``agent.pipeline.forwarder.Forwarder``: ``run(stop_event)`` task, ``notify()`` after each
commit, ``status`` dict), then send ``READY=1``. SIGTERM/SIGINT: stop polling, seal and
commit what is pending, let forwarders save their cursors, close meters, write the
final status and exit 0 -- all within ``gateway.stop_timeout_s``.

A task that dies (the store failing other than by being full, a bug) stops the daemon
with exit code 1 so systemd restarts it; meters and replicas failing never do, and
neither does a full disk: the disk reserve (``agent/storage/reserve.py``) is released,
cursor and status writes are retried (the forwarders keep their heights in memory),
retention prunes what the replicas hold, and readings wait in memory.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import keyfiles as keys
from agent.pipeline.backoff import stopped_within
from agent.pipeline.forwarder import Forwarder, ForwarderOptions
from agent.pipeline.poller import ClockWatch, Poller, PollTarget
from agent.pipeline.sealer import Sealer
from agent.service.config import TCP_PROTOCOLS, AgentConfig, MeterConfig
from agent.service.metrics import MetricsServer, render, write_textfile
from agent.service.notify import Notifier
from agent.service.status import STATUS_VERSION, write_status
from agent.storage.reserve import DiskReserve
from agent.storage.retention import Retention
from agent.storage.state import StateDB
from agent.storage.store import BlockStore, StoreOptions
from drivers.base import Meter, MeterSpec, open_meter
from ledger import Block
from ledger.errors import ConfigError, ConfigErrors, KeyFileError, StoreError, StoreFullError

log = logging.getLogger("meterchain.agent")

HEALTH_STALL_S = 10.0
"""The sealer loop wakes at least every second; silent longer than this is unhealthy."""
METER_FAILING_AFTER = 3
"""Failed reads in a row after which a meter is reported as failing (degraded)."""
STOP_KEEP_FREE = 64 * 1024
"""At a stop on a full disk, pending readings are committed into the released reserve
while this much plus twice the size of status.json and of the state file stays free."""


def meter_spec(m: MeterConfig) -> MeterSpec:
    """The driver-facing description of a configured meter."""
    return MeterSpec(
        meter_id=m.id, protocol=m.driver, port=m.port, host=m.host,
        tcp_port=m.tcp_port if m.driver in TCP_PROTOCOLS else None,
        baudrate=m.baudrate, parity=m.parity, stopbits=m.stopbits, bytesize=m.bytesize,
        unit=m.unit, profile=m.profile, timeout_s=m.timeout_s, options=dict(m.options),
    )


def key_mismatch(cfg: AgentConfig, key: bytes, chain_key: bytes) -> str:
    """The refusal when the gateway key is not the key of the chain already stored."""
    return (f"{cfg.gateway.key_path}: key {key.hex()} is not the key of the chain in "
            f"{cfg.gateway.ledger_dir} ({chain_key.hex()}); restore the gateway's key or "
            "start a new ledger directory")


def open_meters(cfg: AgentConfig) -> list[Meter]:
    """Open every configured meter through its driver.

    Raises:
        ConfigErrors: every meter a driver refused, with its key path.
    """
    meters: list[Meter] = []
    problems: list[ConfigError] = []
    for i, m in enumerate(cfg.meters):
        try:
            meters.append(open_meter(meter_spec(m)))
        except ConfigError as exc:
            problems.append(ConfigError(f"meters[{i}].{exc.path}" if exc.path
                                        else f"meters[{i}]", exc.message))
    if problems:
        raise ConfigErrors(problems, source=cfg.source)
    return meters


class ReserveBackedCursors:
    """The state DB's cursors for the forwarders: a write failing for lack of space
    releases the disk reserve and is retried once (then the forwarder retries later)."""

    def __init__(self, state: StateDB, reserve: DiskReserve) -> None:
        self.state = state
        self.reserve = reserve

    def cursor(self, replica_name: str) -> int:
        return self.state.cursor(replica_name)

    def set_cursor(self, replica_name: str, height: int) -> None:
        """Raises StoreError (StoreFullError) when it cannot be saved."""
        self.reserve.write_small(lambda: self.state.set_cursor(replica_name, height),
                                 self.state.path)


class AckedCursors:
    """Acknowledged heights for retention, from the forwarders' memory: at least as
    fresh as the saved cursors, so pruning never waits for a cursor write."""

    def __init__(self, forwarders: Sequence[Forwarder]) -> None:
        self._by_name = {fw.name: fw for fw in forwarders}

    def cursor(self, replica_name: str) -> int:
        return self._by_name[replica_name].acked_height


class Agent:
    """One running gateway agent; :meth:`run` until stopped."""

    def __init__(self, cfg: AgentConfig, *, notifier: Notifier | None = None) -> None:
        self.cfg = cfg
        self.notifier = notifier or Notifier()
        self.stop_event = asyncio.Event()
        self.started_ms = int(time.time() * 1000)
        self.store: BlockStore | None = None
        self.state: StateDB | None = None
        self.meters: list[Meter] = []
        self.forwarders: list[Forwarder] = []
        self.metrics_port: int | None = None
        self._healthy = True
        self._stopping = False
        self._write_errors: dict[str, int] = {}  # status/textfile failures in a row

    # --- opening -------------------------------------------------------------------

    def open(self) -> None:
        """Open store, state, key and meters (synchronous; before the loop runs).

        Raises:
            StoreError, KeyFileError, ConfigErrors: the agent cannot start.
        """
        cfg = self.cfg
        self.seed = keys.load_signing_key(cfg.gateway.key_path)
        self.public_key = keys.public_from_seed(self.seed)
        log.info("gateway public key %s", self.public_key.hex())  # for enrollment
        self.recipient = (keys.load_public_key(cfg.sealing.utility_key)
                          if cfg.sealing.seal_to_utility and cfg.sealing.utility_key else None)
        self.meters = open_meters(cfg)  # refuse a bad meter before touching the disk
        self.store = BlockStore.open(cfg.gateway.ledger_dir, options=StoreOptions(
            segment_bytes=cfg.retention.segment_bytes))
        head = self.store.head
        if head is not None and head.header.gateway_key != self.public_key:
            raise KeyFileError(key_mismatch(cfg, self.public_key, head.header.gateway_key))
        self.state = StateDB(cfg.gateway.state_path)
        try:
            self.reserve = DiskReserve(cfg.gateway.ledger_dir, cfg.retention.reserve_bytes,
                                       self.store)
        except OSError as exc:
            raise StoreError(f"{cfg.gateway.ledger_dir}: cannot examine the filesystem for "
                             f"the disk reserve: {exc.strerror}") from None
        if self.reserve.establish():
            log.info("disk reserve of %d bytes held (%s)", self.reserve.size,
                     self.reserve.path)
        cursors = ReserveBackedCursors(self.state, self.reserve)
        for r in cfg.replicas:
            self.forwarders.append(Forwarder(
                r.name, r.url, self.store, cursors, gateway_key=self.public_key,
                options=ForwarderOptions(
                    ca_file=r.ca_cert, pin_sha256=r.pinned_key_sha256, required=r.required,
                    timeout_s=r.timeout_s, batch_max_bytes=r.batch_bytes,
                    backoff_max_s=r.backoff_max_s)))
        required = [r.name for r in cfg.replicas if r.required]
        if not required:
            log.warning("no required replica configured: blocks are pruned by age and disk "
                        "budget only")
        self.clock = ClockWatch(cfg.gateway.clock_step_threshold_ms)
        self.sealer = Sealer(cfg.sealing, self.store, self.seed, recipient_key=self.recipient,
                             on_commit=self._committed, on_full=self._store_full)
        self.poller = Poller([
            PollTarget(meter, m.id, m.driver, meter_spec(m).bus, m.poll_interval_s,
                       m.timeout_s, m.backoff_max_s)
            for meter, m in zip(self.meters, cfg.meters, strict=True)
        ], self.sealer.add, self.clock)
        self.retention = Retention(cfg.retention, self.store, AckedCursors(self.forwarders),
                                   required,
                                   optional=[r.name for r in cfg.replicas if not r.required],
                                   disk_full=self._disk_full)
        log.info("store open at height %d (%s); %d meter(s), %d replica(s)",
                 self.store.height, cfg.gateway.ledger_dir, len(self.meters),
                 len(self.forwarders))

    def _store_full(self, exc: StoreFullError) -> bool:
        """The store refused a block for lack of space; True if room was made for blocks
        (only while stopping: otherwise the released reserve is kept for small state)."""
        released = self.reserve.disk_full("a block", exc)
        return released and self._stopping

    def _disk_full(self) -> bool:
        return self.reserve.released or self.sealer.store_full

    def _disk_check(self) -> None:
        """Re-establish the reserve when space returned; prune at once while full."""
        self.reserve.check()
        if self._disk_full():
            self.retention.check()

    def _committed(self, block: Block) -> None:
        log.debug("committed block %d with %d reading(s)", block.height,
                  block.header.reading_count)
        for fw in self.forwarders:
            fw.notify()

    # --- status --------------------------------------------------------------------

    def snapshot(self, *, running: bool = True) -> dict[str, Any]:
        """The JSON-ready status shared by status.json, metrics and STATUS=."""
        assert self.store is not None
        head = self.store.head
        meters = [st.to_json() for st in self.poller.stats.values()]
        replicas = [fw.status for fw in self.forwarders]
        ret = self.retention.measure()
        problems: list[str] = []
        critical = False
        if self.sealer.store_full:
            critical = True
            problems.append(f"store full: {self.sealer.pending} reading(s) held in memory "
                            f"({self.sealer.last_error})")
        elif self.reserve.released:
            critical = True
            problems.append(f"disk full: the disk reserve of {self.reserve.size} bytes is "
                            "released; blocks are written only while that much stays free")
        if self.sealer.dropped_readings:
            critical = True
            problems.append(f"{self.sealer.dropped_readings} pending reading(s) dropped while "
                            "the store was full")
        if ret.problem:
            critical = True
            problems.append(ret.problem)
        if not self._healthy:
            critical = True
            problems.append("main loop unhealthy (watchdog not fed)")
        for r in replicas:
            if r.get("discrepancy"):
                critical = True
                problems.append(f"replica {r['name']}: DISCREPANCY {r['discrepancy']}")
            elif r.get("last_error") and r.get("consecutive_failures"):
                problems.append(f"replica {r['name']}: {r['last_error']}")
            if r.get("cursor_error"):
                problems.append(f"replica {r['name']}: cursor {r['acked_height']} kept in "
                                f"memory, not saved: {r['cursor_error']}")
        for m in meters:
            if m["consecutive_failures"] >= METER_FAILING_AFTER:
                problems.append(f"meter {m['meter_id']}: {m['consecutive_failures']} failed "
                                f"reads in a row: {m['last_error']}")
        state = "critical" if critical else ("degraded" if problems else "ok")
        return {
            "version": STATUS_VERSION,
            "written_ms": int(time.time() * 1000),
            "pid": os.getpid(),
            "started_ms": self.started_ms,
            "running": running,
            "interval_s": self.cfg.metrics.interval_s,
            "metrics_url": (f"http://{(self.cfg.metrics.listen or '').rpartition(':')[0]}:"
                            f"{self.metrics_port}/metrics" if self.metrics_port else None),
            "gateway": {"name": self.cfg.gateway.name, "key": self.public_key.hex()},
            "health": {"state": state, "problems": problems},
            "meters": meters,
            "chain": {
                "height": self.store.height,
                "head_hash": head.hash.hex() if head else None,
                "head_time_ms": head.header.time_end_ms if head else None,
                "first_height": self.store.first_height,
            },
            "sealer": self.sealer.to_json(),
            "replicas": replicas,
            "disk": {
                "used_bytes": ret.used_bytes, "budget_bytes": self.cfg.retention.disk_budget_bytes,
                "free_bytes": ret.free_bytes, "pruned_bytes": ret.pruned_bytes,
                "over_budget": ret.over_budget, **self.reserve.to_json(),
            },
            "clock": {"steps": self.clock.steps, "last_step_s": self.clock.last_step_s},
        }

    @staticmethod
    def summary(snap: dict[str, Any]) -> str:
        """One line for systemd's STATUS=."""
        failing = sum(1 for m in snap["meters"] if m["consecutive_failures"] >= 1)
        reps = ", ".join(f"{r['name']} acked {r['acked_height']}" for r in snap["replicas"])
        return (f"{snap['health']['state']}: height {snap['chain']['height']}, "
                f"{len(snap['meters'])} meter(s) ({failing} failing), pending "
                f"{snap['sealer']['pending_readings']}"
                + (f"; {reps}" if reps else "")
                + f"; disk {snap['disk']['used_bytes']} B")

    def publish(self, *, running: bool = True) -> dict[str, Any]:
        """Write status.json and the metrics textfile (each on its own: one failing never
        stops the other) and update STATUS=."""
        snap = self.snapshot(running=running)
        path = self.cfg.status_path
        self._write_file("status", lambda: self.reserve.write_small(
            lambda: write_status(path, snap), path))
        if self.cfg.metrics.textfile:
            text = render(snap)
            textfile = self.cfg.metrics.textfile
            self._write_file("metrics textfile", lambda: self.reserve.write_small(
                lambda: write_textfile(textfile, text), textfile))
        if running:
            self.notifier.status(self.summary(snap))
        return snap

    def _write_file(self, what: str, write: Callable[[], None]) -> None:
        """Run one periodic write; log its first failure (and every 100th), and when it
        works again. Never raises: the next interval retries."""
        try:
            write()
        except (OSError, StoreError) as exc:
            n = self._write_errors.get(what, 0) + 1
            self._write_errors[what] = n
            log.log(logging.ERROR if n == 1 or n % 100 == 0 else logging.DEBUG,
                    "cannot write the %s (retried every %.1f s; %d attempt(s)): %s", what,
                    self.cfg.metrics.interval_s, n, exc)
            return
        if self._write_errors.pop(what, 0):
            log.warning("%s written again", what)

    # --- background loops ----------------------------------------------------------

    async def _every(self, interval_s: float, fn: Any) -> None:
        while not self.stop_event.is_set():
            fn()
            await stopped_within(self.stop_event, interval_s)

    def _check_health(self) -> None:
        now = time.monotonic()
        self._healthy = self.poller.alive() and now - self.sealer.heartbeat < HEALTH_STALL_S
        if self._healthy:
            self.notifier.watchdog()
        else:
            log.critical("main loop unhealthy: not feeding the watchdog")

    # --- running -------------------------------------------------------------------

    async def run(self) -> int:
        """Run until SIGTERM/SIGINT or :attr:`stop_event`; returns the exit code."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_signal, sig)
        metrics_server = None
        if self.cfg.metrics.listen:
            metrics_server = MetricsServer(self.cfg.metrics.listen, self.snapshot)
            self.metrics_port = await metrics_server.start()
            log.info("metrics on http://%s:%d/metrics", metrics_server.host, self.metrics_port)
        self.retention.check()
        main = {
            asyncio.create_task(self.poller.run(self.stop_event), name="poller"),
            asyncio.create_task(self.sealer.run(self.stop_event), name="sealer"),
        }
        fwd = {asyncio.create_task(fw.run(self.stop_event), name=f"forward-{fw.name}")
               for fw in self.forwarders}
        aux = {
            asyncio.create_task(self._every(self.cfg.retention.check_interval_s,
                                            self.retention.check), name="retention"),
            asyncio.create_task(self._every(self.cfg.metrics.interval_s, self.publish),
                                name="status"),
            asyncio.create_task(self._every(self.cfg.sealing.retry_interval_s,
                                            self._disk_check), name="disk"),
        }
        wd = self.notifier.watchdog_s
        aux.add(asyncio.create_task(self._every(min(wd / 2, 1.0) if wd else 1.0,
                                                self._check_health), name="health"))
        self.publish()
        self.notifier.ready(self.summary(self.snapshot()))
        log.info("agent running (height %d)", self.store.height if self.store else -1)
        stopper = asyncio.create_task(self.stop_event.wait())
        done, _ = await asyncio.wait({stopper, *main, *fwd, *aux},
                                     return_when=asyncio.FIRST_COMPLETED)
        code = 0
        for task in done:
            if task is not stopper and not task.cancelled() and task.exception() is not None:
                log.critical("task %s failed; stopping: %s", task.get_name(), task.exception(),
                             exc_info=task.exception())
                code = 1
        await self._shutdown(main, fwd, aux | {stopper}, metrics_server)
        return code

    def _on_signal(self, sig: signal.Signals) -> None:
        log.info("%s received: sealing pending readings and stopping", sig.name)
        self.notifier.stopping("stopping: sealing pending readings")
        self.stop_event.set()

    async def _shutdown(self, main: set[asyncio.Task[Any]], fwd: set[asyncio.Task[Any]],
                        aux: set[asyncio.Task[Any]], server: MetricsServer | None) -> None:
        self.stop_event.set()
        deadline = time.monotonic() + self.cfg.gateway.stop_timeout_s

        def left(share: float = 1.0) -> float:
            return max(0.05, (deadline - time.monotonic()) * share)

        await _settle(main, left(0.3))
        self._stopping = True
        self.reserve.stopping(self._stop_keep_free())
        full, pending = self.reserve.released, self.sealer.pending
        try:
            lost = self.sealer.flush()
        except StoreError as exc:
            log.critical("could not commit pending readings at shutdown: %s", exc)
        else:
            if full or self.reserve.released:
                log.warning("stopping on a full disk: committed %d of %d pending reading(s) "
                            "into the disk reserve", pending - lost, pending)
        for fw in self.forwarders:
            fw.notify()
        await _settle(fwd, left(0.5))
        await _settle(aux, left(0.2))
        closes = [asyncio.create_task(m.close()) for m in self.meters]
        await _settle(set(closes), left(0.5))
        if server is not None:
            await server.stop()
        self.publish(running=False)
        log.info("stopped at height %d", self.store.height if self.store else -1)

    def _stop_keep_free(self) -> int:
        """Free space the final cursors and status need (see STOP_KEEP_FREE)."""
        size = 0
        for p in (self.cfg.status_path, Path(self.cfg.gateway.state_path)):
            try:
                size += p.stat().st_size
            except OSError:
                size += 16 * 1024  # not written yet: room for a first one
        return STOP_KEEP_FREE + 2 * size

    def close(self) -> None:
        """Release store, state and the notification socket (idempotent)."""
        if self.store is not None:
            self.store.close()
        if self.state is not None:
            self.state.close()
        self.notifier.close()


async def _settle(tasks: set[asyncio.Task[Any]], timeout_s: float) -> None:
    """Wait for tasks up to ``timeout_s``, then cancel the rest (and log why)."""
    if not tasks:
        return
    _, pending = await asyncio.wait(tasks, timeout=timeout_s)
    for task in pending:
        log.warning("task %s did not stop within %.1f s; cancelled", task.get_name(), timeout_s)
        task.cancel()
    if pending:
        await asyncio.wait(pending, timeout=0.5)
    for task in tasks:
        if task.done() and not task.cancelled() and task.exception() is not None:
            log.error("task %s ended with: %r", task.get_name(), task.exception())


def run_agent(cfg: AgentConfig) -> int:
    """Open and run the agent until stopped; returns the process exit code.

    Raises:
        ConfigErrors, StoreError, KeyFileError: it cannot start.
    """
    agent = Agent(cfg)

    async def main() -> int:
        agent.open()
        return await agent.run()

    try:
        return asyncio.run(main())
    finally:
        agent.close()
