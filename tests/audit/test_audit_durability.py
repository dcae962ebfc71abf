"""An audit that loses nothing: a real PostgreSQL stopped, restarted, and the service SIGTERMed with a full queue.

Each test runs a throwaway cluster of its own (`tests/pgcluster.py`; the shared server on 5432 is
never touched), sends rejections at a steady rate through the hook (forged tokens: bucket rows) and straight to
the sink (verified-signature rejections with distinct tokens: one row each; unverifiable ones:
bucket rows), breaks the
database while they flow, and then counts rows and summed occurrences in PostgreSQL: every
rejection must be there, none dropped. The 60 s outage at 1,000 rejections/s is the slow variant.
"""

from __future__ import annotations

import asyncio
import io
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select, text

from tests.audit.support import bad_token, running, settings_from
from tests.pgcluster import Cluster, throwaway_cluster
from webhook.app import HOOK_PATH, create_app
from webhook.audit.record import RejectionRecord, token_digest
from webhook.audit.sink import DbAuditSink
from webhook.audit.store import TABLE
from webhook.core.reasons import Reason
from webhook.core.token import TokenFacts
from webhook.db.engine import make_engine
from webhook.observability.decisionlog import DecisionLog
from webhook.observability.metrics import Metrics
from webhook.wiring import Dependencies

pytestmark = pytest.mark.anyio
TICK = 0.05  # seconds between two waves of the paced load


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    with throwaway_cluster() as made:
        yield made


@pytest.fixture
def schema(cluster: Cluster) -> str:
    """A fresh schema on the throwaway cluster (the cluster is deleted with everything in it)."""
    if not _is_up(cluster):
        cluster.start()
    name = f"durability_{uuid.uuid4().hex[:10]}"

    async def create() -> None:
        engine = make_engine(cluster.url)
        try:
            async with engine.begin() as connection:
                await connection.execute(text(f'CREATE SCHEMA "{name}"'))
        finally:
            await engine.dispose()

    asyncio.run(create())
    return name


def _is_up(cluster: Cluster) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", cluster.port)) == 0


def env_for(cluster: Cluster, schema: str, journal: Path, **extra: str) -> dict[str, str]:
    return {
        "DATABASE_URL": cluster.url,
        "DATABASE_SCHEMA": schema,
        "DATABASE_AUTO_MIGRATE": "true",
        "AUDIT_JOURNAL_DIR": str(journal),
        "AUDIT_RETRY_MAX_SECONDS": "0.5",
        "AUDIT_FLUSH_INTERVAL_SECONDS": "0.2",
        "AUDIT_MAX_ROWS_PER_BUCKET": "1000000",  # exact row counts: the bound is tested elsewhere
        "AUDIT_QUEUE_SIZE": "1000000",
        **extra,
    }


async def totals(cluster: Cluster, schema: str) -> tuple[int, int, int]:
    """(rows, summed occurrences, rows of fold 'token') in the cluster's audit table."""
    engine = make_engine(cluster.url, schema=schema)
    try:
        async with engine.connect() as connection:
            rows, occurrences = (
                await connection.execute(select(func.count(), func.coalesce(func.sum(TABLE.c.occurrences), 0)))
            ).one()
            tokens = (await connection.execute(select(func.count()).where(TABLE.c.fold == "token"))).scalar_one()
    finally:
        await engine.dispose()
    return int(rows), int(occurrences), int(tokens)


def direct(n: int, *, signed: bool) -> RejectionRecord:
    """A rejection as the hook records it: verified signature (`expired`, one row per token) or not."""
    return RejectionRecord(
        at=time.time(),
        reason=Reason.EXPIRED if signed else Reason.BAD_SIGNATURE,
        detail="exp is in the past" if signed else "signature does not verify",
        source="hook",
        hook_mode="GET",
        token_sha256=token_digest(f"token-{n}-{uuid.uuid4()}"),
        realm=None,
        facts=TokenFacts(alg="RS256", kid="k", sub=f"user-{n}"),
        client_ip=f"192.0.2.{n % 16}",
        user_agent="hasura",
        request_id=f"r{n}",
    )


@dataclass
class Sent:
    hook: int = 0
    verified: int = 0
    unverified: int = 0

    @property
    def total(self) -> int:
        return self.hook + self.verified + self.unverified


async def paced_load(client: httpx.AsyncClient, sink: DbAuditSink, rate: int, seconds: float, sent: Sent) -> None:
    """`rate` rejections per second for `seconds`, in waves every TICK.

    One in 10 is a forged token sent through the hook (the whole path); the others are submitted to
    the sink as the hook would (5 verified-signature rejections with distinct tokens: one row each;
    4 unverifiable: bucket rows), so the rate holds on a loaded 2-core machine.
    """
    per_tick = max(10, round(rate * TICK))
    started = time.monotonic()
    tick = 0
    while time.monotonic() - started < seconds:
        calls = []
        for i in range(per_tick):
            n = sent.total + i
            kind = i % 10
            if kind == 0:
                headers = {"Authorization": f"Bearer {bad_token(n)}", "X-Forwarded-For": f"198.51.100.{n % 16}"}
                calls.append(client.get(HOOK_PATH, headers=headers))
            else:
                sink.submit(direct(n, signed=kind <= 5))
        sent.verified += sum(1 for i in range(per_tick) if 1 <= i % 10 <= 5)
        sent.unverified += sum(1 for i in range(per_tick) if i % 10 >= 6)
        answers = await asyncio.gather(*calls)
        assert all(answer.status_code == 401 for answer in answers)
        sent.hook += len(answers)
        tick += 1
        await asyncio.sleep(max(0.0, started + tick * TICK - time.monotonic()))  # pacing, not waiting


async def fault_run(
    cluster: Cluster, schema: str, tmp_path: Path, *, rate: int, seconds: float, fault: str, outage: float
) -> None:
    env = env_for(cluster, schema, tmp_path / "journal")
    metrics = Metrics()
    app = create_app(settings_from(env), Dependencies(metrics=metrics, decision_log=DecisionLog(io.BytesIO())))
    sent = Sent()
    async with running(app) as client:
        assert app.runtime is not None
        sink = app.runtime.audit
        assert isinstance(sink, DbAuditSink)
        async with asyncio.timeout(30):
            await sink._until(lambda: sink.writer is not None and sink.writer.schema is not None)

        async def break_it() -> None:
            await asyncio.sleep(1.0)  # pacing: the fault starts one second into the load
            if fault == "restart":
                await asyncio.to_thread(cluster.restart, "immediate")
                return
            await asyncio.to_thread(cluster.stop, "fast")
            await asyncio.sleep(outage)  # the outage's length is the scenario
            await asyncio.to_thread(cluster.start)

        started = time.monotonic()
        await asyncio.gather(paced_load(client, sink, rate, seconds, sent), break_it())
        elapsed = time.monotonic() - started
        journaled_peak = int(metrics.registry.get_sample_value("webhook_audit_journaled_total") or 0)
        recovery = time.monotonic()
        async with asyncio.timeout(120):
            await sink.flushed()
        recovery = time.monotonic() - recovery
        dropped = sum(sink.dropped.values())
    rows, occurrences, tokens = await totals(cluster, schema)
    print(
        f"\nDURABILITY {fault} outage={outage:.0f}s rate={rate}/s sent={sent.total} in {elapsed:.1f}s "
        f"journaled={journaled_peak} rows={rows} occurrences={occurrences} dropped={dropped} "
        f"recovery_after_load={recovery:.2f}s"
    )
    assert dropped == 0
    assert occurrences == sent.total
    assert tokens == sent.verified  # one row per distinct verified token
    assert sent.total >= 0.8 * rate * seconds  # the load really ran at (about) the rate


@pytest.mark.parametrize(
    ("rate", "seconds", "outage"),
    [
        pytest.param(400, 6.0, 3.0, id="3s-at-400"),
        pytest.param(1000, 65.0, 60.0, id="60s-at-1000", marks=pytest.mark.slow),
    ],
)
async def test_postgres_outage_loses_nothing(
    *, cluster: Cluster, schema: str, tmp_path: Path, rate: int, seconds: float, outage: float
) -> None:
    """PostgreSQL stopped mid-load and started again: every rejection is in the table, none dropped."""
    await fault_run(cluster, schema, tmp_path, rate=rate, seconds=seconds, fault="outage", outage=outage)


async def test_postgres_restart_loses_nothing(cluster: Cluster, schema: str, tmp_path: Path) -> None:
    """PostgreSQL restarted (immediate mode, like a crash) mid-load: every rejection is in the table."""
    await fault_run(cluster, schema, tmp_path, rate=400, seconds=4.0, fault="restart", outage=0.0)


# -- SIGTERM of a real service process ------------------------------------------------------------


@dataclass
class Service:
    process: subprocess.Popen[bytes]
    url: str
    log: Path


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def start_service(env: dict[str, str], workdir: Path) -> Service:
    """`webhook serve` in a subprocess (cwd: `workdir`), once /healthz answers (bounded)."""
    for _ in range(5):  # a port taken between choosing it and the bind: try another
        port = _port()
        log = workdir / f"service-{port}.log"
        with log.open("wb") as output:  # the child keeps its own descriptor
            process = subprocess.Popen(  # noqa: ASYNC220, S603 - our own argv; awaited below by polling its health
                [sys.executable, "-m", "webhook", "serve", "--host", "127.0.0.1", "--port", str(port)],
                cwd=workdir,
                env={**os.environ, **env},
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        url = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient() as client, asyncio.timeout(30):
            while process.poll() is None:
                try:
                    if (await client.get(f"{url}/healthz")).status_code == 200:
                        return Service(process, url, log)
                except httpx.TransportError:
                    await asyncio.sleep(0.05)  # polling a condition with a bounded deadline
        if process.poll() is None:
            process.kill()
    raise AssertionError("the service did not start")


async def sigterm(service: Service) -> bool:
    """Send SIGTERM; whether the process ended gracefully (uvicorn re-raises the signal after its shutdown)."""
    service.process.send_signal(signal.SIGTERM)
    code = await asyncio.to_thread(service.process.wait, 60)
    return code in (0, -signal.SIGTERM)


async def send_forged(url: str, count: int) -> None:
    limits = httpx.Limits(max_connections=32)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=httpx.Timeout(60.0)) as client:
        for start in range(0, count, 32):
            calls = [
                client.get(HOOK_PATH, headers={"Authorization": f"Bearer {bad_token(n)}"})
                for n in range(start, min(count, start + 32))
            ]
            assert all(r.status_code == 401 for r in await asyncio.gather(*calls))


def service_env(cluster: Cluster, schema: str, journal: Path) -> dict[str, str]:
    return env_for(
        cluster,
        schema,
        journal,
        KEYCLOAK_URL="http://127.0.0.1:9",  # never fetched: the forged tokens name an untrusted issuer
        LOG_LEVEL="warning",
        AUDIT_FLUSH_INTERVAL_SECONDS="3600",  # nothing is written before the SIGTERM: the queue stays full
        AUDIT_BATCH_SIZE="100000",
        AUDIT_SHUTDOWN_DEADLINE_SECONDS="10",
    )


async def test_sigterm_with_a_full_queue_writes_everything(cluster: Cluster, schema: str, tmp_path: Path) -> None:
    """SIGTERM while 1,000 rejections wait in memory: the process writes them all before it exits."""
    service = await start_service(service_env(cluster, schema, tmp_path / "journal"), tmp_path)
    await send_forged(service.url, 1000)
    assert (await totals(cluster, schema))[1] == 0  # still queued
    assert await sigterm(service), service.log.read_text()[-3000:]
    assert (await totals(cluster, schema))[1] == 1000


async def test_sigterm_with_the_database_down_journals_and_the_next_start_replays(
    cluster: Cluster, schema: str, tmp_path: Path
) -> None:
    """Database down at SIGTERM: the queue goes to the journal; the next process replays it into PostgreSQL."""
    env = service_env(cluster, schema, tmp_path / "journal")
    service = await start_service(env, tmp_path)
    await send_forged(service.url, 1000)
    await asyncio.to_thread(cluster.stop, "fast")
    assert await sigterm(service), service.log.read_text()[-3000:]
    assert any((tmp_path / "journal").glob("slot-*/*.jsonl"))
    await asyncio.to_thread(cluster.start)
    again = await start_service(env, tmp_path)
    for _ in range(600):  # polling the table, bounded (60 s)
        if (await totals(cluster, schema))[1] >= 1000:
            break
        await asyncio.sleep(0.1)
    assert await sigterm(again), again.log.read_text()[-3000:]
    assert (await totals(cluster, schema))[1] == 1000
    assert not any((tmp_path / "journal").glob("slot-*/*.jsonl"))
