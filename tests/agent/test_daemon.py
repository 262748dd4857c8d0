"""The daemon as a real process: Modbus TCP simulator, sd_notify on a real datagram socket,
metrics over HTTP, status file and CLI, SIGTERM sealing what is pending within 5 s."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import keyfiles as keys
from agent.storage.store import BlockStore, StoreOptions
from drivers.sim.meter import MeterServer
from ledger import block_readings, decode_blocks, verify_chain
from tests.support.agent import agent_config

ROOT = Path(__file__).resolve().parents[2]
METRIC_LINE = re.compile(
    r'^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)'
    r'(?P<labels>\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*",?)*\})? '
    r'(?P<value>-?[0-9.e+]+|NaN)$')


def parse_metrics(text: str) -> dict[str, list[tuple[str, float]]]:
    out: dict[str, list[tuple[str, float]]] = {}
    for line in text.splitlines():
        if line.startswith("#"):
            assert re.match(r"^# (HELP|TYPE) [a-z_]+ .+$", line), line
            continue
        m = METRIC_LINE.match(line)
        assert m, f"not a Prometheus text line: {line!r}"
        out.setdefault(m["name"], []).append((m["labels"] or "", float(m["value"])))
    return out


def recv_all(sock: socket.socket) -> list[str]:
    msgs = []
    while True:
        try:
            msgs.append(sock.recv(4096).decode())
        except BlockingIOError:
            return msgs


def test_agent_process_end_to_end_with_notify_metrics_status_and_sigterm(
        tmp_path: Path, sim_meter: MeterServer) -> None:
    keys.generate_gateway_key(tmp_path)
    meters = f"""
[[meters]]
id = "main"
driver = "modbus-tcp"
host = "127.0.0.1"
tcp_port = {sim_meter.tcp_port}
unit = 1
profile = "eastron-sdm630"
poll_interval_s = 0.5
timeout_s = 0.4

[[meters]]
id = "absent"
driver = "modbus-tcp"
host = "127.0.0.1"
tcp_port = {sim_meter.tcp_port}
unit = 9
profile = "eastron-sdm630"
poll_interval_s = 0.5
timeout_s = 0.3
"""
    text = agent_config(tmp_path, meters, sealing="",
                        extra='').replace("interval_s = 1.0\nmax_readings = 50",
                                          "interval_s = 3600\nmax_readings = 60000")
    text = text.replace("[metrics]\n", '[metrics]\nlisten = "127.0.0.1:0"\n')
    cfg = tmp_path / "agent.toml"
    cfg.write_text(text)
    sock_path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(sock_path))
    sock.setblocking(False)
    env = {**os.environ, "NOTIFY_SOCKET": str(sock_path), "WATCHDOG_USEC": "1000000"}
    proc = subprocess.Popen([sys.executable, "-m", "meterchain", "run", "--config", str(cfg)],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        msgs: list[str] = []
        deadline = time.monotonic() + 15
        while not any("READY=1" in m for m in msgs) and time.monotonic() < deadline:
            time.sleep(0.05)
            msgs += recv_all(sock)
            assert proc.poll() is None, proc.communicate()
        assert any("READY=1" in m for m in msgs), msgs
        deadline = time.monotonic() + 30  # ~2 s at WATCHDOG_USEC=1 s; 30 s: only a hang
        while sum(m == "WATCHDOG=1" for m in msgs) < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
            msgs += recv_all(sock)
            assert proc.poll() is None, proc.communicate()
        assert sum(m == "WATCHDOG=1" for m in msgs) >= 4  # it keeps feeding the watchdog
        assert any(m.startswith("STATUS=") and "height -1" in m for m in msgs), msgs

        status_path = tmp_path / "status.json"
        snap = json.loads(status_path.read_text())
        assert snap["running"] is True and snap["chain"]["height"] == -1
        url = snap["metrics_url"]
        host, port = url.split("//")[1].split("/")[0].split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=5)

        def scrape() -> dict[str, list[tuple[str, float]]]:
            conn.request("GET", "/metrics")
            resp = conn.getresponse()
            assert resp.status == 200
            assert resp.getheader("Content-Type", "").startswith("text/plain; version=0.0.4")
            return parse_metrics(resp.read().decode())

        def polled(m: dict[str, list[tuple[str, float]]]) -> bool:
            return (dict(m["meterchain_meter_reads_total"])[
                        '{meter="main",driver="modbus-tcp"}'] >= 5
                    and dict(m["meterchain_meter_errors_total"])[
                        '{meter="absent",driver="modbus-tcp"}'] >= 2)

        metrics = scrape()
        while not polled(metrics) and time.monotonic() < deadline:  # polls every 0.5 s
            time.sleep(0.1)
            metrics = scrape()
        reads = dict(metrics["meterchain_meter_reads_total"])
        assert reads['{meter="main",driver="modbus-tcp"}'] >= 5  # sealed on SIGTERM below
        assert reads['{meter="absent",driver="modbus-tcp"}'] == 0
        errors = dict(metrics["meterchain_meter_errors_total"])
        assert errors['{meter="absent",driver="modbus-tcp"}'] >= 2
        assert metrics["meterchain_chain_height"] == [("", -1.0)]
        assert metrics["meterchain_pending_readings"][0][1] > 0
        assert metrics["meterchain_blocks_in_flight"] == [("", 0.0)]  # none written yet
        conn.request("GET", "/nope")
        assert conn.getresponse().status == 404

        live = subprocess.run([sys.executable, "-m", "meterchain", "status", "--config",
                               str(cfg)], cwd=ROOT, capture_output=True, text=True)
        # running, but the absent meter fails: degraded, exit 1
        assert live.returncode == 1, live.stderr
        assert "running (pid" in live.stdout and "absent" in live.stdout
        assert "health   DEGRADED" in live.stdout
        assert re.search(r"^    1-0:1\.8\.0 +energy_import +\d", live.stdout, re.M), live.stdout

        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    # exited by itself on SIGTERM with 0 (communicate's timeout is only a hang guard: how
    # fast depends on the machine); that it sealed what was pending is checked below
    assert proc.returncode == 0, err
    msgs += recv_all(sock)
    assert any(m.startswith("STOPPING=1") for m in msgs)
    # journald priority prefixes: info on stdout, warnings on stderr
    assert re.search(r"^<6>meterchain\.agent: agent running", out, re.M), out
    assert re.search(r"^<4>meterchain\.poller: meter absent read failed", err, re.M), err
    assert all(line.startswith("<") for line in err.splitlines() if line)

    final = json.loads((tmp_path / "status.json").read_text())
    assert final["running"] is False
    store = BlockStore.open(tmp_path / "ledger", options=StoreOptions(read_only=True))
    blocks = list(decode_blocks(store.iter_records(0)))
    store.close()
    verify_chain(blocks)
    values = [r for b in blocks for r, _ in block_readings(b)]
    # nothing was sealed by policy (1 h interval): all of it was sealed on SIGTERM
    assert len(values) == final["sealer"]["readings_committed"] > 0
    assert final["sealer"]["pending_readings"] == 0
    assert {r.meter_id for r in values} == {"main"}
    energy = [r.value for r in values if r.obis == "1-0:1.8.0"]
    assert energy == sorted(energy) and len(energy) >= 5  # the reads seen above

    stopped = subprocess.run([sys.executable, "-m", "meterchain", "status", "--config",
                              str(cfg)], cwd=ROOT, capture_output=True, text=True)
    assert stopped.returncode == 1
    assert "STOPPED (final status written" in stopped.stdout
    assert f"height {blocks[-1].height}" in stopped.stdout


def test_bad_config_never_starts(tmp_path: Path) -> None:
    cfg = tmp_path / "agent.toml"
    cfg.write_text(agent_config(tmp_path, '[[meters]]\nid = "a"\ndriver = "modbus-tcp"\n'
                                          'host = "127.0.0.1"\nunit = 300\n'
                                          'profile = "no-such-profile"\n'))
    proc = subprocess.run([sys.executable, "-m", "meterchain", "run", "--config", str(cfg)],
                          cwd=ROOT, capture_output=True, text=True, timeout=20)
    assert proc.returncode == 2
    assert "meters[0].unit: must be 1..247, got 300" in proc.stderr
    assert not (tmp_path / "ledger").exists()
