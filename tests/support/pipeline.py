"""End-to-end pieces: simulated Modbus meters in a background loop, and `meterchain run`
as a child process, for the forwarding end-to-end and power-loss tests.

    meters = SimMeters.tcp([("eastron-sdm630", 1), ("eastron-sdm120", 2)])
    gw = AgentProcess(tmp_path, meters.config_tables(poll_interval_s=0.2), replicas=[url])
    gw.start(); ...; gw.kill()  # SIGKILL, or gw.terminate() for SIGTERM
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import keyfiles as keys
from drivers import profile
from drivers.sim.meter import MeterServer, SimUnit
from drivers.sim.model import MeterModel
from ledger import Block, ChainVerifier, Reading, block_readings
from tests.support.agent import LoopThread

ROOT = Path(__file__).resolve().parents[2]


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object file (a status file), or ``{}`` while it is missing or half-written."""
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, json.JSONDecodeError):
        return {}


def gateway_table(key_path: Path, data_dir: Path, *, stop_timeout_s: float | None = 4.0) -> str:
    """An agent config's ``[gateway]`` table, its ledger and state under ``data_dir``."""
    stop = "" if stop_timeout_s is None else f"stop_timeout_s = {stop_timeout_s}\n"
    return f"""
[gateway]
key_path = "{key_path}"
ledger_dir = "{data_dir / 'ledger'}"
state_path = "{data_dir / 'state.json'}"
{stop}"""


def installed_layout_head(gw: AgentProcess, var: Path, meters: SimMeters, *,
                          stop_timeout_s: float | None = 4.0,
                          max_readings: int | None = 50) -> str:
    """The ``[gateway]``, meters and ``[sealing]`` part of an agent config in the installed
    layout: ledger and state (so status.json) in ``var``, polled fast for the tests."""
    cap = "" if max_readings is None else f"max_readings = {max_readings}\n"
    return gateway_table(gw.dir / keys.GATEWAY_KEY, var, stop_timeout_s=stop_timeout_s) + (
        f"{meters.config_tables(poll_interval_s=0.2, timeout_s=0.15)}\n[sealing]\n"
        f"interval_s = 0.3\n{cap}retry_interval_s = 0.2\n")


def verified_readings(records: list[bytes], public_key: bytes) -> list[Reading]:
    """The readings of a chain of encoded blocks, verified from its first block on.

    Raises:
        ChainError: a block does not verify against the chain before it.
    """
    verifier = ChainVerifier(None, public_key)
    readings: list[Reading] = []
    for rec in records:
        block = Block.decode(rec)
        verifier.add(block)
        readings.extend(r for r, _ in block_readings(block))
    return readings


class SimMeters:
    """Simulated Modbus TCP meters (one server, several unit ids) on a background loop."""

    def __init__(self, units: list[tuple[str, int]], *, fail_with: dict[int, int] | None = None
                 ) -> None:
        self.loop = LoopThread()
        self.profiles = dict((u, p) for p, u in units)
        self.units = [SimUnit(u, profile.load(p), MeterModel(speed=60.0),
                              fail_with=(fail_with or {}).get(u)) for p, u in units]
        self.server = MeterServer(self.units)
        self.loop.call(self.server.start)

    @property
    def port(self) -> int:
        return self.server.tcp_port

    def config_tables(self, *, poll_interval_s: float = 0.2, timeout_s: float = 0.15) -> str:
        out = []
        for u in self.units:
            out.append(f"""
[[meters]]
id = "sim-{u.unit}"
driver = "modbus-tcp"
host = "127.0.0.1"
tcp_port = {self.port}
unit = {u.unit}
profile = "{self.profiles[u.unit]}"
poll_interval_s = {poll_interval_s}
timeout_s = {timeout_s}
backoff_max_s = 1.0
""")
        return "".join(out)

    def close(self) -> None:
        self.loop.call(self.server.stop)
        self.loop.close()


class AgentProcess:
    """``meterchain run`` in a child process with its config, key and ledger under ``dir``."""

    def __init__(self, directory: Path, meters_toml: str, *, replicas: list[str],
                 sealing: str = "interval_s = 0.3\nmax_readings = 20",
                 replica_extra: str = "timeout_s = 2.0\nbackoff_max_s = 0.5") -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        if not (self.dir / keys.GATEWAY_KEY).exists():
            self.public_key = keys.generate_gateway_key(self.dir)
        else:
            self.public_key = keys.load_public_key(str(self.dir / keys.GATEWAY_PUB))
        reps = "".join(f'\n[[replicas]]\nname = "r{i}"\nurl = "{u}"\n{replica_extra}\n'
                       for i, u in enumerate(replicas))
        self.config = self.dir / "agent.toml"
        gateway = gateway_table(self.dir / keys.GATEWAY_KEY, self.dir)
        self.config.write_text(gateway + f"""{meters_toml}
[sealing]
{sealing}
{reps}
[logging]
level = "info"
""")
        self.log = self.dir / "agent.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def ledger(self) -> Path:
        return self.dir / "ledger"

    @property
    def state_path(self) -> Path:
        return self.dir / "state.json"

    def start(self) -> AgentProcess:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "meterchain", "run", "--config", str(self.config)],
                stdout=log, stderr=log, cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)))
        return self

    def kill(self) -> None:
        """SIGKILL: a power loss as far as the process can tell."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
            self.proc = None

    def terminate(self, timeout: float = 10.0) -> int:
        """SIGTERM and wait; returns the exit code."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout)
        self.proc = None
        return code
