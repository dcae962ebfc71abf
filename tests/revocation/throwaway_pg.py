"""A PostgreSQL cluster of a test's own (initdb into a temp dir, a free loopback port), to stop and
start for outages. Never the machine's shared cluster."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from webhook.testing.serveproc import free_port


def _bin(name: str) -> str:
    found = shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None)
    if found is None:
        raise RuntimeError(f"{name} not found (PostgreSQL server binaries)")
    return found


def _as_postgres(*command: str) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else list(command)


@dataclass
class Cluster:
    data: Path
    port: int

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.data}"
        command = [_bin("pg_ctl"), "-D", str(self.data), "-o", options, "-l", str(self.data / "log"), "-w", "start"]
        subprocess.run(_as_postgres(*command), check=True, capture_output=True)  # noqa: S603

    def stop(self) -> None:
        command = [_bin("pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop"]
        subprocess.run(_as_postgres(*command), check=True, capture_output=True)  # noqa: S603


@contextlib.contextmanager
def throwaway_cluster() -> Iterator[Cluster]:
    """A fresh running cluster in a temp dir of its own (the user postgres must reach it: pytest's are
    private to root), trust auth on loopback; stopped and removed after."""
    parent = Path(tempfile.mkdtemp(prefix="revocation-pg-"))
    data = parent / "pgdata"
    data.mkdir()
    if os.geteuid() == 0:
        shutil.chown(parent, "postgres")
        shutil.chown(data, "postgres")
    init = [_bin("initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8"]
    subprocess.run(_as_postgres(*init), check=True, capture_output=True)  # noqa: S603
    cluster = Cluster(data, free_port())
    cluster.start()
    try:
        yield cluster
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):
            cluster.stop()
        shutil.rmtree(parent, ignore_errors=True)
