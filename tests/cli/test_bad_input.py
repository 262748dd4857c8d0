"""Every command of the dispatcher's table, given bad input, answers with a clear error:
a non-zero exit and a message, never a traceback and never the "unexpected error" line
that stands for one (a crash log). A command added to ``COMMANDS`` needs bad inputs here.

Run in-process through ``meterchain.cli.main`` (as the console script runs it), with the
crash-log directory pointed at a fresh directory that must stay empty.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.storage.store import BlockStore, StoreOptions
from meterchain.cli import COMMANDS, main
from tests.support.store import make_blocks

KEY_HEX = "ab" * 32

BAD_INPUTS: dict[str, list[list[str]]] = {
    # {missing}: no such path; {dir}: a directory; {text}: a text file that is nothing of
    # ours; {binary}: bytes that are not UTF-8; {ledger}: a valid ledger; {replica}: a
    # valid replica.toml (SQLite); {tmp}: a scratch directory
    "keygen": [["keygen", "--out", "{text}"]],
    "verify": [["verify", "{missing}"], ["verify", "{dir}"], ["verify", "{binary}"],
               ["verify", "{ledger}", "--gateway-key", "zz"]],
    "export": [["export", "{missing}", "-o", "{tmp}/x.mcx"], ["export", "{dir}", "-o", "{tmp}/y"],
               ["export", "{ledger}", "-o", "{missing}/x.mcx"],
               ["export", "{ledger}", "-o", "{text}"]],
    "show": [["show", "{missing}"], ["show", "{text}"], ["show", "{dir}"]],
    "prove": [["prove", "{ledger}", "--height", "99", "--index", "0", "-o", "{tmp}/p.json"],
              ["prove", "{ledger}", "--height", "0", "--index", "999"],
              ["prove", "{ledger}", "--height", "x", "--index", "0"],
              ["prove", "{ledger}", "--height", "0", "--index", "0", "--utility-key", "{text}"],
              ["prove", "{ledger}", "--height", "0", "--index", "0", "-o", "{missing}/p.json"]],
    "verify-proof": [["verify-proof", "{text}"], ["verify-proof", "{binary}"],
                     ["verify-proof", "{dir}"], ["verify-proof", "{missing}"]],
    "demo": [["demo", "--ledger-only", "--blocks", "0"],
             ["demo", "--ledger-only", "--ledger", "{text}"]],
    "run": [["run", "--config", "{missing}"], ["run", "--config", "{text}"],
            ["run", "--config", "{dir}"]],
    "config": [["config"], ["config", "check", "{text}"], ["config", "check", "{binary}"],
               ["config", "check", "{missing}"]],
    "status": [["status", "--config", "{missing}"], ["status", "--status-file", "{text}"],
               ["status", "--status-file", "{dir}"], ["status", "--status-file", "{binary}"]],
    "key": [["key"], ["key", "show", "--config", "{missing}"],
            ["key", "init", "--config", "{text}"]],
    "drivers": [["drivers", "--bogus"]],
    "profile": [["profile", "show", "no-such-profile"], ["profile", "show", "{text}"],
                ["profile", "show", "{missing}.toml"]],
    "scan": [["scan"], ["scan", "--port", "/dev/null", "--ids", "1"],
             ["scan", "--port", "{missing}", "--ids", "x"], ["scan", "--port", "{dir}"]],
    "read": [["read"], ["read", "--p1", "/dev/null"], ["read", "--d0", "{dir}"],
             ["read", "--config", "{text}"],
             ["read", "--host", "127.0.0.1", "--tcp-port", "1", "--profile", "eastron-sdm630",
              "--unit", "1", "--timeout", "0.3"]],
    "sim": [["sim", "--tcp-port", "-1"], ["sim", "--write-config", "{missing}/sim.toml"]],
    "replica": [["replica", "list", "--config", "{missing}"],
                ["replica", "list", "--config", "{text}"],
                ["replica", "enroll", "zz", "--name", "n", "--config", "{replica}"],
                ["replica", "revoke", KEY_HEX, "--at", "soon", "--config", "{replica}"]],
    "audit": [["audit", "not-a-url", "other"], ["audit", "http://", "https://"],
              ["audit", "http://127.0.0.1:1", "http://127.0.0.1:2", "--timeout", "0"],
              ["audit", "http://127.0.0.1:1", "http://127.0.0.1:2", "--timeout", "2"]],
    "settle": [["settle", "prove", "{text}", "--member", "x", "-o", "{tmp}/x.json"],
               ["settle", "verify-proof", "{binary}"],
               ["settle", "run", "--community", "{text}", "--period", "x", "--intervals",
                "{text}", "--key", "{text}", "--out", "{tmp}/out"]],
}

SAYS: dict[tuple[str, ...], str] = {
    # bad inputs whose message must name the real cause (not a temporary file's name, not
    # a socket error for what is a usage error)
    ("export", "{ledger}", "-o", "{missing}/x.mcx"): "{missing}: directory does not exist",
    ("audit", "http://", "https://"): "not an http(s) URL with a host: 'http://'",
    ("audit", "http://127.0.0.1:1", "http://127.0.0.1:2", "--timeout", "0"):
        "--timeout must be more than 0",
    ("replica", "list", "--config", "{missing}"): "give the replica's config with --config",
    ("settle", "prove", "{text}", "--member", "x", "-o", "{tmp}/x.json"): "not JSON",
    ("read", "--p1", "/dev/null"): "not a serial device",
}


def test_every_command_has_bad_inputs() -> None:
    assert sorted(BAD_INPUTS) == sorted(COMMANDS)


@pytest.fixture(scope="module")
def places(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    tmp = tmp_path_factory.mktemp("bad-input")
    (tmp / "dir").mkdir()
    (tmp / "text").write_text("this is nothing meterchain knows\n")
    (tmp / "binary").write_bytes(bytes(range(128, 256)) * 4)
    with BlockStore.open(tmp / "ledger", options=StoreOptions(fsync=False)) as store:
        store.append_many(make_blocks(2))
    (tmp / "replica.toml").write_text(f'[storage]\nurl = "sqlite:///{tmp}/replica.db"\n')
    return {"missing": str(tmp / "no-such-path"), "dir": str(tmp / "dir"),
            "text": str(tmp / "text"), "binary": str(tmp / "binary"),
            "ledger": str(tmp / "ledger"), "replica": str(tmp / "replica.toml"),
            "tmp": str(tmp)}


CASES = [(cmd, tuple(argv)) for cmd, argvs in BAD_INPUTS.items() for argv in argvs]


@pytest.mark.parametrize(("command", "argv"), CASES,
                         ids=[" ".join(argv) for _, argv in CASES])
def test_bad_input_is_a_clear_error_never_a_traceback(
        command: str, argv: tuple[str, ...], places: dict[str, str], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    logs = tmp_path / "crash-logs"
    monkeypatch.setenv("MC_LOG_DIR", str(logs))
    monkeypatch.chdir(tmp_path)  # relative defaults (replica.toml) do not exist here
    args = [a.format(**places) for a in argv]
    try:
        rc = main(args)
    except SystemExit as exc:  # argparse's usage errors
        rc = exc.code  # type: ignore[assignment]
    out, err = capsys.readouterr()
    assert rc in (1, 2), (rc, out, err)
    assert "Traceback" not in out + err
    assert "unexpected error" not in err, err
    assert not logs.exists() or not list(logs.iterdir())
    said = (err + out).strip()
    assert said, "a refusal must say why"
    if argv in SAYS:
        assert SAYS[argv].format(**places) in said, said
