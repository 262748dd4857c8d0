"""Fixtures for driver tests: a linked pseudo-terminal pair, profile paths."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from drivers.sim.pty import PtyPair


@pytest.fixture
def pty_pair(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """Two linked pseudo-terminals: (gateway end, meter end)."""
    with PtyPair(tmp_path) as pair:
        yield pair
