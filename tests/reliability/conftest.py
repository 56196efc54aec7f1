"""A throw-away PostgreSQL server for the multi-worker tests (Debian package ``postgresql``).

The server runs from the package's own binaries on 127.0.0.1 with a free port, ``trust`` auth and
a temporary data directory, as the ``postgres`` user when the tests run as root (PostgreSQL
refuses to run as root). Tests using ``postgres_url`` skip, saying why, where that is impossible.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile

import pytest


def _binaries() -> str | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return os.path.dirname(found[-1]) if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def _postgres_server():
    pytest.importorskip("psycopg2", reason="psycopg2 is not installed (pip install -e '.[dev]')")
    bindir = _binaries()
    if bindir is None:
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql; .ci/run tries)")
    as_user: list[str] = []
    if os.geteuid() == 0:
        runuser = shutil.which("runuser")
        try:
            import pwd

            pwd.getpwnam("postgres")
        except KeyError:
            runuser = None
        if runuser is None:
            pytest.skip("running as root without a 'postgres' user or runuser to drop to")
        as_user = [runuser, "-u", "postgres", "--"]
    root = tempfile.mkdtemp(prefix="convnas-pg-")
    data = os.path.join(root, "data")
    if as_user:
        shutil.chown(root, "postgres", "postgres")
    port = _free_port()

    def pg(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*as_user, *args], capture_output=True, text=True, timeout=timeout, cwd=root
        )

    try:
        out = pg(f"{bindir}/initdb", "-D", data, "-U", "postgres", "-A", "trust", "-E", "UTF8")
        if out.returncode != 0:
            pytest.skip(f"initdb failed: {out.stderr.strip()[-500:]}")
        options = f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories='' -F"
        out = pg(f"{bindir}/pg_ctl", "-D", data, "-o", options, "-l", f"{root}/log", "-w", "start")
        if out.returncode != 0:
            pytest.skip(f"PostgreSQL did not start: {out.stdout.strip()[-500:]}")
        yield port
    finally:
        pg(f"{bindir}/pg_ctl", "-D", data, "-m", "immediate", "-w", "stop")
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def postgres_url(_postgres_server, request):
    """A fresh database on the test server, as an SQLAlchemy URL."""
    import psycopg2

    name = "t_" + "".join(c if c.isalnum() else "_" for c in request.node.name.lower())[:50]
    conn = psycopg2.connect(host="127.0.0.1", port=_postgres_server, user="postgres")
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {name}")
            cur.execute(f"CREATE DATABASE {name}")
    finally:
        conn.close()
    return f"postgresql+psycopg2://postgres@127.0.0.1:{_postgres_server}/{name}"
