"""`config check` refuses what `run` refuses at start, with the same message.

A table of bad configs, each run through both commands: both exit 2 and list the same
problems under the same key paths. (`run` is a real process, refused before it polls.)
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

import keyfiles
from agent.service.status import STATUS_VERSION
from agent.storage.store import BlockStore, StoreOptions
from meterchain.cli import main
from tests.support.store import make_blocks, write_key_file

ROOT = Path(__file__).resolve().parents[2]


def _toml(tmp: Path, *, meter: str = 'unit = 1\nprofile = "eastron-sdm630"',
          sealing: str = "", metrics: str = "", key: Path | None = None,
          ledger: Path | None = None, state: Path | None = None, replicas: str = "") -> Path:
    if key is None:
        key = tmp / "keys" / keyfiles.GATEWAY_KEY
        if not key.exists():
            keyfiles.generate_gateway_key(key.parent)
    text = f"""
[gateway]
key_path = "{key}"
ledger_dir = "{ledger or tmp / 'ledger'}"
state_path = "{state or tmp / 'state.json'}"

[[meters]]
id = "m1"
driver = "modbus-tcp"
host = "127.0.0.1"
tcp_port = 1
{meter}

[sealing]
{sealing}

[metrics]
{metrics}

{replicas}
"""
    path = tmp / "agent.toml"
    path.write_text(text)
    return path


def _bad_key_mode(tmp: Path) -> dict[str, object]:
    keyfiles.generate_gateway_key(tmp / "keys")
    os.chmod(tmp / "keys" / keyfiles.GATEWAY_KEY, 0o644)
    return {}


def _garbage_utility_key(tmp: Path) -> dict[str, object]:
    (tmp / "utility.pub").write_text("not a key\n")
    return {"sealing": f'seal_to_utility = true\nutility_key = "{tmp / "utility.pub"}"'}


def _chain_of_another_key(tmp: Path) -> dict[str, object]:
    # a ledger sealed by the fixed test key; the config names a freshly made key
    with BlockStore.open(tmp / "ledger", options=StoreOptions(fsync=False)) as store:
        store.append_many(make_blocks(3))
    return {}


def _not_a_ledger(tmp: Path) -> dict[str, object]:
    (tmp / "ledger").mkdir()
    (tmp / "ledger" / "notes.txt").write_text("not a ledger\n")
    return {}


def _corrupt_ledger(tmp: Path) -> dict[str, object]:
    key = write_key_file(tmp)
    with BlockStore.open(tmp / "ledger", options=StoreOptions(fsync=False, align=1)) as store:
        store.append_many(make_blocks(3))
    seg = next((tmp / "ledger" / "segments").glob("*.seg"))
    data = bytearray(seg.read_bytes())
    data[40] ^= 0xFF  # inside the first record: a bad record followed by good ones
    seg.write_bytes(bytes(data))
    seg.with_suffix(".idx").unlink()  # so that opening scans the segment from its start
    return {"key": key}


def _state_not_json(tmp: Path) -> dict[str, object]:
    (tmp / "state.json").write_text("{not json")
    return {}


def _ca_not_a_certificate(tmp: Path) -> dict[str, object]:
    (tmp / "ca.pem").write_text("not a certificate\n")
    return {"replicas": f'[[replicas]]\nname = "utility"\nurl = "https://127.0.0.1:1"\n'
                        f'ca_cert = "{tmp / "ca.pem"}"'}


CASES: dict[str, tuple[object, list[str]]] = {
    # name: (kwargs for _toml or a function of tmp giving them, the key paths refused)
    "missing key file": (lambda tmp: {"key": tmp / "nokeys" / "gateway.key"},
                         ["gateway.key_path"]),
    "key readable by others": (_bad_key_mode, ["gateway.key_path"]),
    "utility key while not sealing": (
        {"sealing": f'seal_to_utility = false\nutility_key = "{"ab" * 32}"'},
        ["sealing.utility_key"]),
    "utility key file not a key": (_garbage_utility_key, ["sealing.utility_key"]),
    "textfile in a missing directory": (lambda tmp: {
        "metrics": f'textfile = "{tmp / "no-such-dir" / "m.prom"}"'}, ["metrics.textfile"]),
    "textfile where nothing can be written": (
        {"metrics": 'textfile = "/proc/meterchain.prom"'}, ["metrics.textfile"]),
    "unit 0 and an unknown profile": (
        {"meter": 'unit = 0\nprofile = "no-such-profile"'},
        ["meters[0].unit", "meters[0].profile"]),
    "unknown driver option": (
        {"meter": 'unit = 1\nprofile = "eastron-sdm630"\noptions = { gapp_ms = 5 }'},
        ["meters[0].options.gapp_ms"]),
    "key differs from the stored chain's": (_chain_of_another_key, ["gateway.key_path"]),
    "ledger_dir holds something else": (_not_a_ledger, ["gateway.ledger_dir"]),
    "ledger damaged before its last record": (_corrupt_ledger, ["gateway.ledger_dir"]),
    "ledger_dir cannot be created": (lambda tmp: {"ledger": Path("/proc/meterchain-ledger")},
                                     ["gateway.ledger_dir"]),
    "state directory missing": (lambda tmp: {"state": tmp / "no-such-dir" / "state.json"},
                                ["gateway.state_path"]),
    "state file not JSON": (_state_not_json, ["gateway.state_path"]),
    "CA file not a certificate": (_ca_not_a_certificate, ["replicas[0].ca_cert"]),
}


def _problems(stderr: str, command: str) -> list[str]:
    lines = stderr.strip().splitlines()
    assert lines and lines[0].startswith(f"meterchain {command}: error: "), stderr
    assert "Traceback" not in stderr
    return lines[1:]


@pytest.mark.parametrize("case", sorted(CASES))
def test_config_check_refuses_what_run_refuses(case: str, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    spec, paths = CASES[case]
    kwargs = spec(tmp_path) if callable(spec) else spec
    cfg = _toml(tmp_path, **kwargs)  # type: ignore[arg-type]

    assert main(["config", "check", str(cfg)]) == 2
    checked = _problems(capsys.readouterr().err, "config")
    assert [line.split(": ", 1)[0] for line in checked] == paths

    run = subprocess.run([sys.executable, "-m", "meterchain", "run", "--config", str(cfg)],
                         capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert run.returncode == 2
    assert _problems(run.stderr, "run") == checked


def test_a_good_config_passes_both_checks(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "prom").mkdir()
    cfg = _toml(tmp_path, metrics=f'textfile = "{tmp_path / "prom" / "m.prom"}"')
    assert main(["config", "check", str(cfg)]) == 0
    assert "OK (1 meter(s), 0 replica(s))" in capsys.readouterr().out
    assert list((tmp_path / "prom").iterdir()) == []  # the write probe leaves nothing


def _snapshot(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def test_the_ledger_is_read_without_touching_it(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """config check reads the stored chain's key strictly read-only: a torn tail the agent
    would cut at its next start, and a missing index, stay exactly as they are."""
    key = write_key_file(tmp_path)
    with BlockStore.open(tmp_path / "ledger", options=StoreOptions(fsync=False)) as store:
        store.append_many(make_blocks(4))
    seg = next((tmp_path / "ledger" / "segments").glob("*.seg"))
    with open(seg, "ab") as f:
        f.write(b"\x00\x00\x01\x00torn")  # the start of a frame a power cut interrupted
    seg.with_suffix(".idx").unlink()
    before = _snapshot(tmp_path / "ledger")
    cfg = _toml(tmp_path, key=key)
    assert main(["config", "check", str(cfg)]) == 0, capsys.readouterr().err
    assert _snapshot(tmp_path / "ledger") == before


def test_a_running_agents_ledger_is_checked_without_disturbing_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """With the writer holding its lock (as `run` does), config check still reads the head
    (no "in use" refusal), refuses a foreign key, and the writer appends on afterwards."""
    blocks = make_blocks(5)
    with BlockStore.open(tmp_path / "ledger", options=StoreOptions(fsync=False)) as store:
        store.append_many(blocks[:3])
        good = _toml(tmp_path, key=write_key_file(tmp_path))
        assert main(["config", "check", str(good)]) == 0, capsys.readouterr().err
        capsys.readouterr()
        other = tmp_path / "other"
        other.mkdir()
        keyfiles.generate_gateway_key(other)
        foreign = _toml(tmp_path, key=other / keyfiles.GATEWAY_KEY)
        assert main(["config", "check", str(foreign)]) == 2
        err = capsys.readouterr().err
        assert "gateway.key_path: " in err and "is not the key of the chain in" in err
        store.append_many(blocks[3:])
        assert store.height == 4
    with BlockStore.open(tmp_path / "ledger", options=StoreOptions(read_only=True)) as store:
        assert store.height == 4


def _listening() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock


def test_a_metrics_port_another_program_holds_is_refused_by_both(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with _listening() as other:
        port = other.getsockname()[1]
        cfg = _toml(tmp_path, metrics=f'listen = "127.0.0.1:{port}"')
        assert main(["config", "check", str(cfg)]) == 2
        checked = _problems(capsys.readouterr().err, "config")
        assert [line.split(": ", 1)[0] for line in checked] == ["metrics.listen"]
        assert "another program holds the port" in checked[0]
        run = subprocess.run([sys.executable, "-m", "meterchain", "run", "--config", str(cfg)],
                             capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert run.returncode == 2, run.stderr
    assert _problems(run.stderr, "run") == checked


def test_the_port_of_this_configs_running_agent_is_not_a_problem(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """config check beside the running agent: the port it holds is its own (its status
    file says it runs, with a live pid, serving metrics on that port)."""
    with _listening() as agent_socket:
        port = agent_socket.getsockname()[1]
        cfg = _toml(tmp_path, metrics=f'listen = "127.0.0.1:{port}"')
        status = {"version": STATUS_VERSION, "running": True, "pid": os.getpid(),
                  "metrics_url": f"http://127.0.0.1:{port}/metrics"}
        (tmp_path / "status.json").write_text(json.dumps(status))
        assert main(["config", "check", str(cfg)]) == 0, capsys.readouterr().err
        status["running"] = False  # stopped: then whoever holds the port is another program
        (tmp_path / "status.json").write_text(json.dumps(status))
        assert main(["config", "check", str(cfg)]) == 2
        assert "metrics.listen: cannot listen on" in capsys.readouterr().err
