"""The full-pipeline demo (``meterchain demo``): simulated meters, the agent, a local replica.

On one machine, with nothing to configure:

- simulated meters speaking their real protocols over real transports: an Eastron SDM630
  on Modbus TCP, an SDM120 on Modbus RTU over a pseudo-terminal pair, a SunSpec
  inverter (rooftop generation) on Modbus TCP, and a DSMR 5 P1 meter pushing telegrams
  on a pseudo-terminal;
- the gateway agent (the same :class:`agent.service.daemon.Agent` as ``meterchain run``) polling
  them, sealing blocks every second and forwarding them;
- a replica (the ``replica`` app, SQLite) on 127.0.0.1, in a background thread.

It prints readings, blocks sealed and blocks forwarded as they happen, then stops by
itself after ``seconds`` (or on Ctrl-C), makes sure the replica holds every block,
fetches the replica's copy over HTTP, verifies it and compares it with the agent's
block by block. With ``community``, it then settles a small energy community over one
past day on the same replica (:mod:`meterchain.demo_community`). Everything it
started is stopped before it returns. Needs the
``[replica]`` extra and no system package (the RS-485 line is a pseudo-terminal pair
made in Python, :class:`drivers.sim.pty.PtyPair`).
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import logging
import os
import shutil
import socket
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keyfiles as keys
from agent.storage.store import BlockStore
from ledger import Block, ChainVerifier
from ledger.errors import ChainError, ForwardingError
from meterchain.demo_community import CommunityResult, settle_community_day

DEFAULT_SECONDS = 12.0


@dataclass(frozen=True)
class PipelineResult:
    """What the demo did and found."""

    ledger_dir: Path
    height: int
    readings: int
    replica_height: int
    identical: bool
    community: CommunityResult | None = None


def run_pipeline_demo(ledger_dir: str | os.PathLike[str] | None = None, *,
                      seconds: float = DEFAULT_SECONDS, community: bool = False,
                      out: Callable[[str], None] = print) -> PipelineResult:
    """Run the whole pipeline for ``seconds``; keep the work directory only if given.
    With ``community``, end with the community's day settled and verified (in
    ``DIR/demo/community``).

    Raises:
        ChainError: the replica's copy does not verify or differs (never expected).
        ForwardingError: the replica did not receive every block in time.
        SettlementError: the community's settlement failed or did not verify.
    """
    # The ledger is DIR itself (so `meterchain verify DIR` works), its key in DIR/keys as
    # for --ledger-only, and the demo's other files (state, replica, config) in DIR/demo.
    kept = ledger_dir is not None
    top = Path(ledger_dir) if kept else Path(tempfile.mkdtemp(prefix="mc-demo-"))  # type: ignore[arg-type]
    ledger = top if kept else top / "ledger"
    work = top / "demo"
    BlockStore.open(ledger).close()  # a ledger first: the store adopts no non-empty directory
    work.mkdir(parents=True, exist_ok=True)
    try:
        return asyncio.run(_pipeline(work, ledger, top / "keys", seconds,
                                     community=community, kept=kept, out=out))
    finally:
        if not kept:
            shutil.rmtree(top, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _ReplicaThread:
    """The replica app under uvicorn in a background thread of this process."""

    def __init__(self, directory: Path, gateway_key: bytes) -> None:
        import uvicorn

        from replica.app import create_app
        from replica.config import Limits, ReplicaConfig
        from replica.storage import open_storage

        url = f"sqlite:///{directory / 'replica.db'}"
        self.storage_url = url
        from replica.auth import READ_CHAIN
        from replica.tokens import create_token

        storage = open_storage(url)
        try:
            if storage.gateway(gateway_key) is None:
                storage.enroll(gateway_key, "demo-gateway", "demo", int(time.time() * 1000))
            self.token, _ = create_token(storage, "demo", (READ_CHAIN,),
                                         int(time.time() * 1000))
        finally:
            storage.close()
        self.port = _free_port()
        cfg = ReplicaConfig(host="127.0.0.1", port=self.port, storage_url=url,
                            limits=Limits(rate_per_gateway=0.0))
        self.server = uvicorn.Server(uvicorn.Config(create_app(cfg), host="127.0.0.1",
                                                    port=self.port, log_level="warning",
                                                    access_log=False))
        self.thread = threading.Thread(target=self.server.run, name="demo-replica",
                                       daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise ForwardingError("the demo replica did not start", replica="demo")
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)

    def fetch_all(self, key: bytes) -> list[bytes]:
        out: list[bytes] = []
        while True:
            q = f"{self.url}/v1/gateways/{key.hex()}/blocks?from={len(out)}&limit=500"
            req = urllib.request.Request(q, headers={"Authorization": f"Bearer {self.token}"})
            with urllib.request.urlopen(req, timeout=10) as r:
                batch = json.loads(r.read())["blocks"]
            if not batch:
                return out
            out.extend(base64.b64decode(b) for b in batch)


def _config_text(d: Path, ledger: Path, keydir: Path, tcp_port: int, sunspec_port: int,
                 rtu_port: str, p1_port: str, replica_url: str) -> str:
    return f"""
[gateway]
name = "demo gateway"
key_path = "{keydir / keys.GATEWAY_KEY}"
ledger_dir = "{ledger}"
state_path = "{d / 'state.json'}"

[[meters]]
id = "house-main"
driver = "modbus-tcp"
host = "127.0.0.1"
tcp_port = {tcp_port}
unit = 1
profile = "eastron-sdm630"
poll_interval_s = 1.0
timeout_s = 0.5

[[meters]]
id = "heat-pump"
driver = "modbus-rtu"
port = "{rtu_port}"
baudrate = 9600
unit = 1
profile = "eastron-sdm120"
poll_interval_s = 1.0
timeout_s = 0.5

[[meters]]
id = "rooftop-pv"
driver = "sunspec-tcp"
host = "127.0.0.1"
tcp_port = {sunspec_port}
unit = 1
poll_interval_s = 2.0
timeout_s = 0.5

[[meters]]
id = "grid-p1"
driver = "dsmr-p1"
port = "{p1_port}"
poll_interval_s = 2.0
timeout_s = 1.5                # a DSMR 5 meter pushes a telegram every second

[sealing]
interval_s = 1.0
max_readings = 500

[[replicas]]
name = "local"
url = "{replica_url}"
timeout_s = 5.0
backoff_max_s = 1.0

[logging]
level = "warning"
"""


async def _pipeline(d: Path, ledger: Path, keydir: Path, seconds: float, *, community: bool,
                    kept: bool, out: Callable[[str], None]) -> PipelineResult:
    from agent.service.config import load_config
    from agent.service.daemon import Agent
    from drivers import profile
    from drivers.sim.meter import MeterServer, SimUnit
    from drivers.sim.model import MeterModel
    from drivers.sim.p1 import P1SimConfig, P1Simulator, P1State
    from drivers.sim.pty import PtyPair
    from drivers.sim.sunspec import sunspec_unit

    keydir.mkdir(exist_ok=True)
    if not (keydir / keys.GATEWAY_KEY).exists():
        keys.generate_gateway_key(keydir)
    public = keys.load_public_key(str(keydir / keys.GATEWAY_PUB))
    out(f"gateway key {public.hex()[:16]}...  ledger {ledger}")

    replica = _ReplicaThread(d, public)
    tcp = MeterServer([SimUnit(1, profile.load("eastron-sdm630"), MeterModel(speed=60.0))])
    pv = MeterServer([sunspec_unit(1)])
    pty = PtyPair(d, "demo-rs485")
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0)
    p1 = P1Simulator(P1SimConfig(interval_s=1.0, state=P1State(
        utc=now, gas_utc=now.replace(second=0) - dt.timedelta(minutes=5))))
    logging.getLogger("pymodbus").setLevel(logging.WARNING)
    agent: Agent | None = None
    rtu: MeterServer | None = None
    try:
        replica.start()
        out(f"replica listening on {replica.url}")
        await tcp.start()
        await pv.start()
        meter_end, agent_end = pty.__enter__()
        rtu = MeterServer([SimUnit(1, profile.load("eastron-sdm120"), MeterModel(speed=60.0))],
                          transport="rtu", port=meter_end)
        await rtu.start()
        p1.start()
        out(f"meters: SDM630 on Modbus TCP :{tcp.tcp_port}, SDM120 on Modbus RTU {agent_end}, "
            f"SunSpec inverter on :{pv.tcp_port}, DSMR P1 on {p1.port}")
        cfg_path = d / "agent.toml"
        cfg_path.write_text(_config_text(d, ledger, keydir, tcp.tcp_port, pv.tcp_port,
                                         agent_end, p1.port, replica.url))
        agent = Agent(load_config(cfg_path))
        agent.open()
        assert agent.store is not None
        start_height = agent.store.height
        task = asyncio.create_task(agent.run())
        t0 = time.monotonic()
        interrupted = False
        try:
            while time.monotonic() - t0 < seconds and not task.done():
                await asyncio.sleep(1.0)
                _progress(agent.snapshot(), time.monotonic() - t0, out)
        except asyncio.CancelledError:
            out("interrupted: stopping")
            interrupted = True
        # the agent stops early on Ctrl-C (its own signal handler) or a failure
        interrupted = interrupted or time.monotonic() - t0 < seconds
        agent.stop_event.set()
        await task
        height = agent.store.height
        fw = agent.forwarders[0]
        if fw.acked_height < height:  # blocks sealed at shutdown: forward them now
            await _drain(agent, public)
        replica_records = await asyncio.to_thread(replica.fetch_all, public)
        identical = _compare(agent, replica_records, out)
        readings = sum(agent.store.get(h).header.reading_count
                       for h in range(max(0, start_height + 1), height + 1))
        out(f"done: {height - start_height} block(s) with {readings} reading(s) sealed this run; "
            f"replica holds {len(replica_records)} block(s), verified and identical to the "
            "agent's chain")
        settled = None
        if community and interrupted:
            out("stopped early: the community's settlement is skipped")
        elif community:
            settled = await settle_community_day(d / "community", replica.url,
                                                 replica.storage_url, kept=kept, out=out)
        return PipelineResult(ledger, height, readings, len(replica_records) - 1, identical,
                              settled)
    finally:
        if agent is not None:
            agent.close()
        p1.stop()
        if rtu is not None:
            await rtu.stop()
        pty.__exit__(None, None, None)
        await pv.stop()
        await tcp.stop()
        replica.stop()


def _progress(snap: dict[str, Any], elapsed: float, out: Callable[[str], None]) -> None:
    parts = []
    for m in snap["meters"]:
        vals = m.get("last_values") or {}
        # total import, else the tariff registers (P1), else generation (PV)
        energy = next((vals[k] for k in ("1-0:1.8.0", "1-0:1.8.1", "1-0:2.8.0") if k in vals),
                      "-")
        err = f" errors={m['errors']}" if m["errors"] else ""
        parts.append(f"{m['meter_id']}: {m['reads']} reads {energy}{err}")
    rep = snap["replicas"][0]
    out(f"[{elapsed:4.1f}s] {'; '.join(parts)}")
    out(f"        sealed height {snap['chain']['height']}, "
        f"{snap['sealer']['readings_committed']} readings committed; "
        f"replica acknowledged height {rep['acked_height']} ({rep['state']})")


async def _drain(agent: Any, public: bytes) -> None:
    from agent.pipeline.forwarder import Forwarder, ForwarderOptions

    fw0 = agent.forwarders[0]
    fw = Forwarder(fw0.name, fw0.url, agent.store, agent.state, gateway_key=public,
                   options=ForwarderOptions(timeout_s=5.0, idle_poll_s=0.05,
                                            backoff_initial_s=0.1, backoff_max_s=0.5))
    stop = asyncio.Event()
    task = asyncio.create_task(fw.run(stop))
    deadline = time.monotonic() + 15
    while fw.acked_height < agent.store.height and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    stop.set()
    await task
    if fw.acked_height < agent.store.height:
        raise ForwardingError(f"replica acknowledged only up to {fw.acked_height} of "
                              f"{agent.store.height}: {fw.status['last_error']}",
                              replica=fw.name)


def _compare(agent: Any, records: list[bytes], out: Callable[[str], None]) -> bool:
    """Verify the replica's copy as a chain and compare it with the local one."""
    verifier = ChainVerifier(None, agent.public_key)
    for rec in records:
        verifier.add(Block.decode(rec))
    local_height = agent.store.height
    if len(records) != local_height + 1:
        raise ChainError(f"replica holds {len(records)} blocks, the agent {local_height + 1}")
    for h, rec in enumerate(records):
        if rec != agent.store.get_record(h):
            raise ChainError("replica's block differs from the agent's", height=h)
    head = verifier.head
    out(f"verified the replica's copy: {len(records)} block(s), head {head.hash.hex()[:16]}... "
        "equals the agent's head" if head else "replica holds no block")
    return True
