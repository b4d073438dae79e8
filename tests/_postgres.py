"""A throwaway PostgreSQL cluster for the tests: Debian's ``postgresql`` binaries (``make postgres``),
``initdb`` into a fresh directory, the server on a free loopback port, stopped at the end.

Postgres refuses to run as root: when the tests run as root, the cluster's directory is given
to the ``postgres`` account the Debian package creates and its commands run as that account.
Local (unix socket) connections are trusted, for setting up; TCP ones need a password
(``scram-sha-256``), as Lakebase's do.

    with PostgresCluster.start() as pg:
        pg.sql("CREATE ROLE app LOGIN PASSWORD 'secret'")
        url = pg.url("app")      # postgresql+psycopg://app@127.0.0.1:<port>/postgres
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from _ports import free_port

__all__ = ["PostgresCluster", "bin_dir"]


def bin_dir() -> Path | None:
    """Where ``initdb`` and ``pg_ctl`` are: Debian keeps them off PATH, per major version."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[4]))
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("initdb")
    return Path(on_path).parent if on_path else None


class PostgresCluster:
    def __init__(self, bindir: Path, root: Path, port: int, run_as: str | None) -> None:
        self.bindir, self.root, self.port, self.run_as = bindir, root, port, run_as
        self.data, self.sockets = root / "data", root / "sockets"

    @classmethod
    def start(cls) -> PostgresCluster:
        bindir = bin_dir()
        if bindir is None:
            raise RuntimeError("PostgreSQL is not installed: run `make postgres` (Debian's postgresql package)")
        run_as = "postgres" if os.geteuid() == 0 else None
        root = Path(tempfile.mkdtemp(prefix="pytest-pg-"))  # not under pytest's 0700 root-only tree
        cluster = cls(bindir, root, free_port(), run_as)
        cluster.sockets.mkdir()
        if run_as:
            account = pwd.getpwnam(run_as)
            for path in (root, cluster.sockets):
                os.chown(path, account.pw_uid, account.pw_gid)
        cluster._run("initdb", "-D", str(cluster.data), "-U", "postgres", "--auth-local=trust",
                     "--auth-host=scram-sha-256", "--no-sync", "-E", "UTF8", "--locale=C.UTF-8")
        options = (f"-c listen_addresses=127.0.0.1 -c port={cluster.port} -c unix_socket_directories={cluster.sockets} "
                   "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=50")
        cluster._run("pg_ctl", "-D", str(cluster.data), "-l", str(root / "server.log"), "-w", "-t", "60",
                     "-o", options, "start")
        return cluster

    def _run(self, tool: str, *args: str) -> str:
        done = subprocess.run([str(self.bindir / tool), *args], capture_output=True, text=True, timeout=120,
                              user=self.run_as, cwd=self.root)
        if done.returncode != 0:
            raise RuntimeError(f"{tool} failed ({done.returncode}): {done.stderr[-2000:]}")
        return done.stdout

    def sql(self, statement: str, database: str = "postgres") -> Any:
        """Run one statement as the superuser, over the (trusted) unix socket."""
        import psycopg

        with psycopg.connect(host=str(self.sockets), port=self.port, user="postgres", dbname=database,
                             autocommit=True) as conn:
            cur = conn.execute(statement)  # type: ignore[arg-type]
            return cur.fetchall() if cur.description else None

    def url(self, user: str, database: str = "postgres", password: str | None = None) -> str:
        auth = f"{user}:{password}" if password else user
        return f"postgresql+psycopg://{auth}@127.0.0.1:{self.port}/{database}"

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> PostgresCluster:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()
