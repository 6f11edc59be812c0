"""A real, throwaway PostgreSQL server for tests (Optuna RDB storage through psycopg 3).

    with PostgresServer() as pg:
        storage = optuna.storages.RDBStorage(pg.url)   # postgresql+psycopg://edgenas@127.0.0.1:<port>/edgenas

The server gets its own data directory under the temp dir, a free TCP port on 127.0.0.1 and its unix
socket inside that directory, so it never clashes with a system cluster. Durability is switched off
(fsync=off ...): it is for tests only.

initdb and postgres refuse to run as root. As root (CI, containers) they run as an unprivileged user:
$EDGENAS_PG_USER, else ``postgres`` (created by the Debian package), else ``nobody``; the temp directory
is handed to that user. As a normal user they run as that user.

Errors: :class:`PostgresUnavailable` means no server binaries can be had here (tests skip with its
message); :class:`PostgresStartError` means binaries exist but the server did not come up (a real
failure, do not skip). Stdlib only; psycopg is used only as a fallback to create the database.

``python tests/pgserver.py`` starts and stops a server once and prints the timings.
"""

from __future__ import annotations

import atexit
import contextlib
import getpass
import glob
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

SERVER_PROGRAMS = ("initdb", "pg_ctl", "postgres")
BIN_ENV = "EDGENAS_PG_BIN"  # explicit directory holding initdb, pg_ctl, postgres
USER_ENV = "EDGENAS_PG_USER"  # account the server runs as when we are root
REQUIRE_ENV = "EDGENAS_REQUIRE_POSTGRES"  # set (non-empty) to fail instead of skip when no server can be had
DEBIAN_PACKAGE = "postgresql"
SUPERUSER = "edgenas"
DATABASE = "edgenas"
HOST = "127.0.0.1"
# unix socket paths are limited to ~107 bytes (sun_path); longer socket dirs are left out
_MAX_SOCKET_DIR = 80

# test-only settings: nothing here needs to survive a crash
SERVER_SETTINGS: dict[str, str] = {
    "listen_addresses": f"'{HOST}'",
    "max_connections": "100",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "shared_buffers": "32MB",
    "max_wal_size": "256MB",
    "logging_collector": "off",
    "log_min_messages": "warning",
}


class PostgresError(RuntimeError):
    """Base class of the errors below."""


class PostgresUnavailable(PostgresError):
    """No PostgreSQL server binaries here and none can be installed; the message says why."""


class PostgresStartError(PostgresError):
    """The binaries exist but the throwaway server could not be set up or started."""


# ----------------------------------------------------------------------------------------- finding
def _version_key(path: Path) -> tuple[int, ...]:
    """(15,) for /usr/lib/postgresql/15/bin, (9, 6) for .../9.6/bin, (16,) for /usr/pgsql-16/bin."""
    m = re.search(r"(\d+(?:\.\d+)*)", path.parent.name if path.name == "bin" else path.name)
    return tuple(int(x) for x in m.group(1).split(".")) if m else ()


def _has_server_programs(d: Path) -> bool:
    return all(os.access(d / p, os.X_OK) and (d / p).is_file() for p in SERVER_PROGRAMS)


def _candidate_dirs() -> list[Path]:
    """Search order: $EDGENAS_PG_BIN, versioned install trees (highest version first), pg_config, PATH."""
    out: list[Path] = []
    env = os.environ.get(BIN_ENV)
    if env:
        out.append(Path(env))
    versioned: list[Path] = []
    for pattern in (
        "/usr/lib/postgresql/*/bin",  # Debian / Ubuntu
        "/usr/pgsql-*/bin",  # PGDG rpms
        "/usr/local/pgsql*/bin",  # source builds
        "/opt/homebrew/opt/postgresql@*/bin",  # Homebrew
        "/usr/local/opt/postgresql@*/bin",
        "/Applications/Postgres.app/Contents/Versions/*/bin",
    ):
        versioned.extend(Path(p) for p in glob.glob(pattern))
    out.extend(sorted(versioned, key=_version_key, reverse=True))
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            r = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=False)
            if r.returncode == 0 and r.stdout.strip():
                out.append(Path(r.stdout.strip()))
    # on PATH, e.g. /usr/local/bin/pg_ctl -> /usr/lib/postgresql/15/bin/pg_ctl: use the real directory
    # (postgres itself is usually not on PATH; Debian's /usr/bin only has wrapper scripts for clients)
    for prog in ("pg_ctl", "initdb", "postgres"):
        found = shutil.which(prog)
        if found:
            out.append(Path(found).resolve().parent)
    return out


def find_pg_bin() -> Path | None:
    """The directory holding initdb, pg_ctl and postgres (the highest installed version), or None."""
    seen: set[Path] = set()
    for d in _candidate_dirs():
        if d in seen:
            continue
        seen.add(d)
        if _has_server_programs(d):
            return d
    return None


# -------------------------------------------------------------------------------------- installing
def _is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def _install_postgres() -> tuple[Path | None, str]:
    """Find the binaries, installing the Debian package if needed and possible: (bin dir, why not)."""
    found = find_pg_bin()
    if found is not None:
        return found, ""
    apt_get = shutil.which("apt-get")
    if apt_get is None:
        return None, (
            "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found and apt-get is not available "
            f"to install them; install PostgreSQL or set ${BIN_ENV} to its bin directory"
        )
    if not _is_root():
        return None, (
            "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found and not running as root, so "
            f"cannot apt-get install {DEBIAN_PACKAGE}; run: sudo apt-get install -y {DEBIAN_PACKAGE}"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = [apt_get, "install", "-y", "-q", "--no-install-recommends", "-o", "DPkg::Lock::Timeout=300",
               DEBIAN_PACKAGE]
    update = [apt_get, "update", "-q", "-o", "DPkg::Lock::Timeout=300"]
    log: list[str] = []
    for cmds in ([install], [update, install]):  # apt-get update only if a plain install fails
        ok = True
        for cmd in cmds:
            try:
                r = subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                   timeout=900, check=False)
            except (OSError, subprocess.TimeoutExpired) as e:
                log.append(f"$ {' '.join(cmd)}: {e}")
                ok = False
                break
            if r.returncode != 0:
                tail = "\n".join((r.stdout + r.stderr).strip().splitlines()[-8:])
                log.append(f"$ {' '.join(cmd)} -> exit {r.returncode}\n{tail}")
                ok = False
                break
            if cmd is update:
                log.append("$ apt-get update -> ok")
        found = find_pg_bin()
        if found is not None:
            return found, ""
        if ok:
            log.append(f"apt-get install {DEBIAN_PACKAGE} succeeded but initdb/pg_ctl/postgres are still not found")
    return None, f"could not install the Debian package {DEBIAN_PACKAGE}:\n" + "\n".join(log)


def ensure_postgres_installed() -> Path | None:
    """The server bin directory, apt-get installing ``postgresql`` first if missing (root only); or None."""
    return _install_postgres()[0]


# ------------------------------------------------------------------------------------------ server
def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _traversable_by_others(path: Path) -> bool:
    """True when every ancestor of ``path`` can be entered by another (unprivileged) user."""
    p = path.resolve()
    for d in (p, *p.parents):
        try:
            if not d.stat().st_mode & 0o001:
                return False
        except OSError:
            return False
    return True


def _server_account() -> pwd.struct_passwd:
    """The unprivileged account initdb/postgres run as when we are root."""
    names = [os.environ[USER_ENV]] if os.environ.get(USER_ENV) else ["postgres", "nobody"]
    for name in names:
        try:
            pw = pwd.getpwnam(name)
        except KeyError:
            continue
        if pw.pw_uid != 0:
            return pw
    raise PostgresUnavailable(
        f"running as root and none of the accounts {names} exists (initdb/postgres refuse to run as root); "
        f"create an unprivileged user and set ${USER_ENV}"
    )


class PostgresServer:
    """A throwaway PostgreSQL cluster: ``with PostgresServer() as pg: ... pg.url ...``.

    ``start()`` installs (root + apt-get only) if needed, runs initdb, starts the server and creates the
    database; ``stop()`` shuts it down (pg_ctl stop -m fast) and deletes the directory. ``timings`` holds
    the seconds each step took.
    """

    def __init__(self, parent_dir: str | os.PathLike[str] | None = None, *, dbname: str = DATABASE,
                 user: str = SUPERUSER, settings: dict[str, str] | None = None) -> None:
        self.parent_dir = Path(parent_dir) if parent_dir is not None else None
        self.dbname = dbname
        self.user = user
        self.settings = {**SERVER_SETTINGS, **(settings or {})}
        self.host = HOST
        self.port = 0
        self.bin_dir: Path | None = None
        self.base_dir: Path | None = None
        self.timings: dict[str, float] = {}
        self._account: pwd.struct_passwd | None = None
        self._running = False

    # ---- public surface
    @property
    def url(self) -> str:
        """SQLAlchemy URL for Optuna's RDBStorage (psycopg 3 driver)."""
        return f"postgresql+psycopg://{self.user}@{self.host}:{self.port}/{self.dbname}"

    @property
    def dsn(self) -> str:
        """libpq connection string, for psycopg.connect() directly."""
        return f"host={self.host} port={self.port} user={self.user} dbname={self.dbname}"

    @property
    def data_dir(self) -> Path:
        assert self.base_dir is not None, "server not started"
        return self.base_dir / "data"

    @property
    def log_path(self) -> Path:
        assert self.base_dir is not None, "server not started"
        return self.base_dir / "server.log"

    def __enter__(self) -> PostgresServer:
        return self if self._running else self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def start(self) -> PostgresServer:
        if self.base_dir is not None:
            raise PostgresStartError("this PostgresServer is already started")
        t0 = time.perf_counter()
        bin_dir, why = _install_postgres()
        if bin_dir is None:
            raise PostgresUnavailable(why)
        self.bin_dir = bin_dir
        self._account = _server_account() if _is_root() else None
        self.timings["find_or_install"] = time.perf_counter() - t0
        self._make_base_dir()
        atexit.register(self.stop)
        try:
            self._initdb()
            self._start_server()
            self._create_database()
        except BaseException:
            self.stop()
            raise
        self.timings["start_total"] = time.perf_counter() - t0
        return self

    def is_running(self) -> bool:
        """Whether the postmaster of this cluster is alive (pg_ctl status)."""
        if self.bin_dir is None or self.base_dir is None or not self.data_dir.is_dir():
            return False
        r = self._run([str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "status"], check=False)
        return r.returncode == 0

    def stop(self) -> None:
        """Stop the server (fast shutdown) and delete its directory. Safe to call more than once."""
        atexit.unregister(self.stop)
        t0 = time.perf_counter()
        if self._running and self.bin_dir is not None:
            pg_ctl = str(self.bin_dir / "pg_ctl")
            r = self._run([pg_ctl, "-D", str(self.data_dir), "-m", "fast", "-w", "-t", "30", "stop"], check=False)
            if r.returncode != 0 and self.is_running():
                self._run([pg_ctl, "-D", str(self.data_dir), "-m", "immediate", "-w", "-t", "30", "stop"],
                          check=False)
            self._running = False
        self.timings["stop"] = time.perf_counter() - t0
        if self.base_dir is not None:
            shutil.rmtree(self.base_dir, ignore_errors=True)
            self.base_dir = None

    # ---- steps
    def _make_base_dir(self) -> None:
        parent = self.parent_dir or Path(tempfile.gettempdir())
        if self._account is not None and not _traversable_by_others(parent):
            # e.g. pytest's /tmp/pytest-of-root (0700): the server account could not reach its data dir
            parent = Path("/tmp")
        parent.mkdir(parents=True, exist_ok=True)
        self.base_dir = Path(tempfile.mkdtemp(prefix="edgenas-pg-", dir=parent))
        if self._account is not None:
            os.chown(self.base_dir, self._account.pw_uid, self._account.pw_gid)

    def _initdb(self) -> None:
        assert self.bin_dir is not None
        t0 = time.perf_counter()
        self._run([str(self.bin_dir / "initdb"), "-D", str(self.data_dir), "-U", self.user, "-A", "trust",
                   "-E", "UTF8", "--locale=C", "--no-sync"], what="initdb")
        sock_dir = str(self.base_dir)
        settings = {**self.settings,
                    "unix_socket_directories": f"'{sock_dir}'" if len(sock_dir) <= _MAX_SOCKET_DIR else "''"}
        # appending keeps the file's owner (the server account when we are root)
        with open(self.data_dir / "postgresql.conf", "a", encoding="utf-8") as f:
            f.write("\n# edgenas test server\n")
            f.writelines(f"{k} = {v}\n" for k, v in settings.items())
        self.timings["initdb"] = time.perf_counter() - t0

    def _start_server(self) -> None:
        assert self.bin_dir is not None
        t0 = time.perf_counter()
        last = ""
        for _attempt in range(5):  # the free port can be taken between probing and binding: retry
            self.port = _free_port()
            r = self._run([str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-l", str(self.log_path),
                           "-o", f"-p {self.port}", "-w", "-t", "30", "start"], check=False)
            if r.returncode == 0:
                self._running = True
                self.timings["pg_ctl_start"] = time.perf_counter() - t0
                return
            last = self._describe_failure("pg_ctl start", r)
            if self.is_running():  # timed out but alive: do not leave it behind
                self._running = True
                break
            if "could not bind" not in last and "already in use" not in last and "could not create" not in last:
                break
        raise PostgresStartError(last)

    def _create_database(self) -> None:
        assert self.bin_dir is not None
        t0 = time.perf_counter()
        createdb = self.bin_dir / "createdb"
        if not os.access(createdb, os.X_OK):
            found = shutil.which("createdb")
            createdb = Path(found) if found else createdb
        if os.access(createdb, os.X_OK):
            self._run([str(createdb), "-h", self.host, "-p", str(self.port), "-U", self.user, self.dbname],
                      what="createdb", as_server=False)
        else:
            try:
                import psycopg  # optional fallback, only when createdb is missing
            except ImportError as e:
                raise PostgresStartError("neither the createdb program nor psycopg is available") from e
            dsn = f"host={self.host} port={self.port} user={self.user} dbname=postgres"
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{self.dbname}"')
        self.timings["createdb"] = time.perf_counter() - t0

    # ---- process helpers
    def _run(self, cmd: Sequence[str], *, what: str = "", check: bool = True,
             as_server: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a PostgreSQL program, as the server account when we are root."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}  # no stray PGDATA/PGPORT/...
        kwargs: dict[str, object] = {}
        if as_server and self._account is not None:
            acc = self._account
            kwargs = {"user": acc.pw_uid, "group": acc.pw_gid, "extra_groups": []}
            env.update(HOME=str(self.base_dir), USER=acc.pw_name, LOGNAME=acc.pw_name)
        try:
            # cwd: programs run as another user fail on an unreadable cwd (e.g. /root)
            r = subprocess.run(list(cmd), env=env, cwd=self.base_dir, stdin=subprocess.DEVNULL,
                               capture_output=True, text=True, timeout=120, check=False, **kwargs)  # type: ignore[call-overload]
        except (OSError, subprocess.SubprocessError) as e:
            raise PostgresStartError(f"{what or cmd[0]}: could not run {' '.join(cmd)}: {e}") from e
        if check and r.returncode != 0:
            raise PostgresStartError(self._describe_failure(what or Path(cmd[0]).name, r))
        return r

    def _describe_failure(self, what: str, r: subprocess.CompletedProcess[str]) -> str:
        who = f" (as user {self._account.pw_name})" if self._account is not None else ""
        parts = [f"{what} failed with exit code {r.returncode}{who}: {' '.join(map(str, r.args))}"]
        out = (r.stdout + r.stderr).strip()
        if out:
            parts.append(out)
        if self.base_dir is not None and self.log_path.is_file():
            log_tail = "\n".join(self.log_path.read_text(errors="replace").strip().splitlines()[-15:])
            if log_tail:
                parts.append(f"server log ({self.log_path}):\n{log_tail}")
        return "\n".join(parts)


def start_server(parent_dir: str | os.PathLike[str] | None = None) -> PostgresServer:
    """Start a throwaway server (call ``.stop()`` when done)."""
    return PostgresServer(parent_dir).start()


def start_for_pytest(parent_dir: str | os.PathLike[str] | None = None) -> PostgresServer:
    """start_server() for fixtures: skips the test with the reason when no PostgreSQL can be had here
    (fails instead when $EDGENAS_REQUIRE_POSTGRES is set); a server that exists but fails to start fails."""
    import pytest  # only needed here

    try:
        return start_server(parent_dir)
    except PostgresUnavailable as e:
        if os.environ.get(REQUIRE_ENV):
            pytest.fail(f"${REQUIRE_ENV} is set but no PostgreSQL server is available: {e}", pytrace=False)
        pytest.skip(f"no PostgreSQL server available: {e}")


if __name__ == "__main__":
    t = time.perf_counter()
    with PostgresServer() as pg:
        print(f"bin={pg.bin_dir} url={pg.url} running as {pg._account.pw_name if pg._account else getpass.getuser()}")
        started = time.perf_counter() - t
    print(f"start {started:.2f}s, stop {pg.timings['stop']:.2f}s, total {time.perf_counter() - t:.2f}s; {pg.timings}")
