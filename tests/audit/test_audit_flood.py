"""Floods of bad tokens through the hook (HTTP, in process): exact folded rows, bounded queue, counted drops."""

from __future__ import annotations

import asyncio
import io
import time
from collections import Counter

import httpx
import orjson
import pytest

from tests.audit.support import bad_token, engine_for, running, sample, settings_from, table_totals
from webhook.app import HOOK_PATH, Dependencies, create_app
from webhook.auditwriter import DbAuditSink
from webhook.decisionlog import DecisionLog
from webhook.metrics import Metrics

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
    """10,000 rejections of 2,000 distinct tokens leave 2,000 rows summing to 10,000, none dropped, queue bounded."""
    total, distinct, queue_size = 10_000, 2_000, 10_000
    env = {
        **db_env,
        "AUDIT_QUEUE_SIZE": str(queue_size),
        "AUDIT_BATCH_SIZE": "500",
        "AUDIT_FLUSH_INTERVAL_SECONDS": "0.05",
    }
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
    print(f"flood: {total} requests in {elapsed:.2f}s, queue high water {sink.high_water}")
    assert statuses == Counter({401: total})
    assert ready["audit"] == "ok"
    assert sink.high_water <= queue_size
    assert (sink.written, sink.dropped) == (total, {"queue_full": 0, "shutdown": 0})
    engine = engine_for(env)
    try:
        assert await table_totals(engine) == (distinct, total)
    finally:
        await engine.dispose()
    assert sample(metrics, "webhook_audit_written_total") == total
    assert sample(metrics, "webhook_audit_dropped_total", {"cause": "queue_full"}) == 0
    assert sample(metrics, "webhook_rejections_total", {"reason": "unknown_issuer", "realm": "none"}) == total


async def test_database_down_hook_answers_every_request_and_counts_losses(closed_port: int) -> None:
    """Database on a closed port: every call is a 401, /readyz ready with audit degraded, every loss counted."""
    total, queue_size = 2_000, 100
    env = {
        "DATABASE_URL": f"postgresql+asyncpg://postgres@127.0.0.1:{closed_port}/test",
        "DATABASE_AUTO_MIGRATE": "true",
        "AUDIT_QUEUE_SIZE": str(queue_size),
        "AUDIT_BATCH_SIZE": "50",
        "AUDIT_RETRY_MAX_SECONDS": "0.05",
        "AUDIT_SHUTDOWN_DEADLINE_SECONDS": "0.2",
    }
    metrics = Metrics()
    app = create_app(settings_from(env), Dependencies(metrics=metrics, decision_log=DecisionLog(io.BytesIO())))
    tokens = [bad_token(n) for n in range(500)]
    async with running(app) as client:
        assert app.runtime is not None
        sink = app.runtime.audit
        assert isinstance(sink, DbAuditSink)
        statuses = await flood(client, tokens, total)
        response = await client.get("/readyz")
    assert statuses == Counter({401: total})
    assert response.status_code == 200
    assert orjson.loads(response.content)["ready"] is True
    assert orjson.loads(response.content)["audit"] == "degraded"
    assert sink.high_water <= queue_size
    lost = sink.dropped["queue_full"] + sink.dropped["shutdown"]
    print(f"database down: {total} requests, dropped {sink.dropped}")
    assert (sink.written, lost) == (0, total)
    assert sink.dropped["queue_full"] >= total - queue_size - 50  # queue plus at most one folded batch
    dropped_metric = sum(
        sample(metrics, "webhook_audit_dropped_total", {"cause": cause}) for cause in ("queue_full", "shutdown")
    )
    assert dropped_metric == total
