"""The replica adapter against a recorded real replica, served back over a real socket.

``captures/meterdata-day.json`` was recorded from the replica's meter-data API by
``captures/capture_meterdata.py`` (see there): one day of signed 5-minute register
readings of a household with a one-hour gap, a prosumer and a PV plant. A small HTTP
server on 127.0.0.1 answers exactly the recorded requests (and 404 otherwise, 401
without the token), so the adapter's requests, parsing and error handling run over
HTTP as against the replica.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

from keyfiles import generate_gateway_key
from meterchain.cli import main
from settlement.config import parse_community
from settlement.errors import InputError
from settlement.period import parse_period
from settlement.replica_source import collect, http_getter
from tests.support.vectorhof import MEMBERS, community_toml

CAPTURE = json.loads((Path(__file__).parent / "captures" / "meterdata-day.json").read_text())
TOKEN = "mct_7e57000000000001_" + "5a" * 32
TOML = community_toml("vectorhof", {"community": 11000, "feed_in": 7000}) + MEMBERS


class _Replay(BaseHTTPRequestHandler):
    answers: dict[tuple[str, tuple[tuple[str, str], ...]], Any] = {}

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        url = urlsplit(self.path)
        key = (url.path, tuple(sorted(parse_qsl(url.query))))
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            self._send(401, {"error": "bad-token", "detail": "the token is not valid"})
        elif key in self.answers:
            self._send(200, self.answers[key])
        else:
            self._send(404, {"error": "unknown-point", "detail": f"no answer for {url.path}"})

    def _send(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def replica() -> Iterator[str]:
    _Replay.answers = {(a["path"], tuple(sorted(a["params"].items()))): a["json"]
                       for a in CAPTURE["answers"]}
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Replay)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def _community(text: str = TOML) -> Any:
    import tomllib
    return parse_community(tomllib.loads(text), sha256="cd" * 32)


def test_collects_every_point_with_quality_and_the_blocks_used(replica: str) -> None:
    c = _community()
    period = parse_period("2026-11-02", c.time_zone)
    data = collect(c, period, http_getter(replica, TOKEN))
    assert sorted(data.points) == ["AT001-anna", "AT001-bert-c", "AT001-bert-g",
                                   "AT001-plant"]
    assert all(len(v) == 96 for v in data.points.values())
    anna = data.points["AT001-anna"]
    assert sum(1 for wh, q in anna.values() if q == 1) == 5  # the hour without readings
    assert sum(wh for wh, _ in data.points["AT001-plant"].values()) == 12_000
    (src,) = data.sources
    assert src.gateway == CAPTURE["gateway"] and src.first_height == 0
    last = CAPTURE["answers"][-1]["json"]
    assert (src.last_height, src.head_hash) == (last["height"], last["hash"])


def test_settle_run_and_verify_from_the_replica(replica: str, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch,
                                                capsys: Any) -> None:
    (tmp_path / "community.toml").write_text(TOML)
    generate_gateway_key(tmp_path / "keys")
    monkeypatch.setenv("MC_REPLICA_TOKEN", TOKEN)
    common = ["--community", str(tmp_path / "community.toml")]
    assert main(["settle", "run", *common, "--period", "2026-11-02", "--replica", replica,
                 "--key", str(tmp_path / "keys" / "gateway.key"),
                 "--out", str(tmp_path / "out")]) == 0
    doc = json.loads((tmp_path / "out" / "settlement.json").read_text())["document"]
    assert doc["sources"][0]["gateway"] == CAPTURE["gateway"]
    assert doc["totals"]["provisional_intervals"] == 3 * 5
    capsys.readouterr()
    assert main(["settle", "verify", str(tmp_path / "out" / "settlement.json"), *common,
                 "--replica", replica]) == 0
    assert capsys.readouterr().out.startswith("OK vectorhof 2026-11-02")
    # the input the run saved reproduces it offline too
    assert main(["settle", "verify", str(tmp_path / "out" / "settlement.json"), *common,
                 "--intervals", str(tmp_path / "out" / "intervals.json")]) == 0


def test_refusals_are_clear_and_never_show_the_token(replica: str, tmp_path: Path,
                                                    capsys: Any) -> None:
    c = _community()
    period = parse_period("2026-11-02", c.time_zone)
    with pytest.raises(InputError, match="answered 401") as info:
        collect(c, period, http_getter(replica, "mct_wrong"))
    assert "mct_wrong" not in str(info.value)
    other = _community(TOML.replace("AT001-plant", "AT001-nowhere"))
    with pytest.raises(InputError, match="404.*unknown-point"):
        collect(other, period, http_getter(replica, TOKEN))
    swapped = TOML.split("[[members]]")[0] + (
        '[[members]]\nid = "anna"\nconsumption = ["AT001-bert-g"]\n'
        '[[members]]\nid = "plant"\ngeneration = ["AT001-plant"]\n')
    with pytest.raises(InputError, match="no import series for metering point AT001-bert-g"):
        collect(_community(swapped), period, http_getter(replica, TOKEN))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(InputError, match="cannot reach the replica"):
        collect(c, period, http_getter(f"http://127.0.0.1:{port}", TOKEN))
    with pytest.raises(InputError, match="only to a loopback address"):
        http_getter("http://replica.example", TOKEN)
    with pytest.raises(InputError, match="https:// URL"):
        http_getter("ftp://replica.example", TOKEN)
    (tmp_path / "community.toml").write_text(TOML)
    (tmp_path / "token").write_text("mct_wrong\n")
    assert main(["settle", "run", "--community", str(tmp_path / "community.toml"),
                 "--period", "2026-11-02", "--replica", replica, "--token-file",
                 str(tmp_path / "token"), "--key", "k", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "401" in err and "mct_wrong" not in err and "Traceback" not in err


def test_member_proof_carries_the_signed_readings_behind_its_intervals(
        replica: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    (tmp_path / "community.toml").write_text(TOML)
    generate_gateway_key(tmp_path / "keys")
    monkeypatch.setenv("MC_REPLICA_TOKEN", TOKEN)
    community = ["--community", str(tmp_path / "community.toml")]
    assert main(["settle", "run", *community, "--period", "2026-11-02", "--replica", replica,
                 "--key", str(tmp_path / "keys" / "gateway.key"),
                 "--out", str(tmp_path / "out")]) == 0
    doc = str(tmp_path / "out" / "settlement.json")
    proof = tmp_path / "anna.json"
    assert main(["settle", "prove", doc, "--member", "anna", "--replica", replica,
                 *community, "-o", str(proof)]) == 0
    assert "95 signed readings" in capsys.readouterr().out
    assert main(["settle", "verify-proof", str(proof)]) == 0
    out = capsys.readouterr().out
    assert "95 signed readings behind its intervals proven" in out and "anna-grid" in out
    p = json.loads(proof.read_text())
    # only anna's own readings: every proven reading is of her meter
    assert set(p["readings"]["traces"]) == {"AT001-anna"}
    # a tampered reading, a missing proof, a trace of a foreign interval: each fails
    first = sorted(p["readings"]["proofs"])[0]
    for mutate in (
            lambda q: q["readings"]["proofs"][first].update(
                reading=q["readings"]["proofs"][first]["reading"][:-2] + "ff"),
            lambda q: q["readings"]["proofs"].pop(first),
            lambda q: q["readings"]["traces"]["AT001-anna"].append([1, [first]])):
        bad = json.loads(proof.read_text())
        mutate(bad)
        (tmp_path / "bad.json").write_text(json.dumps(bad))
        assert main(["settle", "verify-proof", str(tmp_path / "bad.json")]) == 1
        assert capsys.readouterr().out.startswith("FAILED")
    assert main(["settle", "prove", doc, "--member", "anna", "--replica", replica,
                 "-o", str(proof)]) == 2
    assert "needs --community" in capsys.readouterr().err
    # one hour of anna's day: four lines, each with its path, and only their readings
    noon = CAPTURE["day0_ms"] + 12 * 3_600_000
    assert main(["settle", "prove", doc, "--member", "anna", "--replica", replica,
                 *community, "--from-ms", str(noon), "--to-ms", str(noon + 3_600_000),
                 "-o", str(proof)]) == 0
    assert "4 of anna's" in capsys.readouterr().out
    p = json.loads(proof.read_text())
    assert len(p["lines"]) == 4 and len(p["readings"]["traces"]["AT001-anna"]) == 4
    assert len(p["readings"]["proofs"]) <= 8
    assert main(["settle", "verify-proof", str(proof)]) == 0
    out = capsys.readouterr().out
    assert f"I,anna,{noon}," in out and "signed readings behind its intervals proven" in out
