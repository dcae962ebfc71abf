"""`webhook audit list/top/prune` through click's CliRunner, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import datetime as dt
import time

import orjson
import pytest
from click.testing import CliRunner, Result

from tests.audit.support import engine_for, table_totals
from webhook.audit.fold import fold_records
from webhook.audit.record import RejectionRecord, token_digest
from webhook.audit.store import upsert
from webhook.cli import main
from webhook.cli.audit import parse_since
from webhook.core.reasons import Reason
from webhook.core.token import TokenFacts
from webhook.db.engine import migrate

TENANT = "5d6e7f80-9a1b-4c2d-8e3f-405162738495"
HOUR = 3600.0


def record(token: str, age: float, reason: Reason, *, sub: str, ip: str, realm: str | None = None) -> RejectionRecord:
    return RejectionRecord(
        at=time.time() - age,
        reason=reason,
        detail="test",
        source="hook",
        hook_mode="GET",
        token_sha256=token_digest(token),
        realm=realm,
        facts=TokenFacts(alg="RS256", iss="https://kc.example/realms/x", sub=sub),
        client_ip=ip,
        user_agent="hasura",
        request_id="r",
    )


SEED = [
    record("t-expired", 0.1 * HOUR, Reason.EXPIRED, sub="alice", ip="192.0.2.1", realm=f"tenant-{TENANT}"),
    record("t-expired", 0.2 * HOUR, Reason.EXPIRED, sub="alice", ip="192.0.2.1", realm=f"tenant-{TENANT}"),
    record("t-expired", 0.3 * HOUR, Reason.EXPIRED, sub="alice", ip="192.0.2.1", realm=f"tenant-{TENANT}"),
    record("t-forged", 1 * HOUR, Reason.BAD_SIGNATURE, sub="mallory\x1b[31m", ip="203.0.113.9"),
    record("t-forged-2", 1.5 * HOUR, Reason.BAD_SIGNATURE, sub="mallory", ip="203.0.113.9"),
    record("t-old", 40 * 24 * HOUR, Reason.UNKNOWN_ISSUER, sub="bob", ip="198.51.100.3"),
]


async def seed(env: dict[str, str]) -> None:
    engine = engine_for(env)
    try:
        await migrate(engine, schema=env["DATABASE_SCHEMA"] or None)
        rows, _ = fold_records(SEED)
        async with engine.begin() as connection:
            await upsert(connection, rows)
    finally:
        await engine.dispose()


@pytest.fixture
def env(db_env: dict[str, str]) -> dict[str, str]:
    asyncio.run(seed(db_env))
    return db_env


def run(env: dict[str, str], *args: str) -> Result:
    return CliRunner().invoke(main, list(args), env=env)


def test_list_table_shows_short_hashes_newest_first(env: dict[str, str]) -> None:
    """`audit list` prints one line per row, newest first, with 12-character hashes and escapes stripped."""
    result = run(env, "audit", "list")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split()[:3] == ["last_seen", "reason", "count"]
    assert [line.split()[1] for line in lines[1:]] == ["expired", "bad_signature", "bad_signature", "unknown_issuer"]
    digest = str(token_digest("t-expired"))
    assert digest[:12] in lines[1]
    assert digest not in result.output  # only the short form in tables
    assert " 3 " in lines[1]
    assert "\x1b" not in result.output and "mallory?[31m" in result.output


def test_list_filters(env: dict[str, str]) -> None:
    """--since, --reason, --realm, --sub, --ip and --limit narrow the rows."""

    def reasons(*args: str) -> list[str]:
        result = run(env, "audit", "list", "--format", "json", *args)
        assert result.exit_code == 0, result.output
        return [row["reason"] for row in orjson.loads(result.output)]

    assert reasons("--since", "2h") == ["expired", "bad_signature", "bad_signature"]
    assert reasons("--since", "30m") == ["expired"]
    since = (dt.datetime.now(dt.UTC) - dt.timedelta(days=7)).isoformat()
    assert len(reasons("--since", since)) == 3
    assert reasons("--reason", "bad_signature", "--limit", "1") == ["bad_signature"]
    assert reasons("--realm", f"tenant-{TENANT}") == ["expired"]
    assert reasons("--sub", "bob") == ["unknown_issuer"]
    assert reasons("--ip", "203.0.113.9") == ["bad_signature", "bad_signature"]
    assert run(env, "audit", "list", "--since", "soon").exit_code == 2
    assert run(env, "audit", "list", "--reason", "no_such_reason").exit_code == 2


def test_list_json_has_full_rows(env: dict[str, str]) -> None:
    """JSON output carries every column, the full hash, the derived tenant and ISO 8601 UTC times."""
    result = run(env, "audit", "list", "--format", "json", "--reason", "expired")
    (row,) = orjson.loads(result.output)
    assert row["token_sha256"] == token_digest("t-expired")
    assert row["occurrences"] == 3
    assert row["tenant_id"] == TENANT
    assert row["client_ip_untrusted"] == "192.0.2.1"
    assert dt.datetime.fromisoformat(row["first_seen"]) < dt.datetime.fromisoformat(row["last_seen"])
    assert row["last_seen"].endswith("+00:00")


def test_top_groups_and_sums(env: dict[str, str]) -> None:
    """`audit top --by` sums occurrences per reason, realm, ip or subject, largest first."""
    result = run(env, "audit", "top", "--by", "reason", "--format", "json")
    assert result.exit_code == 0, result.output
    assert [(e["value"], e["occurrences"], e["rows"]) for e in orjson.loads(result.output)] == [
        ("expired", 3, 1),
        ("bad_signature", 2, 2),
        ("unknown_issuer", 1, 1),
    ]
    result = run(env, "audit", "top", "--by", "ip", "--since", "1d", "--limit", "1")
    lines = result.output.splitlines()
    assert lines[0].split() == ["ip", "occurrences", "rows", "last_seen"]
    assert lines[1].split()[:3] == ["192.0.2.1", "3", "1"]
    assert len(lines) == 2
    realms = orjson.loads(run(env, "audit", "top", "--by", "realm", "--format", "json").output)
    assert {e["value"]: e["occurrences"] for e in realms} == {f"tenant-{TENANT}": 3, None: 3}
    subs = orjson.loads(run(env, "audit", "top", "--by", "sub", "--format", "json").output)
    assert subs[0] == {**subs[0], "value": "alice", "occurrences": 3}


def test_prune_deletes_rows_older_than_retention(env: dict[str, str]) -> None:
    """`audit prune` uses --older-than, else AUDIT_RETENTION_DAYS; with retention 0 it asks for --older-than."""
    result = run({**env, "AUDIT_RETENTION_DAYS": "0"}, "audit", "prune")
    assert result.exit_code == 2
    assert "--older-than" in result.output
    result = run({**env, "AUDIT_RETENTION_DAYS": "60"}, "audit", "prune")
    assert result.output.startswith("deleted 0 row(s)")
    result = run(env, "audit", "prune", "--older-than", "30")
    assert result.exit_code == 0, result.output
    assert result.output.startswith("deleted 1 row(s)")

    async def totals() -> tuple[int, int]:
        engine = engine_for(env)
        try:
            return await table_totals(engine)
        finally:
            await engine.dispose()

    assert asyncio.run(totals()) == (3, 5)


def test_errors_name_the_database_without_password(closed_port: int) -> None:
    """An unreachable database exits 1 naming it, with the password masked."""
    url = f"postgresql+asyncpg://auditor:s3cret-pw@127.0.0.1:{closed_port}/test"
    result = CliRunner().invoke(main, ["audit", "list"], env={"DATABASE_URL": url})
    assert result.exit_code == 1
    assert f"auditor:***@127.0.0.1:{closed_port}" in result.output
    assert "s3cret-pw" not in result.output


def test_parse_since() -> None:
    """--since takes 30s, 15m, 2h, 7d, 2w or ISO 8601 (naive means UTC)."""
    now = dt.datetime(2026, 5, 1, 12, tzinfo=dt.UTC)
    assert parse_since("15m", now) == now - dt.timedelta(minutes=15)
    assert parse_since("2w", now) == now - dt.timedelta(weeks=2)
    assert parse_since("2026-04-30T00:00:00", now) == dt.datetime(2026, 4, 30, tzinfo=dt.UTC)
    with pytest.raises(ValueError, match="Invalid isoformat"):
        parse_since("h2", now)
