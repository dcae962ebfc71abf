"""Floods of bad tokens through the hook (HTTP, in process): folded bucket rows, nothing lost, journal when down."""

from __future__ import annotations

import asyncio
import io
import time
from collections import Counter
from pathlib import Path

import httpx
import orjson
import pytest
from sqlalchemy import func, select

from tests.audit.support import bad_token, engine_for, running, sample, settings_from, table_totals
from webhook.app import HOOK_PATH, create_app
from webhook.audit.sink import DbAuditSink
from webhook.audit.store import TABLE
from webhook.observability.decisionlog import DecisionLog
from webhook.observability.metrics import Metrics
from webhook.wiring import Dependencies

pytestmark = pytest.mark.anyio
QUERY = {"query": "query { __typename }"}
WAVE = 100  # requests in flight at once


async def flood(client: httpx.AsyncClient, tokens: list[str], total: int) -> Counter[int]:
    """Send `total` hook calls as Hasura does, cycling through `tokens`, alternating GET and POST mode."""
    statuses: Counter[int] = Counter()
    for start in range(0, total, WAVE):
        calls = []
        for i in range(start, min(total, start + WAVE)):
            headers = {"Authorization": f"Bearer {tokens[i % len(tokens)]}", "X-Forwarded-For": f"198.51.100.{i % 7}"}
            if i % 2:
                calls.append(client.post(HOOK_PATH, content=orjson.dumps({"headers": headers, "request": QUERY})))
            else:
                calls.append(client.get(HOOK_PATH, headers=headers))
        statuses.update(response.status_code for response in await asyncio.gather(*calls))
    return statuses


async def test_flood_folds_into_exact_rows(db_env: dict[str, str]) -> None:
    """10,000 rejections of 2,000 distinct forged tokens from 7 clients: a handful of bucket rows, none lost."""
    total, distinct = 10_000, 2_000
    env = {**db_env, "AUDIT_BATCH_SIZE": "500", "AUDIT_FLUSH_INTERVAL_SECONDS": "0.05"}
    metrics = Metrics()
    deps = Dependencies(metrics=metrics, decision_log=DecisionLog(io.BytesIO()))
    app = create_app(settings_from(env), deps)
    tokens = [bad_token(n) for n in range(distinct)]
    async with running(app) as client:
        assert app.runtime is not None
        sink = app.runtime.audit
        assert isinstance(sink, DbAuditSink)
        started = time.perf_counter()
        statuses = await flood(client, tokens, total)
        elapsed = time.perf_counter() - started
        async with asyncio.timeout(30):
            await sink.flushed()
        ready = orjson.loads((await client.get("/readyz")).content)
    print(f"flood: {total} requests in {elapsed:.2f}s")
    assert statuses == Counter({401: total})
    assert ready["audit"] == "ok"
    assert (sink.written, sum(sink.dropped.values())) == (total, 0)
    engine = engine_for(env)
    try:
        rows, occurrences = await table_totals(engine)
        async with engine.connect() as connection:
            distinct_sum = (await connection.execute(select(func.sum(TABLE.c.distinct_tokens)))).scalar_one()
    finally:
        await engine.dispose()
    assert occurrences == total
    assert 7 <= rows <= 14  # 7 clients, one minute (two if the run straddles a minute)
    # each token reached 5 of the 7 clients: 10,000 distinct (client, token) pairs, counted approximately
    # per bucket row; a run that straddles a minute (more than 7 rows) may count a pair in both minutes
    minutes = 1 if rows == 7 else 2
    assert 0.7 * total <= distinct_sum <= 1.3 * total * minutes
    assert sample(metrics, "webhook_audit_written_total") == total
    assert sample(metrics, "webhook_rejections_total", {"reason": "unknown_issuer", "realm": "none"}) == total


async def test_database_down_hook_answers_every_request_and_journals_everything(
    closed_port: int, tmp_path: Path
) -> None:
    """Database on a closed port: every call is a 401, /readyz ready with audit degraded, every record journaled."""
    total = 2_000
    env = {
        "DATABASE_URL": f"postgresql+asyncpg://postgres@127.0.0.1:{closed_port}/test",
        "DATABASE_AUTO_MIGRATE": "true",
        "AUDIT_BATCH_SIZE": "50",
        "AUDIT_RETRY_MAX_SECONDS": "0.05",
        "AUDIT_SHUTDOWN_DEADLINE_SECONDS": "0.2",
        "AUDIT_JOURNAL_DIR": str(tmp_path / "journal"),
    }
    metrics = Metrics()
    app = create_app(settings_from(env), Dependencies(metrics=metrics, decision_log=DecisionLog(io.BytesIO())))
    tokens = [bad_token(n) for n in range(500)]
    async with running(app) as client:
        assert app.runtime is not None
        sink = app.runtime.audit
        assert isinstance(sink, DbAuditSink)
        statuses = await flood(client, tokens, total)
        async with asyncio.timeout(20):
            await sink.settled()
        response = await client.get("/readyz")
        scraped = (await client.get("/metrics")).text
    assert statuses == Counter({401: total})
    assert response.status_code == 200
    body = orjson.loads(response.content)
    assert body["ready"] is True and body["audit"] == "degraded" and "Connect" in body["audit_detail"]
    assert (sink.written, sink.journaled, sum(sink.dropped.values())) == (0, total, 0)
    assert f"webhook_audit_journal_records {float(total)}" in scraped
    assert sample(metrics, "webhook_audit_journaled_total") == total
