"""`webhook serve` as a real subprocess on loopback: replicas for the revocation tests and benchmarks.

Rules of this module:
- Each replica is `python -m webhook serve --host 127.0.0.1 --port <free>` with the given environment,
  its output in a log file; started in its own process group and ended by that group's id (SIGTERM,
  then SIGKILL after a bound), never by name.
- `wait_ready()` polls `/readyz` until the revocations are loaded, on a bounded deadline (a child
  process's readiness has nothing to await).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import httpx

READY_SECONDS: Final = 60.0
STOP_SECONDS: Final = 10.0


def free_port() -> int:
    """A loopback port free right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def stop_group(process: subprocess.Popen[bytes], timeout: float) -> None:
    """End a child started with `start_new_session` and its process group: SIGTERM, then SIGKILL after
    `timeout`; nothing when it has already exited."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=timeout)


@dataclass
class ServeProcess:
    """One `webhook serve` child."""

    port: int
    log_path: Path
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_tail(self, chars: int = 3000) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-chars:]
        return ""

    def start(self, environ: Mapping[str, str]) -> None:
        env = {**os.environ, **environ, "PORT": str(self.port), "HOST": "127.0.0.1"}
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(  # noqa: S603 - our own command line
                [sys.executable, "-m", "webhook", "serve", "--host", "127.0.0.1", "--port", str(self.port)],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_ready(self, client: httpx.Client, *, revocations: bool = True) -> None:
        deadline = time.monotonic() + READY_SECONDS
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"webhook serve exited ({self.process.returncode}): {self.log_tail()}")
            with contextlib.suppress(httpx.HTTPError, ValueError):
                body = client.get(f"{self.url}/readyz").json()
                if not revocations or body.get("revocations", {}).get("state") == "ok":
                    return
            time.sleep(0.05)
        raise RuntimeError(f"webhook serve not ready after {READY_SECONDS:.0f} s: {self.log_tail()}")

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None:
            stop_group(process, STOP_SECONDS)


@contextlib.contextmanager
def serve_replicas(count: int, environ: Mapping[str, str], workdir: Path) -> Iterator[list[ServeProcess]]:
    """`count` replicas with this environment, ready (revocations loaded); stopped when the block ends."""
    replicas = [ServeProcess(free_port(), workdir / f"replica-{i}.log") for i in range(count)]
    try:
        for replica in replicas:
            replica.start(environ)
        with httpx.Client(timeout=5) as client:
            for replica in replicas:
                replica.wait_ready(client)
        yield replicas
    finally:
        for replica in replicas:
            replica.stop()


__all__ = ["ServeProcess", "free_port", "serve_replicas", "stop_group"]
