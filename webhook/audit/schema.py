"""Whether the database's schema is one the audit writer can use, and what to do when it is not.

Rules of this module:
- `verdict` is pure: from the tables present and the Alembic revision recorded, it names a state
  and the operator's next step. `inspect_schema` is the only IO (one connection, read-only).
- Only `empty` and `behind` can be fixed by migrating; `unversioned` (the audit table exists but no
  revision is recorded: a half-applied or hand-made schema), `unknown` (a revision this release does
  not know) and `damaged` (the head is recorded but the table is missing) need an operator: the
  writer says so once (log, metric, /readyz) and keeps the records in its journal meanwhile.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from webhook.db.engine import alembic_config

SchemaState = Literal["ok", "empty", "behind", "unversioned", "unknown", "damaged"]
SCHEMA_STATES: Final[tuple[SchemaState, ...]] = ("ok", "empty", "behind", "unversioned", "unknown", "damaged")
MIGRATABLE: Final = frozenset({"empty", "behind"})
TABLE_NAME: Final = "rejected_token"


@dataclass(frozen=True, slots=True)
class SchemaVerdict:
    """The schema's state, the revision found and the operator's next step."""

    state: SchemaState
    current: str | None
    head: str
    advice: str

    @property
    def ok(self) -> bool:
        return self.state == "ok"


def verdict(*, tables: frozenset[str], current: str | None, known: frozenset[str], head: str) -> SchemaVerdict:
    """The state of a database holding `tables` at revision `current` (see the module rules)."""
    has_table = TABLE_NAME in tables
    if current == head:
        if has_table:
            return SchemaVerdict("ok", current, head, "")
        return SchemaVerdict(
            "damaged",
            current,
            head,
            f"the database records revision {head} but has no {TABLE_NAME} table: restore it, or run "
            "`webhook db stamp base` then `webhook db upgrade`",
        )
    if current is None:
        if not has_table:
            return SchemaVerdict("empty", None, head, "run `webhook db upgrade` (or set DATABASE_AUTO_MIGRATE=true)")
        return SchemaVerdict(
            "unversioned",
            None,
            head,
            f"table {TABLE_NAME} exists but no migration is recorded (alembic_version missing: a "
            "half-applied or hand-made schema). If this service created it, run `webhook db stamp <revision "
            "it is at>` then `webhook db upgrade`; otherwise move it away (a dev SQLite file can be deleted)",
        )
    if current in known:
        return SchemaVerdict(
            "behind", current, head, f"run `webhook db upgrade` (database at {current}, release at {head})"
        )
    return SchemaVerdict(
        "unknown",
        current,
        head,
        f"the database is at revision {current!r}, which this release (head {head}) does not know: "
        "run the release that migrated it, or `webhook db downgrade` with that release first",
    )


def _inspect(connection: Connection) -> tuple[frozenset[str], str | None]:
    tables = frozenset(inspect(connection).get_table_names())
    current = MigrationContext.configure(connection).get_current_revision() if "alembic_version" in tables else None
    return tables, current


def known_revisions() -> tuple[frozenset[str], str]:
    """Every revision of `migrations/`, and the head."""
    script = ScriptDirectory.from_config(alembic_config())
    head = script.get_current_head()
    if head is None:
        raise RuntimeError("no migration found")
    return frozenset(rev.revision for rev in script.walk_revisions()), head


async def inspect_schema(engine: AsyncEngine) -> SchemaVerdict:
    """The verdict on the database behind `engine` (raises if it cannot be reached)."""
    async with engine.connect() as connection:
        tables, current = await connection.run_sync(_inspect)
    known, head = known_revisions()
    return verdict(tables=tables, current=current, known=known, head=head)


__all__ = [
    "MIGRATABLE",
    "SCHEMA_STATES",
    "SchemaState",
    "SchemaVerdict",
    "inspect_schema",
    "known_revisions",
    "verdict",
]
