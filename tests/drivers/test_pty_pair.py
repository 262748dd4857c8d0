"""The simulators' RS-485 line: a pseudo-terminal pair made in Python, no socat."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import serial

from drivers.sim.pty import PtyPair


def _read_exactly(port: serial.Serial, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = port.read(n - len(out))
        if not chunk:
            break
        out += chunk
    return out


def test_bytes_cross_both_ways_without_socat_on_path(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))  # no socat, no anything
    with PtyPair(tmp_path, "bus") as (a, b):
        assert os.path.realpath(a).startswith("/dev/pts/")
        with serial.Serial(a, 9600, timeout=2) as pa, serial.Serial(b, 9600, timeout=2) as pb:
            frame = bytes(range(256)) * 4  # every byte value: raw, no CR/LF or XON mangling
            pa.write(frame)
            assert _read_exactly(pb, len(frame)) == frame
            pb.write(b"\r\n\x11\x13\x03answer")
            assert _read_exactly(pa, 11) == b"\r\n\x11\x13\x03answer"
        # a driver closes and reopens its end: the line still works
        with serial.Serial(b, 9600, timeout=2) as pb, serial.Serial(a, 9600, timeout=2) as pa:
            pb.write(b"again")
            assert _read_exactly(pa, 5) == b"again"
    assert not os.path.lexists(a) and not os.path.lexists(b)
