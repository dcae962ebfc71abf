"""A throwaway PostgreSQL cluster a test may stop, restart and start: never the shared one on 5432.

`initdb` into a fresh directory owned by the `postgres` user (PostgreSQL refuses to run as root),
on a free loopback port, with a unix socket in its own directory; `pg_ctl` stops and starts it and
waits for it. Everything is removed afterwards.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final

BIN: Final = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))
START_ATTEMPTS: Final = 5


def _as_postgres(args: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else args


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


class Cluster:
    """One initialised data directory; `start`/`stop`/`restart` it; `url` names its `postgres` database."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.data = root / "data"
        self.log = root / "server.log"
        self.port = 0

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        argv = _as_postgres(list(args))
        return subprocess.run(argv, capture_output=True, text=True, check=check, timeout=120)  # noqa: S603 - our argv

    def init(self) -> None:
        self._run(str(BIN / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")

    def start(self) -> None:
        """Start (on a new free port the first time; the same port afterwards, so URLs stay valid)."""
        for _ in range(START_ATTEMPTS):
            port = self.port or _free_port()
            options = f"-p {port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
            done = self._run(
                str(BIN / "pg_ctl"),
                "-D",
                str(self.data),
                "-l",
                str(self.log),
                "-o",
                options,
                "-w",
                "start",
                check=False,
            )
            if done.returncode == 0:
                self.port = port
                return
            if self.port:  # our port was taken while we were down: nothing else to try
                break
        raise RuntimeError(f"pg_ctl start failed: {done.stdout}{done.stderr}{self.log.read_text()[-2000:]}")

    def stop(self, mode: str = "fast") -> None:
        self._run(str(BIN / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def restart(self, mode: str = "fast") -> None:
        self.stop(mode)
        self.start()

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"


@contextmanager
def throwaway_cluster() -> Iterator[Cluster]:
    """An initialised, started cluster; stopped (immediately) and deleted afterwards."""
    root = Path(tempfile.mkdtemp(prefix="webhook-pg-"))
    try:
        if os.geteuid() == 0:
            shutil.chown(root, "postgres", "postgres")
        cluster = Cluster(root)
        cluster.init()
        cluster.start()
        try:
            yield cluster
        finally:
            cluster._run(str(BIN / "pg_ctl"), "-D", str(cluster.data), "-m", "immediate", "-w", "stop", check=False)
    finally:
        shutil.rmtree(root, ignore_errors=True)
