"""`webhook audit fill` (the benchmarks' pre-fill), `webhook db stamp`, and the schema verdicts `db current` shows."""

from __future__ import annotations

import asyncio

from click.testing import CliRunner
from sqlalchemy import func, select

from tests.audit.support import engine_for, table_totals
from webhook.audit.fill import FILL_DETAIL
from webhook.audit.schema import verdict
from webhook.audit.store import TABLE
from webhook.cli import main
from webhook.db.engine import head_revision


def test_fill_inserts_distinct_verified_rows(db_env: dict[str, str]) -> None:
    """`audit fill --rows N` twice: 2N distinct token rows, every reason a verified one, all marked as filled."""
    runner = CliRunner()
    assert runner.invoke(main, ["db", "upgrade"], env=db_env).exit_code == 0
    for _ in range(2):
        result = runner.invoke(main, ["audit", "fill", "--rows", "1500"], env=db_env)
        assert result.exit_code == 0, result.output
        assert "inserted 1500 row(s)" in result.output

    async def check() -> None:
        engine = engine_for(db_env)
        try:
            assert await table_totals(engine) == (3000, 3000)
            async with engine.connect() as connection:
                kinds = (await connection.execute(select(TABLE.c.fold, TABLE.c.detail).distinct())).all()
                reasons = (await connection.execute(select(func.count(TABLE.c.reason.distinct())))).scalar_one()
        finally:
            await engine.dispose()
        assert [tuple(k) for k in kinds] == [("token", FILL_DETAIL)]
        assert reasons == 8

    asyncio.run(check())


def test_stamp_and_current_report_the_schema(db_env: dict[str, str]) -> None:
    """A table made without migrations: `db current` says unversioned and what to do; `db stamp head` records it."""

    async def hand_made() -> None:
        engine = engine_for(db_env)
        try:
            async with engine.begin() as connection:
                await connection.run_sync(TABLE.create)
        finally:
            await engine.dispose()

    asyncio.run(hand_made())
    runner = CliRunner()
    result = runner.invoke(main, ["db", "current"], env=db_env)
    assert "schema:  unversioned" in result.output, result.output
    assert "webhook db stamp" in result.output
    assert runner.invoke(main, ["db", "stamp", "head"], env=db_env).exit_code == 0
    result = runner.invoke(main, ["db", "current"], env=db_env)
    assert "schema:  ok" in result.output, result.output
    assert f"current: {head_revision()}" in result.output


def test_verdicts() -> None:
    """Each combination of table and recorded revision gets its state; only empty and behind can be migrated."""
    known, head = frozenset({"0001", "0002", "0003"}), "0003"
    table = frozenset({"rejected_token", "alembic_version"})
    assert verdict(tables=table, current="0003", known=known, head=head).state == "ok"
    assert verdict(tables=frozenset(), current=None, known=known, head=head).state == "empty"
    assert verdict(tables=table, current="0001", known=known, head=head).state == "behind"
    assert verdict(tables=frozenset({"rejected_token"}), current=None, known=known, head=head).state == "unversioned"
    assert verdict(tables=table, current="9999", known=known, head=head).state == "unknown"
    assert verdict(tables=frozenset({"alembic_version"}), current="0003", known=known, head=head).state == "damaged"
    assert "webhook db upgrade" in verdict(tables=table, current="0001", known=known, head=head).advice
