"""A real PostgreSQL server for tests: a throwaway cluster from the distribution's package.

`make system` installs the package; `local_postgres()` runs `initdb` into a temporary
directory and starts the server on a free loopback port. PostgreSQL refuses to run as root,
so as root the cluster belongs to the package's `postgres` user.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def postgres_bin() -> Path:
    """The directory of `initdb` and `pg_ctl` (newest installed major version)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=_major)
    if not found:
        raise RuntimeError("PostgreSQL is not installed: run `make system` (needs apt)")
    return Path(found[-1]).parent


def _major(path: str) -> int:
    return int(Path(path).parent.parent.name)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def local_postgres() -> Iterator[str]:
    """Starts a PostgreSQL cluster; yields its DSN (superuser `everflow`, trust on loopback)."""
    bindir = postgres_bin()
    root = Path(tempfile.mkdtemp(prefix="everflow-pg-"))
    data, sockets = root / "data", root / "run"
    sockets.mkdir()
    user = None
    if os.geteuid() == 0:
        owner = pwd.getpwnam("postgres")
        os.chmod(root, 0o755)
        for path in (root, sockets):
            os.chown(path, owner.pw_uid, owner.pw_gid)
        user = "postgres"
    port = _free_port()

    def run(*args: str) -> None:
        subprocess.run(args, check=True, user=user, capture_output=True, cwd=root)

    run(str(bindir / "initdb"), "-D", str(data), "-U", "everflow", "-A", "trust", "-E", "UTF8",
        "--no-sync")
    run(str(bindir / "pg_ctl"), "-D", str(data), "-l", str(root / "server.log"), "-w",
        "-o", f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1 -c fsync=off "
              "-c max_connections=200", "start")
    try:
        yield f"postgresql://everflow@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
                       user=user, capture_output=True, cwd=root)
        shutil.rmtree(root, ignore_errors=True)
