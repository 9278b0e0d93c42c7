"""A throwaway PostgreSQL 15 cluster for the collector's PostgreSQL tests: Debian's initdb/pg_ctl
(/usr/lib/postgresql/15/bin), run as the unprivileged `postgres` user (PostgreSQL refuses to run
as root), data and unix socket in a fresh directory under /tmp (pytest's tmp_path is 0700 root,
which the postgres user cannot enter). No TCP listener: only the socket, so parallel test runs
never collide; the port only names the socket file. Start it once per test module."""

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from conftest import free_port

PG_BIN = Path(os.environ.get("ET_PG_BIN", "/usr/lib/postgresql/15/bin"))


def _as_postgres(*cmd, **kw):
    if os.geteuid() == 0:
        cmd = ("runuser", "-u", "postgres", "--", *cmd)
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


class PgCluster:
    def __init__(self):
        self.dir = Path(tempfile.mkdtemp(prefix="etpg-"))
        self.data = self.dir / "data"
        self.sock = self.dir / "sock"
        self.port = free_port()
        self.log = self.dir / "postgres.log"

    def available(self):
        return (PG_BIN / "initdb").exists() and shutil.which("runuser") is not None

    def init(self):
        self.sock.mkdir()
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
            shutil.chown(self.sock, "postgres", "postgres")
        r = _as_postgres(str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust",
                         "--no-sync", "-E", "UTF8", timeout=120)
        assert r.returncode == 0, r.stderr
        with open(self.data / "postgresql.conf", "a") as f:
            # fsync stays on: the tests check what a COMMIT promises
            f.write(f"listen_addresses = ''\nunix_socket_directories = '{self.sock}'\nport = {self.port}\n"
                    "max_connections = 60\nshared_buffers = 32MB\n")
        return self

    def enable_tls(self):
        """Also listen on 127.0.0.1 (TCP, this cluster's port) and accept TCP connections over TLS
        only (hostssl; hostnossl is rejected), with a fresh self-signed certificate for
        127.0.0.1 that is its own CA: a client with `sslmode=verify-full&sslrootcert=<self.ca>`
        proves it speaks TLS and verifies the server. Call between init() and start()."""
        self.ca = self.dir / "server.crt"
        key = self.data / "server.key"
        r = subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                            "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                            "-keyout", str(key), "-out", str(self.ca)], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        shutil.copy(self.ca, self.data / "server.crt")
        os.chmod(key, 0o600)
        os.chmod(self.ca, 0o644)
        if os.geteuid() == 0:
            for f in (key, self.data / "server.crt"):
                shutil.chown(f, "postgres", "postgres")
        with open(self.data / "postgresql.conf", "a") as f:
            f.write("listen_addresses = '127.0.0.1'\nssl = on\n")
        with open(self.data / "pg_hba.conf", "w") as f:
            f.write("local all all trust\nhostssl all all 127.0.0.1/32 trust\nhostnossl all all 0.0.0.0/0 reject\n")
        return self

    def tcp_url(self, db, params=""):
        return f"postgresql://postgres@127.0.0.1:{self.port}/{db}" + (f"?{params}" if params else "")

    def start(self):
        r = _as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60",
                         "start", timeout=90)
        assert r.returncode == 0, r.stderr + (self.log.read_text() if self.log.exists() else "")
        return self

    def stop(self, mode="fast"):
        _as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop", timeout=90)

    def createdb(self, name):
        r = _as_postgres(str(PG_BIN / "createdb"), "-h", str(self.sock), "-p", str(self.port), name, timeout=60)
        assert r.returncode == 0, r.stderr
        return self.url(name)

    def url(self, db):
        return f"postgresql://postgres@/{db}?host={self.sock}&port={self.port}"

    def sql(self, db, query):
        """Rows of a query as lists of strings (psql, unaligned, tab-separated)."""
        r = subprocess.run(["psql", "-X", "-q", "-A", "-t", "-F", "\t", "-v", "ON_ERROR_STOP=1", "-d", self.url(db),
                            "-c", query], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        return [line.split("\t") for line in r.stdout.splitlines() if line]

    def cleanup(self):
        self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)


# ---- both backends for the store/API tests ---------------------------------------------------------------

BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture(scope="module")
def pg_cluster():
    """One PostgreSQL cluster per test module, started only when a test asks for the postgresql backend."""
    c = PgCluster()
    if not c.available():
        pytest.fail("PostgreSQL 15 server binaries not found (tools/setup.sh installs postgresql)")
    c.init().start()
    yield c
    c.cleanup()


def backend_db(request, workdir, backend=None):
    """The `--db` for BACKEND (default: the param of a fixture parametrized over BACKENDS): a SQLite file in
    workdir, or a fresh database on the module's PostgreSQL cluster."""
    if (backend or request.param) == "sqlite":
        return workdir / "collector.db"
    name = "et_" + "".join(c for c in workdir.name if c.isalnum())[-40:]  # PostgreSQL names: 63 bytes at most
    return request.getfixturevalue("pg_cluster").createdb(name)
