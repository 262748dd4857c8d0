"""A throw-away PostgreSQL server for tests and benchmarks (initdb + pg_ctl in a temp dir).

    with PgServer() as pg:
        dsn = pg.dsn()                     # postgresql://postgres@127.0.0.1:PORT/postgres
        dsn_t = pg.fresh_schema_dsn()      # same server, an empty schema of its own

Listens on 127.0.0.1 on a free port and on a unix socket in the temp dir, with trust
authentication for local connections only. PostgreSQL refuses to run as root, so as
root the server runs as the ``postgres`` user (created with ``useradd`` if missing)
with the temp dir handed to it. Binaries are found on PATH or under
``/usr/lib/postgresql/*/bin``. Any failure raises :class:`PgServerError` with the log:
the caller's tests fail loudly, they are never skipped.
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType

RUN_AS = "postgres"


class PgServerError(RuntimeError):
    """The throw-away PostgreSQL server could not be set up."""


def find_bin(name: str) -> str:
    """Path of a PostgreSQL binary. Raises PgServerError when not installed."""
    found = shutil.which(name)
    if found:
        return found
    cands = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"),
                   key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    if cands:
        return cands[-1]
    raise PgServerError(f"{name} not found on PATH or under /usr/lib/postgresql/*/bin; "
                        "install the PostgreSQL server (tests/run.sh does)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ensure_user(name: str) -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/bin/false",
                        name], check=True, capture_output=True)
        return pwd.getpwnam(name)


class PgServer:
    """One PostgreSQL cluster in a temporary directory; stop() removes everything."""

    def __init__(self, *, settings: dict[str, str] | None = None) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="mc-pg-"))
        self.data = self.tmp / "data"
        self.sock = self.tmp / "sock"
        self.log = self.tmp / "server.log"
        self.port = free_port()
        self.settings = {"fsync": "off", "synchronous_commit": "off",
                         "full_page_writes": "off", "max_connections": "200",
                         "shared_buffers": "128MB", **(settings or {})}
        self._user: pwd.struct_passwd | None = None
        self._schemas = itertools.count(1)
        self._started = False

    def _run(self, argv: list[str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
        if self._user is not None:
            argv = ["runuser", "-u", self._user.pw_name, "--", *argv]
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                              cwd=self.tmp)

    def start(self) -> PgServer:
        """initdb and start. Raises PgServerError with the server's output."""
        initdb, pg_ctl = find_bin("initdb"), find_bin("pg_ctl")
        self.sock.mkdir()
        if os.geteuid() == 0:
            self._user = _ensure_user(RUN_AS)
            for p in (self.tmp, self.sock):
                os.chown(p, self._user.pw_uid, self._user.pw_gid)
            os.chmod(self.tmp, 0o755)
        r = self._run([initdb, "-D", str(self.data), "-U", "postgres", "--auth=trust",
                       "-E", "UTF8", "--no-sync"])
        if r.returncode:
            raise PgServerError(f"initdb failed ({r.returncode}): {r.stdout}\n{r.stderr}")
        opts = [f"-p {self.port}", "-c listen_addresses=127.0.0.1",
                f"-c unix_socket_directories={self.sock}"]
        opts += [f"-c {k}={v}" for k, v in self.settings.items()]
        r = self._run([pg_ctl, "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60",
                       "-o", " ".join(opts), "start"])
        if r.returncode:
            log = self.log.read_text(errors="replace") if self.log.exists() else ""
            raise PgServerError(f"pg_ctl start failed ({r.returncode}): {r.stdout}\n"
                                f"{r.stderr}\n{log}")
        self._started = True
        return self

    def dsn(self, dbname: str = "postgres", **options: str) -> str:
        """A libpq URL for the server over TCP (``options`` become -c settings)."""
        url = f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"
        if options:
            opts = "%20".join(f"-c%20{k}%3D{v}" for k, v in options.items())
            url += f"?options={opts}"
        return url

    def fresh_schema_dsn(self) -> str:
        """Create an empty schema and return a DSN whose tables are created in it."""
        import psycopg

        name = f"t{next(self._schemas)}"
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")
            conn.execute(f"CREATE SCHEMA {name}")
        return self.dsn(search_path=name)

    def stop(self) -> None:
        """Stop the server and delete its directory."""
        if self._started:
            self._run([find_bin("pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w",
                       "stop"], timeout=60)
            self._started = False
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self) -> PgServer:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
