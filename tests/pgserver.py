"""A throwaway PostgreSQL server for the tests: started in a temporary folder, stopped and removed at the end.

The registry suite runs against SQLite and against a real PostgreSQL server. Rather than depend on a server
someone else runs (and its state), each test session starts its own:

* ``initdb`` a fresh cluster (trust authentication, superuser ``augledger``, UTF8, ``--no-locale`` so nothing
  depends on the machine's locales) in a new folder under ``/dev/shm`` (when roomy) or ``/tmp``;
* start it with ``pg_ctl``, listening only on 127.0.0.1 on a free port, its unix socket inside that folder
  (never ``/var/run/postgresql``), with durability switched off (``fsync=off``): a crash loses nothing we need;
* hand out one new database per test (:meth:`PostgresServer.new_database`);
* stop it (``pg_ctl stop -m immediate``) and delete the folder, also when a test failed.

Under pytest-xdist every worker starts its own server: the folders come from ``tempfile.mkdtemp`` and the ports
from the kernel (binding port 0), so two workers never share either; a port taken by someone else between our
probe and the server's bind is retried with another one.

PostgreSQL refuses to run as root. When the tests run as root (containers, CI), ``initdb`` and ``pg_ctl`` run as
the ``postgres`` system user (or ``nobody`` where there is none) and the server folder is chowned to that user.

Start-up time, measured on the development VM (PostgreSQL 15.18, Debian 12, 2 CPUs, running as root, cluster in
/dev/shm): ``initdb`` 0.85-1.0 s, then ``pg_ctl start`` until a psycopg connection succeeds 0.13-0.4 s: about
1.0-1.4 s per server, paid once per xdist worker. Per test, ``new_database`` takes 20-40 ms and dropping it
10-20 ms; stopping and removing the server 0.1-0.2 s. (With the cluster under /tmp on the VM's ext4 disk,
CREATE DATABASE took 200-500 ms instead: see :func:`default_base_dir`.)
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import itertools
import os
import pwd
import re
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any

#: The programs a server needs; :func:`find_pg_bin` looks for a folder holding all three.
PG_PROGRAMS = ("initdb", "pg_ctl", "postgres")

#: The cluster's superuser (initdb ``-U``); trust authentication, so no password.
SUPERUSER = "augledger"

#: How long to wait for the server to accept connections before giving up, in seconds.
START_TIMEOUT_S = 30.0

#: /dev/shm is used for the cluster only when it has at least this much free space (Docker's default is 64 MiB).
_SHM_MIN_FREE = 1 << 30

#: Settings appended to the cluster's postgresql.conf. Speed over durability: the cluster lives for one session.
_SERVER_SETTINGS = {
    "listen_addresses": "'127.0.0.1'",  # TCP on loopback only; never reachable from elsewhere
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "shared_buffers": "16MB",  # the default 128MB is more than a test needs
    "wal_level": "minimal",  # no replication: less WAL to write (needs max_wal_senders = 0)
    "max_wal_senders": "0",
    "max_wal_size": "64MB",  # keeps the cluster small (it may live in /dev/shm, i.e. in memory)
    "log_min_messages": "warning",
    "logging_collector": "off",  # the log goes to the file pg_ctl -l names (tailed in error messages)
}


def _has_programs(folder: Path) -> bool:
    return all(os.access(folder / name, os.X_OK) for name in PG_PROGRAMS)


def _version_key(path: str) -> tuple[int, ...]:
    """Sort key for /usr/lib/postgresql/<version>/bin: numeric versions (9.6 < 10 < 15 < 16)."""
    version = Path(path).parent.name
    return tuple(int(part) for part in re.findall(r"\d+", version)) or (-1,)


def find_pg_bin() -> Path | None:
    """The folder holding ``initdb``, ``pg_ctl`` and ``postgres``, or None when PostgreSQL is not installed.

    Looks on PATH first (``initdb`` is not on PATH in a plain Debian/Ubuntu install, where ``/usr/bin`` only has
    the pg_wrapper scripts; the real programs are in ``/usr/lib/postgresql/<version>/bin``), then in those
    version folders, newest version first. A program on PATH that is a symlink (``/usr/local/bin/initdb ->
    /usr/lib/postgresql/15/bin/initdb``) is followed to its real folder, where the three always sit together.
    """
    on_path = shutil.which("initdb")
    if on_path is not None:
        for folder in (Path(on_path).resolve().parent, Path(on_path).parent):
            if _has_programs(folder):
                return folder
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version_key, reverse=True):
        if _has_programs(Path(candidate)):
            return Path(candidate)
    return None


def _free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now (the kernel's pick for port 0).

    Another process may take it before the server binds it; :meth:`PostgresServer.start` retries then.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def default_base_dir() -> Path:
    """Where to create the server's folder: /dev/shm when it is a roomy tmpfs, else /tmp.

    Creating files is what a cluster mostly does (initdb, and CREATE DATABASE copies template1's ~300 files),
    and on a disk it can be slow: on the development VM (ext4) a CREATE DATABASE took 200-500 ms under /tmp
    against ~25 ms in /dev/shm. Both are world-traversable sticky folders, so an unprivileged server user can
    reach a folder of its own in either. A small /dev/shm (Docker gives 64 MiB) is not used: the cluster alone
    is ~40 MB and would run out of space.
    """
    shm = Path("/dev/shm")
    with contextlib.suppress(OSError):
        mode = shm.stat().st_mode
        if (
            stat.S_ISDIR(mode)
            and mode & stat.S_ISVTX
            and os.access(shm, os.W_OK | os.X_OK)
            and shutil.disk_usage(shm).free >= _SHM_MIN_FREE
        ):
            return shm
    return Path("/tmp")


def _unprivileged_user() -> pwd.struct_passwd | None:
    """The user to run PostgreSQL as: None when we are not root, else ``postgres`` (or ``nobody``)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise RuntimeError("running as root and there is neither a 'postgres' nor a 'nobody' user to run PostgreSQL as")


class PostgresServer:
    """A PostgreSQL server of its own in a temporary folder; use it as a context manager.

    ::

        with PostgresServer() as server:
            engine = sqlalchemy.create_engine(server.new_database("t1"))

    ``base_dir`` is where the server's folder is created (default: :func:`default_base_dir`, /dev/shm or /tmp).
    When running as root the server runs as an unprivileged user, who must be able to traverse every parent of
    ``base_dir``; that is why it is not pytest's ``tmp_path_factory``, whose folders under /tmp may be 0700 root.
    """

    def __init__(self, base_dir: str | Path | None = None, bin_dir: Path | None = None) -> None:
        found = bin_dir if bin_dir is not None else find_pg_bin()
        if found is None:
            raise RuntimeError("PostgreSQL's initdb/pg_ctl/postgres were not found (run `make postgres`)")
        self.bin_dir = found
        self.base_dir = Path(base_dir) if base_dir is not None else default_base_dir()
        self.user = _unprivileged_user()
        self.root: Path | None = None  # the server's folder: data/, socket/, postgres.log
        self.port: int | None = None
        self._running = False
        self._db_counter = itertools.count(1)

    # -- paths ----------------------------------------------------------------------------------------------------
    def _dir(self) -> Path:
        if self.root is None:
            raise RuntimeError("the server has not been started")
        return self.root

    @property
    def data_dir(self) -> Path:
        return self._dir() / "data"

    @property
    def socket_dir(self) -> Path:
        return self._dir() / "socket"

    @property
    def log_file(self) -> Path:
        return self._dir() / "postgres.log"

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the server's ``postgres`` database (the maintenance database)."""
        return self.database_url("postgres")

    def database_url(self, name: str) -> str:
        if self.port is None:
            raise RuntimeError("the server has not been started")
        return f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{self.port}/{name}"

    # -- running programs -------------------------------------------------------------------------------------------
    def _env(self) -> dict[str, str]:
        # No PG* variable of the caller's (PGDATA, PGPORT, PGHOST...) may steer initdb/pg_ctl elsewhere; C locale.
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env.update(LC_ALL="C", LANG="C")
        if self.user is not None:
            env.update(HOME=str(self._dir()), USER=self.user.pw_name, LOGNAME=self.user.pw_name)
        return env

    def _run(self, program: str, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        """Run one of PostgreSQL's programs (as the unprivileged user when we are root); output captured."""
        extra: dict[str, Any] = {}
        if self.user is not None:
            # subprocess switches user between fork and exec (setgroups, setgid, setuid): no runuser/sudo needed.
            extra = {"user": self.user.pw_uid, "group": self.user.pw_gid, "extra_groups": []}
        return subprocess.run(
            [str(self.bin_dir / program), *args],
            cwd=self._dir(),
            env=self._env(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            **extra,
        )

    def _log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_file.read_text(errors="replace")
        except OSError as exc:
            return f"(no server log: {exc})"
        return "\n".join(text.splitlines()[-lines:]) or "(the server log is empty)"

    # -- life cycle -----------------------------------------------------------------------------------------------
    def _make_root(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="augledger-pg-", dir=self.base_dir))
        self.socket_dir.mkdir()
        if self.user is not None:
            # The unprivileged user owns the whole folder (initdb creates data/, the server writes the log and
            # its socket) and must reach it: every parent needs the execute bit for others.
            for parent in self.root.parents:
                if not parent.stat().st_mode & stat.S_IXOTH:
                    raise RuntimeError(
                        f"{parent} is not traversable by the user {self.user.pw_name!r} PostgreSQL runs as; "
                        "pass a base_dir under /tmp or /dev/shm"
                    )
            for path in (self.root, self.socket_dir):
                os.chown(path, self.user.pw_uid, self.user.pw_gid)
        self.root.chmod(0o700)

    def start(self) -> PostgresServer:
        """initdb, start and wait until the server accepts connections; on any failure, clean up and raise."""
        if self._running:
            return self
        try:
            self._make_root()
            self._initdb()
            self._start_server()
        except BaseException:
            self.stop()
            raise
        return self

    def _initdb(self) -> None:
        result = self._run(
            "initdb",
            "-D", str(self.data_dir),
            "-U", SUPERUSER,
            "--auth=trust",
            "--no-locale",
            "-E", "UTF8",
            "--no-sync",  # nothing to flush to disk for a throwaway cluster
        )  # fmt: skip
        if result.returncode != 0:
            raise RuntimeError(f"initdb failed (exit {result.returncode}):\n{result.stdout}\n{result.stderr}")
        # Appended as the last lines of postgresql.conf, so they win over initdb's. Opened in append mode the
        # file keeps its owner (the unprivileged user) even when we write it as root.
        settings = dict(_SERVER_SETTINGS, unix_socket_directories=f"'{self.socket_dir}'")
        with open(self.data_dir / "postgresql.conf", "a", encoding="utf-8") as conf:
            conf.write("\n# augledger tests (tests/pgserver.py)\n")
            conf.writelines(f"{key} = {value}\n" for key, value in settings.items())

    def _start_server(self, attempts: int = 5) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        for attempt in range(1, attempts + 1):
            self.port = _free_port()
            # -w: pg_ctl waits until the server reports ready, and notices if it exits on the way (bad port,
            # bad setting); -l: the server's log, tailed in error messages.
            remaining = max(1, int(deadline - time.monotonic()))
            result = self._run(
                "pg_ctl", "start", "-w", "-t", str(remaining), "-D", str(self.data_dir), "-l", str(self.log_file),
                "-o", f"-p {self.port}",
                timeout=remaining + 10,
            )  # fmt: skip
            if result.returncode == 0:
                self._running = True
                # Safety net: a session that ends without running the fixture's teardown still stops it.
                atexit.register(self.stop)
                break
            log = self._log_tail()
            port_taken = "could not bind" in log or "could not create any TCP/IP sockets" in log
            if port_taken and attempt < attempts and time.monotonic() < deadline:
                continue  # someone took the port between _free_port() and the server's bind: try another
            raise RuntimeError(
                f"PostgreSQL did not start (pg_ctl exit {result.returncode}) in {self._dir()}:\n"
                f"{result.stdout}{result.stderr}\n--- server log (tail) ---\n{log}"
            )
        self._wait_until_accepting(deadline)

    def _wait_until_accepting(self, deadline: float) -> None:
        """Connect over TCP with psycopg until it works: the proof that tests can reach the server."""
        import psycopg

        last_error: Exception | None = None
        while time.monotonic() < deadline:
            try:
                with psycopg.connect(self._conninfo("postgres"), connect_timeout=2) as conn:
                    conn.execute("SELECT 1")
                return
            except psycopg.OperationalError as exc:
                last_error = exc
                time.sleep(0.05)
        raise RuntimeError(
            f"PostgreSQL on 127.0.0.1:{self.port} did not accept connections within {START_TIMEOUT_S:.0f} s: "
            f"{last_error}\n--- server log (tail) ---\n{self._log_tail()}"
        )

    def _conninfo(self, dbname: str) -> str:
        return f"host=127.0.0.1 port={self.port} user={SUPERUSER} dbname={dbname}"

    def _kill_postmaster(self) -> None:
        """Last resort when pg_ctl stop fails: SIGKILL the postmaster named in postmaster.pid."""
        with contextlib.suppress(OSError, ValueError, IndexError):
            pid = int((self.data_dir / "postmaster.pid").read_text().split()[0])
            os.kill(pid, signal.SIGKILL)

    def stop(self) -> None:
        """Stop the server (immediate shutdown: nothing to save) and delete its folder. Safe to call twice."""
        atexit.unregister(self.stop)
        if self.root is None:
            return
        if self._running:
            self._running = False
            try:
                result = self._run("pg_ctl", "stop", "-m", "immediate", "-w", "-t", "30", "-D", str(self.data_dir))
                if result.returncode != 0:
                    self._kill_postmaster()
            except subprocess.TimeoutExpired:
                self._kill_postmaster()
        shutil.rmtree(self.root, ignore_errors=True)
        self.root = None

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- databases ------------------------------------------------------------------------------------------------
    def _admin(self, statement: Any) -> None:
        """Run one statement in the ``postgres`` database outside a transaction (CREATE/DROP DATABASE need that)."""
        import psycopg

        with psycopg.connect(self._conninfo("postgres"), autocommit=True) as conn:
            conn.execute(statement)

    def new_database(self, name: str) -> str:
        """CREATE DATABASE ``name`` (empty, a copy of template1, owned by the superuser); its SQLAlchemy URL."""
        import psycopg
        from psycopg import sql

        with psycopg.connect(self._conninfo("postgres"), autocommit=True) as conn:
            statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
            if conn.info.server_version >= 150000:
                # PostgreSQL 15's default (WAL_LOG) writes the whole template through the WAL: ~30 ms a database
                # here against ~18 ms for copying its files (the old way), with fsync off nothing to flush.
                statement = sql.SQL("{} STRATEGY FILE_COPY").format(statement)
            conn.execute(statement)
        return self.database_url(name)

    def drop_database(self, name: str) -> None:
        """DROP DATABASE ``name``, closing whatever connections to it are still open (PostgreSQL 13+)."""
        from psycopg import sql

        self._admin(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    def unique_name(self, hint: str = "") -> str:
        """A database name no other call on this server returned: ``t<N>_<hint>``, lower case, <= 63 bytes."""
        slug = re.sub(r"[^a-z0-9]+", "_", hint.lower()).strip("_")
        return f"t{next(self._db_counter)}_{slug}"[:63].rstrip("_")
