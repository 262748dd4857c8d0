"""Config validation: every problem at once, key paths, suggestions, the example file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from agent.service.config import load_config, parse_config
from ledger.errors import ConfigError, ConfigErrors

ROOT = Path(__file__).resolve().parents[2]

GOOD = {
    "gateway": {"key_path": "/k", "ledger_dir": "/l", "state_path": "/s/state.json"},
    "meters": [{"id": "m1", "driver": "modbus-tcp", "host": "10.0.0.2", "unit": 1,
                "profile": "eastron-sdm630"}],
}


def problems(data: dict) -> list[str]:
    with pytest.raises(ConfigErrors) as info:
        parse_config(data)
    return [str(e) for e in info.value.errors]


def test_example_config_passes_check(tmp_path: Path) -> None:
    """The example as installed (its state directory, /var/lib/meterchain, made by the
    unit), once the first start made the key: config check also loads the key file and
    reads the state directory, as `run` does."""
    import keyfiles

    keyfiles.generate_gateway_key(tmp_path)
    text = (ROOT / "deploy/agent.example.toml").read_text()
    assert 'key_path = "/var/lib/meterchain/gateway.key"' in text
    example = tmp_path / "agent.toml"
    example.write_text(text.replace("/var/lib/meterchain/", f"{tmp_path}/"))
    proc = subprocess.run([sys.executable, "-m", "meterchain", "config", "check",
                           str(example)], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert "OK (3 meter(s), 2 replica(s))" in proc.stdout


def test_minimal_config_takes_documented_defaults() -> None:
    cfg = parse_config(GOOD)
    assert cfg.meters[0].poll_interval_s == 10.0
    assert cfg.meters[0].tcp_port == 502
    assert cfg.sealing.max_readings == 1000
    assert cfg.retention.min_age_s == 7 * 86400
    assert cfg.replicas == ()
    assert cfg.status_path == Path("/s/status.json")


def test_every_problem_is_reported_at_once_with_key_paths() -> None:
    data = {
        "gateway": {"key_pth": "/k", "ledger_dir": "", "state_path": 3},
        "meters": [
            {"id": "m1", "driver": "modbus-rtu", "port": "/dev/ttyUSB0", "unit": 0,
             "profile": "eastron-sdm630"},
            {"id": "m1", "driver": "modbus-tpc", "host": "x"},
            {"id": "p1", "driver": "dsmr-p1", "host": "10.0.0.1", "poll_interval_s": 1,
             "timeout_s": 2},
            5,
        ],
        "sealing": {"interval": 5, "max_readings": 70000, "seal_to_utility": True},
        "replicas": [{"name": "Up", "url": "http://example.com"},
                     {"name": "b", "url": "https://b", "pinned_key_sha256": "zz"}],
        "metrics": {"listen": "0.0.0.0:9477"},
        "retension": {},
    }
    got = problems(data)
    expected = [
        "retension: unknown key; did you mean 'retention'?",
        "gateway.key_pth: unknown key; did you mean 'key_path'?",
        "gateway.key_path: is required",
        "gateway.ledger_dir: must not be empty",
        "gateway.state_path: must be a string, got 3",
        "meters[0].unit: must be 1..247, got 0",
        "meters[3]: must be a table, got 5",
        "sealing.interval: unknown key; did you mean 'interval_s'?",
        "sealing.max_readings: must be 1..65535, got 70000",
        "meters[1].driver: unknown driver 'modbus-tpc'",
        "meters[1].id: duplicate id 'm1' (also meters[0])",
        "meters[2].timeout_s: must be below poll_interval_s (1.0), got 2.0",
        "meters[2].port: is required for driver dsmr-p1",
        "meters[2].host: is not used by serial driver dsmr-p1",
        "replicas[0].name: must be 1..32 of [a-z0-9._-], got 'Up'",
        "replicas[0].url: plain http:// is allowed only to a loopback address",
        "replicas[1].pinned_key_sha256: must be 64 lowercase hex chars, got 'zz'",
        "sealing.utility_key: is required when seal_to_utility = true",
        "metrics.listen: must be a loopback address",
    ]
    for want in expected:
        assert any(p.startswith(want) for p in got), f"missing {want!r} in {got}"
    assert len(got) == len(expected), got
    assert any("did you mean 'modbus-tcp'?" in p for p in got)


def test_unknown_key_without_close_match_lists_valid_keys() -> None:
    data = {**GOOD, "sealing": {"zzz": 1}}
    (p,) = problems(data)
    assert p.startswith("sealing.zzz: unknown key (valid: interval_s, max_readings")


def test_types_are_strict() -> None:
    data = {**GOOD, "meters": [{**GOOD["meters"][0], "unit": True, "poll_interval_s": "10"}]}
    got = problems(data)
    assert "meters[0].unit: must be an integer, got True" in got
    assert "meters[0].poll_interval_s: must be a number, got '10'" in got


def test_http_to_loopback_replica_is_allowed() -> None:
    cfg = parse_config({**GOOD, "replicas": [{"name": "local", "url": "http://127.0.0.1:8080"}]})
    assert cfg.replicas[0].required is True


def test_load_config_reports_toml_syntax_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "a.toml"
    bad.write_text("[gateway\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "missing.toml")


def test_config_check_cli_lists_problems_and_fails(tmp_path: Path) -> None:
    cfg = tmp_path / "agent.toml"
    cfg.write_text('[gateway]\nkey_path = "/k"\nledger_dir = "/l"\nstate_path = "/s"\n'
                   '[[meters]]\nid = "a"\ndriver = "modbus-tcp"\nhost = "h"\nunit = 0\n'
                   'profile = "eastron-sdm630"\npoll_intervall_s = 5\n')
    proc = subprocess.run([sys.executable, "-m", "meterchain", "config", "check", str(cfg)],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2
    assert "meters[0].unit: must be 1..247, got 0" in proc.stderr
    assert "meters[0].poll_intervall_s: unknown key; did you mean 'poll_interval_s'?" in (
        proc.stderr)
    assert "Traceback" not in proc.stderr


def test_check_includes_what_the_drivers_refuse(tmp_path: Path) -> None:
    """A profile or driver option only the driver knows is wrong fails `config check`
    (and so the unit's ExecStartPre), not only `run`; nothing is created on disk."""
    text = (ROOT / "deploy/agent.example.toml").read_text()
    bad = text.replace('variant = "v5"', 'variant = "dsmr5"').replace(
        'profile = "eastron-sdm630"', 'profile = "eastron-sdm6300"')
    assert bad != text
    ledger = tmp_path / "ledger"
    subprocess.run([sys.executable, "-m", "meterchain", "keygen", "--out", str(tmp_path)],
                   check=True, capture_output=True, cwd=ROOT)
    bad = bad.replace('ledger_dir = "/var/lib/meterchain/ledger"', f'ledger_dir = "{ledger}"')
    bad = bad.replace('"/var/lib/meterchain/gateway.key"', f'"{tmp_path / "gateway.key"}"')
    bad = bad.replace('"/var/lib/meterchain/state.json"', f'"{tmp_path / "state.json"}"')
    cfg = tmp_path / "agent.toml"
    cfg.write_text(bad)
    for cmd in (["config", "check", str(cfg)], ["run", "--config", str(cfg)]):
        proc = subprocess.run([sys.executable, "-m", "meterchain", *cmd],
                              capture_output=True, text=True, cwd=ROOT)
        assert proc.returncode == 2, proc.stderr
        assert "meters[0].profile" in proc.stderr and "eastron-sdm6300" in proc.stderr
        assert "meters[2]" in proc.stderr and "dsmr5" in proc.stderr
        assert "Traceback" not in proc.stderr
    assert not ledger.exists() and not (tmp_path / "state.json").exists()
