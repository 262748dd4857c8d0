"""Fixtures for agent tests."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from drivers import profile
from drivers.sim.meter import MeterServer, SimUnit
from drivers.sim.model import MeterModel
from tests.support.agent import LoopThread


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs (needs root, as in CI's container); falls back to a loop-mounted
    ext2 image only if tmpfs mounting is refused. Either way a real filesystem that
    really runs out of space."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        image = tmp_path / "small.img"
        image.write_bytes(bytes(2 << 20))
        subprocess.run(["mkfs.ext2", "-q", "-F", str(image)], check=True, capture_output=True)
        subprocess.run(["mount", "-o", "loop", str(image), str(mnt)], check=True,
                       capture_output=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


@pytest.fixture
def sim_meter() -> Iterator[MeterServer]:
    """A simulated SDM630 on a real pymodbus TCP server, run from a thread of its own."""
    loop = LoopThread()
    server = MeterServer([SimUnit(1, profile.load("eastron-sdm630"), MeterModel())])
    loop.call(server.start)
    try:
        yield server
    finally:
        loop.call(server.stop)
        loop.close()
