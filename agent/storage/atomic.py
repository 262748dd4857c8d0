"""Write a whole file atomically: a reader finds either the old file or the new one.

One routine serves the agent's status file, its state file and its metrics textfile:
the bytes go to a temporary file in the same directory, which is renamed over the
target. On failure the old file is left as it was and the temporary file is removed
(on a full disk it would hold space).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def write_atomically(path: Path, data: bytes, tmp: Path, *, fsync: bool = True,
                     fsync_dir: bool = False, mode: int = 0o644) -> None:
    """Write ``data`` to ``tmp`` (created with ``mode``), then rename it over ``path``.

    ``fsync`` flushes the file before the rename, ``fsync_dir`` the directory after it.

    Raises:
        OSError: the directory is not writable or the disk is full (``tmp`` is removed).
    """
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            if fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        if fsync_dir:
            dfd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
    except OSError:
        with contextlib.suppress(OSError):  # the write's own error says what failed
            tmp.unlink(missing_ok=True)
        raise
