"""The charting library shipped in the package is the recorded release, byte for byte."""

from __future__ import annotations

import hashlib
import tomllib
from pathlib import Path

import replica.ui

VENDOR = Path(replica.ui.__file__).parent / "static" / "vendor"


def test_every_vendored_file_matches_its_recorded_hash() -> None:
    manifests = sorted(VENDOR.glob("*/VENDOR.toml"))
    assert manifests, "no vendored library recorded"
    for m in manifests:
        meta = tomllib.loads(m.read_text())
        assert meta["version"] and meta["license"]
        assert (m.parent / meta["license_file"]).is_file()
        listed = set(meta["files"])
        present = {p.name for p in m.parent.iterdir()} - {"VENDOR.toml", "README.md"}
        assert present == listed, f"{m.parent.name}: unrecorded or missing files"
        for name, digest in meta["files"].items():
            got = hashlib.sha256((m.parent / name).read_bytes()).hexdigest()
            assert got == digest, f"{m.parent.name}/{name}: {got} != recorded {digest}"


def test_uplot_file_is_the_recorded_version() -> None:
    meta = tomllib.loads((VENDOR / "uplot" / "VENDOR.toml").read_text())
    assert meta["name"] == "uplot" and meta["version"] == "1.6.32"
    head = (VENDOR / "uplot" / "README.md").read_text().splitlines()[0]
    assert meta["version"] in head
