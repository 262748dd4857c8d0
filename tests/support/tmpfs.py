"""A real small filesystem that really runs out of space, for disk-full tests.

    with small_tmpfs(tmp_path / "var", size_bytes=4 << 20) as var:
        fill(var / "FILLER")        # dd until ENOSPC
        (var / "FILLER").unlink()   # space returns

Mounting a tmpfs needs root (as in CI's container); where that is refused, a loop-mounted
ext2 image of the same size is used instead. Either way it is unmounted on exit.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def small_tmpfs(mountpoint: Path, size_bytes: int) -> Iterator[Path]:
    """Mount a filesystem of ``size_bytes`` at ``mountpoint`` (created) for the block."""
    mountpoint.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_bytes}", "tmpfs",
                           str(mountpoint)], capture_output=True, text=True)
    image: Path | None = None
    if proc.returncode != 0:
        image = mountpoint.with_name(mountpoint.name + ".img")
        image.write_bytes(bytes(size_bytes))
        subprocess.run(["mkfs.ext2", "-q", "-F", str(image)], check=True, capture_output=True)
        subprocess.run(["mount", "-o", "loop", str(image), str(mountpoint)], check=True,
                       capture_output=True)
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], capture_output=True)
        if image is not None:
            image.unlink(missing_ok=True)


def fill(path: Path) -> int:
    """Write zeros to ``path`` with dd until the filesystem is full; return its size."""
    subprocess.run(["dd", "if=/dev/zero", f"of={path}", "bs=64k"], capture_output=True)
    return path.stat().st_size


def free_bytes(path: Path) -> int:
    """Bytes an unprivileged writer may still use on ``path``'s filesystem."""
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize
