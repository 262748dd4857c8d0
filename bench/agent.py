"""Gateway agent benchmarks: peak RSS while polling, start-up time with a large ledger.

- ``rss``: the agent (a real ``meterchain run`` process) polls 8 simulated Modbus TCP
  meters (Eastron SDM630 profile, real pymodbus server) every second for ``--duration``
  seconds, sealing a block every 10 s. VmRSS is sampled; the figures are the peak
  (VmHWM), the RSS after warm-up and at the end (flat = no growth with the ledger).
  Target: peak <= 40 MB.
- ``startup``: a ledger holding ``--readings`` readings (blocks of 1000) is built, then
  the time from starting ``meterchain run`` to its ``READY=1`` (store recovered, meters
  opened) is measured over a real notification socket, plus ``BlockStore.open`` alone.
  Target: <= 1 s.

Prints a table; with ``--json`` the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import keyfiles as keys  # noqa: E402
from agent.storage.store import BlockStore, StoreOptions  # noqa: E402
from drivers import profile  # noqa: E402
from drivers.sim.meter import MeterServer, SimUnit  # noqa: E402
from drivers.sim.model import MeterModel  # noqa: E402
from ledger import Reading, seal_block  # noqa: E402


def _rss_kb(pid: int) -> tuple[int, int]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        k, _, v = line.partition(":")
        fields[k] = v.strip()
    return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])


class SimThread:
    def __init__(self, units: int) -> None:
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        prof = profile.load("eastron-sdm630")
        self.server = MeterServer([SimUnit(u, prof, MeterModel()) for u in range(1, units + 1)])
        asyncio.run_coroutine_threadsafe(self.server.start(), self.loop).result(10)

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.server.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)


def _config(tmp: Path, port: int, meters: int) -> Path:
    tables = "".join(f"""
[[meters]]
id = "m{u}"
driver = "modbus-tcp"
host = "127.0.0.1"
tcp_port = {port}
unit = {u}
profile = "eastron-sdm630"
poll_interval_s = 1
timeout_s = 0.5
""" for u in range(1, meters + 1))
    cfg = tmp / "agent.toml"
    cfg.write_text(f"""
[gateway]
key_path = "{tmp}/gateway.key"
ledger_dir = "{tmp}/ledger"
state_path = "{tmp}/state.json"
{tables}
[sealing]
interval_s = 10
[logging]
level = "warning"
""")
    return cfg


def _start(cfg: Path, notify: Path | None = None) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    if notify is not None:
        env["NOTIFY_SOCKET"] = str(notify)
    return subprocess.Popen([sys.executable, "-m", "meterchain", "run", "--config", str(cfg)],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def bench_rss(duration: float) -> dict[str, float]:
    sim = SimThread(8)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        keys.generate_gateway_key(tmp)
        proc = _start(_config(tmp, sim.server.tcp_port, 8))
        samples: list[int] = []
        hwm = 0
        try:
            t0 = time.monotonic()
            while time.monotonic() - t0 < duration:
                time.sleep(min(2.0, duration / 10))
                if proc.poll() is not None:
                    raise SystemExit(f"agent exited with {proc.returncode}")
                rss, hwm = _rss_kb(proc.pid)
                samples.append(rss)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(10)
            sim.close()
        # the status the agent writes as it exits (while running it is rewritten only
        # every metrics interval, so a read mid-run undercounts)
        status = json.loads((tmp / "status.json").read_text())
    warm = samples[min(len(samples) - 1, max(1, len(samples) // 5))]
    return {
        "rss_peak_mb": hwm / 1024,
        "rss_after_warmup_mb": warm / 1024,
        "rss_end_mb": samples[-1] / 1024,
        "rss_growth_mb": (samples[-1] - warm) / 1024,
        "reads": sum(m["reads"] for m in status["meters"]),
        "read_errors": sum(m["errors"] for m in status["meters"]),
        "chain_height": status["chain"]["height"],
        "duration_s": duration,
    }


def _build_ledger(tmp: Path, readings: int) -> int:
    seed = keys.load_signing_key(tmp / "gateway.key")
    store = BlockStore.open(tmp / "ledger", options=StoreOptions(fsync=False))
    prev = None
    per_block = 1000
    salts = [os.urandom(16) for _ in range(per_block)]
    t = 1_700_000_000_000
    for b in range(readings // per_block):
        rs = [Reading.make(f"m{i % 8}", "1-0:1.8.0", b * per_block + i, 0, "Wh", t)
              for i in range(per_block)]
        block = seal_block(seed, prev, rs, salts, t, t + 1000)
        store.append(block)
        prev = block.header
        t += 1000
    height = store.height
    store.close()
    return height


def bench_startup(readings: int) -> dict[str, float]:
    sim = SimThread(1)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        keys.generate_gateway_key(tmp)
        t0 = time.perf_counter()
        height = _build_ledger(tmp, readings)
        build_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        BlockStore.open(tmp / "ledger").close()
        open_s = time.perf_counter() - t0
        sock_path = tmp / "n.sock"
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(str(sock_path))
        sock.settimeout(30)
        cfg = _config(tmp, sim.server.tcp_port, 1)
        t0 = time.perf_counter()
        proc = _start(cfg, sock_path)
        try:
            while b"READY=1" not in sock.recv(4096):
                pass
            ready_s = time.perf_counter() - t0
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(10)
            sim.close()
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import agent.service.daemon, drivers.modbus"],
                       cwd=ROOT, check=True)
        import_s = time.perf_counter() - t0
    return {"stored_readings": readings, "stored_blocks": height + 1,
            "build_s": build_s, "store_open_s": open_s, "ready_s": ready_s,
            "python_import_s": import_s}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=180.0,
                    help="seconds of polling for the RSS run (default 180)")
    ap.add_argument("--readings", type=int, default=1_000_000,
                    help="readings stored for the start-up run (default 1,000,000)")
    ap.add_argument("--only", choices=("rss", "startup"))
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    result: dict[str, object] = {}
    if args.only in (None, "startup"):
        result["startup"] = bench_startup(args.readings)
    if args.only in (None, "rss"):
        result["rss"] = bench_rss(args.duration)
    rows = []
    if "rss" in result:
        r = result["rss"]
        assert isinstance(r, dict)
        rows += [
            (f"peak RSS, 8 meters @1 s for {r['duration_s']:.0f} s", f"{r['rss_peak_mb']:.1f} MB",
             "<= 40 MB"),
            ("RSS after warm-up / at end", f"{r['rss_after_warmup_mb']:.1f} / "
             f"{r['rss_end_mb']:.1f} MB", "flat"),
            ("reads / errors / blocks", f"{r['reads']} / {r['read_errors']} / "
             f"{r['chain_height'] + 1}", ""),
        ]
    if "startup" in result:
        s = result["startup"]
        assert isinstance(s, dict)
        rows += [
            (f"start to READY=1, {s['stored_readings']:,} readings stored",
             f"{s['ready_s']:.3f} s", "<= 1 s"),
            ("  of which BlockStore.open", f"{s['store_open_s']:.4f} s", ""),
            ("  python start + imports alone", f"{s['python_import_s']:.3f} s", ""),
        ]
    width = max(len(r[0]) for r in rows)
    print(f"{'measure':<{width}}  {'value':>16}  target")
    for name, value, target in rows:
        print(f"{name:<{width}}  {value:>16}  {target}")
    if args.json:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
