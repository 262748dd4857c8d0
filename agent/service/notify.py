"""systemd service notification (``sd_notify``) over ``$NOTIFY_SOCKET``, stdlib only.

With ``Type=notify`` systemd waits for ``READY=1`` (sent once the store is recovered),
shows ``STATUS=`` lines in ``systemctl status``, and with ``WatchdogSec=`` restarts the
service unless ``WATCHDOG=1`` arrives every ``$WATCHDOG_USEC``; the daemon sends it only
while its main loop is healthy. Outside systemd (no ``$NOTIFY_SOCKET``) every call is a
no-op.
"""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger("meterchain.notify")


class Notifier:
    """Sends datagrams to the service manager's notification socket."""

    def __init__(self, environ: dict[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        path = env.get("NOTIFY_SOCKET", "")
        self.address: str | bytes | None = None
        if path.startswith("@"):  # abstract namespace socket
            self.address = b"\0" + path[1:].encode()
        elif path.startswith("/"):
            self.address = path
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        self.watchdog_s: float | None = None
        if usec.isdigit() and int(usec) > 0 and (not pid or pid == str(os.getpid())):
            self.watchdog_s = int(usec) / 1_000_000
        self._sock: socket.socket | None = None
        self.failures = 0

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, *fields: str) -> bool:
        """Send ``KEY=value`` lines as one datagram; True if delivered.

        Never raises: a failed notification is logged (systemd then acts on its own
        timeouts) and counted in ``failures``.
        """
        if self.address is None:
            return False
        text = "\n".join(f.replace("\n", " ") for f in fields)
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto(text.encode("utf-8", "replace"), self.address)
        except OSError as exc:
            self.failures += 1
            log.warning("sd_notify to %r failed: %s", self.address, exc)
            return False
        return True

    def ready(self, status: str) -> bool:
        return self.send("READY=1", f"STATUS={status}")

    def status(self, status: str) -> bool:
        return self.send(f"STATUS={status}")

    def watchdog(self) -> bool:
        return self.send("WATCHDOG=1")

    def stopping(self, status: str) -> bool:
        return self.send("STOPPING=1", f"STATUS={status}")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
