"""Claims and forwarded values holding U+0000 (or past their column size) never stop the audit writer."""

from __future__ import annotations

import asyncio
import base64
import io
import secrets

import orjson
import pytest
from sqlalchemy import select

from tests.audit.support import bad_token, engine_for, running, settings_from
from webhook.app import create_app
from webhook.audit.sink import DbAuditSink
from webhook.audit.store import TABLE
from webhook.core.safetext import REPLACEMENT, safe_text
from webhook.observability.decisionlog import DecisionLog
from webhook.observability.metrics import Metrics
from webhook.wiring import Dependencies

pytestmark = pytest.mark.anyio


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def nul_token() -> str:
    """A forged RS256 token whose kid, iss, sub and jti each hold U+0000 (JSON `\\u0000`)."""
    header = {"alg": "RS256", "kid": "k\u0000id", "typ": "JWT"}
    payload = {"iss": "https://evil\u0000.example/realms/x", "sub": "su\u0000b", "jti": "j\u0000ti", "exp": 4102444800}
    return ".".join((_b64(orjson.dumps(header)), _b64(orjson.dumps(payload)), _b64(secrets.token_bytes(256))))


async def test_nul_in_claims_and_headers_is_written_as_replacement(db_env: dict[str, str]) -> None:
    """A forged token with NUL in kid/iss/sub/jti, a NUL user agent, then ordinary garbage: every row lands."""
    metrics = Metrics()
    app = create_app(settings_from(db_env), Dependencies(metrics=metrics, decision_log=DecisionLog(io.BytesIO())))
    async with running(app) as client:
        assert app.runtime is not None
        sink = app.runtime.audit
        assert isinstance(sink, DbAuditSink)
        body = {
            "headers": {
                "Authorization": f"Bearer {nul_token()}",
                "User-Agent": "ua\u0000x",
                "X-Forwarded-For": "192.0.2.1",
            }
        }
        assert (await client.post("/hasura/auth", content=orjson.dumps(body))).status_code == 401
        for n in range(20):  # the rows behind it
            headers = {"Authorization": f"Bearer {bad_token(n)}", "X-Forwarded-For": "192.0.2.2"}
            assert (await client.get("/hasura/auth", headers=headers)).status_code == 401
        async with asyncio.timeout(20):
            await sink.flushed()
        assert sum(sink.dropped.values()) == 0
    engine = engine_for(db_env)
    try:
        async with engine.connect() as connection:
            rows = (await connection.execute(select(TABLE).order_by(TABLE.c.id))).mappings().all()
    finally:
        await engine.dispose()
    assert sum(r["occurrences"] for r in rows) == 21
    (hostile,) = [r for r in rows if r["client_ip_untrusted"] == "192.0.2.1"]
    assert (hostile["kid"], hostile["sub"], hostile["jti"]) == (
        f"k{REPLACEMENT}id",
        f"su{REPLACEMENT}b",
        f"j{REPLACEMENT}ti",
    )
    assert hostile["iss"] == f"https://evil{REPLACEMENT}.example/realms/x"
    assert hostile["user_agent_untrusted"] == f"ua{REPLACEMENT}x"
    assert not any("\x00" in str(v) for r in rows for v in r.values())


def test_safe_text_replaces_nul_and_lone_surrogates_and_caps() -> None:
    """safe_text: NUL and lone surrogates become U+FFFD, the length is capped, clean text is unchanged."""
    assert safe_text("a\x00b", 10) == f"a{REPLACEMENT}b"
    assert safe_text("x\ud800y\udfffz", 10) == f"x{REPLACEMENT}y{REPLACEMENT}z"
    assert safe_text("é" * 300, 256) == "é" * 256
    assert safe_text("plain", 3) == "pla"
    assert safe_text(safe_text("\x00\ud800", 5), 5) == REPLACEMENT * 2  # idempotent
    assert safe_text("ok 😀", 10) == "ok 😀"


def test_decision_log_fields_are_made_safe_too() -> None:
    """The decision log line copies the same strings through the same sanitiser (and stays valid JSON)."""
    from webhook.audit.record import RejectionRecord
    from webhook.core.reasons import Reason
    from webhook.core.token import TokenFacts

    record = RejectionRecord(
        at=0.0,
        reason=Reason.BAD_SIGNATURE,
        detail="d\x00",
        source="hook",
        hook_mode="GET",
        token_sha256=None,
        realm=None,
        facts=TokenFacts(sub="a\x00b", kid="x" * 1000, iss="\ud800"),
        client_ip="1\x00",
        user_agent="u\x00",
        request_id="r",
    )
    fields = record.as_log_fields()
    assert (fields["sub"], fields["iss"], fields["detail"]) == (f"a{REPLACEMENT}b", REPLACEMENT, f"d{REPLACEMENT}")
    assert len(fields["kid"]) == 256
    orjson.dumps(fields)  # a lone surrogate here used to make this raise (a 500 on the hook path)
