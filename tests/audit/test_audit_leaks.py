"""No raw token, nor any 20-character piece of one, reaches the audit table, the logs or the CLI output."""

from __future__ import annotations

import asyncio
import hashlib
import io
import logging
import secrets
from collections.abc import Iterable

import pytest
from click.testing import CliRunner
from sqlalchemy import select
from structlog.testing import capture_logs

from tests.audit.support import bad_token, engine_for, running, settings_from
from webhook.app import create_app
from webhook.audit.sink import DbAuditSink
from webhook.audit.store import TABLE
from webhook.cli import main
from webhook.observability.decisionlog import DecisionLog
from webhook.observability.metrics import Metrics
from webhook.testing.hasura import HasuraStandIn
from webhook.wiring import Dependencies

TENANT = "3c4d5e6f-7a8b-4c9d-8e0f-1a2b3c4d5e6f"
WINDOW = 20


def windows(text: str) -> set[str]:
    return {text[i : i + WINDOW] for i in range(len(text) - WINDOW + 1)}


def leaked(tokens: Iterable[str], haystack: str) -> list[str]:
    """Each token with a 20-character substring found in `haystack`."""
    seen = windows(haystack)
    return [token for token in tokens if any(token[i : i + WINDOW] in seen for i in range(len(token) - WINDOW + 1))]


async def scenario(env: dict[str, str], tokens: list[str], decisions: io.BytesIO) -> str:
    """Send every token (and a request without one) in both hook modes; return the table dumped as text."""
    app = create_app(settings_from(env), Dependencies(metrics=Metrics(), decision_log=DecisionLog(decisions)))
    async with running(app) as client:
        assert app.runtime is not None
        sink = app.runtime.audit
        assert isinstance(sink, DbAuditSink)
        for mode in ("GET", "POST"):
            hasura = HasuraStandIn("http://webhook.test/hasura/auth", mode=mode, client=client)
            for n, token in enumerate(tokens):
                header = token if token.startswith("Basic") else f"Bearer {token}"
                verdict = await hasura.authenticate({"Authorization": header, "X-Forwarded-For": f"192.0.2.{n}"})
                assert verdict.hook_status == 401
            assert (await hasura.authenticate({"X-Forwarded-For": "192.0.2.200"})).hook_status == 401
        async with asyncio.timeout(10):
            await sink.flushed()
    engine = engine_for(env)
    try:
        async with engine.connect() as connection:
            rows = (await connection.execute(select(TABLE))).all()
    finally:
        await engine.dispose()
    return "\n".join(repr(tuple(row)) for row in rows)


def test_no_token_fragment_in_table_logs_or_cli(
    db_env: dict[str, str], closed_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    """Tokens of every rejection path leave only hashes and claimed values: no 20-char substring anywhere."""
    caplog.set_level(logging.DEBUG)
    keycloak = f"http://127.0.0.1:{closed_port}"
    tokens = [
        *(bad_token(n) for n in range(10)),  # unknown_issuer
        *(bad_token(n, iss=f"{keycloak}/realms/tenant-{TENANT}") for n in range(10, 15)),  # jwks_unavailable
        *(secrets.token_urlsafe(300) for _ in range(5)),  # malformed_token
        *(f"{secrets.token_urlsafe(40)}.{secrets.token_urlsafe(600)}.{secrets.token_urlsafe(40)}" for _ in range(3)),
        "Basic " + secrets.token_urlsafe(60),  # not Bearer: the header value is hashed, never kept
    ]
    env = {**db_env, "KEYCLOAK_URL": keycloak, "LOG_LEVEL": "debug", "AUDIT_FLUSH_INTERVAL_SECONDS": "0.01"}
    decisions = io.BytesIO()
    with capture_logs() as events:
        table = asyncio.run(scenario(env, tokens, decisions))
    assert f"'{TENANT}'" in table  # tenant_id derived for the tenant realm's rejections
    assert "'missing_token'" in table and "'malformed_token'" in table and "'jwks_unavailable'" in table

    runner = CliRunner()
    outputs = []
    for args in (
        ["audit", "list", "--limit", "1000"],
        ["audit", "list", "--limit", "1000", "--format", "json"],
        *(
            ["audit", "top", "--by", by, "--format", fmt]
            for by in ("reason", "realm", "ip", "sub")
            for fmt in ("table", "json")
        ),
    ):
        result = runner.invoke(main, args, env=env)
        assert result.exit_code == 0, result.output
        outputs.append(result.output)
    assert outputs[0].count("\n") > len(tokens)  # every row printed (plus header)

    haystacks = {
        "table": table,
        "decision log": decisions.getvalue().decode(),
        "structlog": "\n".join(repr(event) for event in events),
        "stdlib logs": caplog.text,
        "cli": "\n".join(outputs),
    }
    for name, haystack in haystacks.items():
        assert haystack, name
        assert leaked(tokens, haystack) == [], name
    assert leaked(tokens[:1], f"row: {tokens[0][40 : 40 + WINDOW]}!") == tokens[:1]  # the check can fail
    for token in tokens[:10]:
        assert hashlib.sha256(token.encode()).hexdigest() in table  # what is kept instead
