"""hasura_metadata/ (config v3) as the hasura service of docker-compose.yml applies it.

- every YAML file parses, with Hasura's `!include <file>` resolved (quoted or tag form);
- actions.graphql parses with graphql-core, and actions.yaml and actions.graphql name the same
  actions and custom types (no actions at all is consistent too);
- every `{{ENV}}` of a handler and every `value_from_env` / `from_env` is provided to `hasura`;
- every tracked table exists after `alembic upgrade head` (SQLite, and PostgreSQL in a fresh schema).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import pytest
from graphql import (
    DefinitionNode,
    EnumTypeDefinitionNode,
    InputObjectTypeDefinitionNode,
    ObjectTypeDefinitionNode,
    ObjectTypeExtensionNode,
    ScalarTypeDefinitionNode,
    parse,
)
from sqlalchemy import inspect
from sqlalchemy.engine import Connection
from starlette.routing import Route

from tests.dbsupport import admin, postgres_url
from tests.deploy.support import METADATA_DIR, environment, load_metadata, resolved_environment, strings
from webhook.actions.registry import default_registry
from webhook.app import create_app
from webhook.db.engine import make_engine, migrate
from webhook.settings import Settings

pytestmark = pytest.mark.anyio

ROOT_TYPES: Final = ("Query", "Mutation", "Subscription")
TEMPLATE: Final = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


def _actions_yaml() -> dict[str, Any]:
    path = METADATA_DIR / "actions.yaml"
    if not path.exists():
        return {"actions": [], "custom_types": {}}
    loaded = load_metadata(path)
    assert isinstance(loaded, dict)
    return loaded


def _actions_graphql() -> tuple[DefinitionNode, ...]:
    path = METADATA_DIR / "actions.graphql"
    return tuple(parse(path.read_text()).definitions) if path.exists() else ()


def _tracked_tables() -> list[tuple[str, str, str]]:
    """(source, schema, table) for every table tracked in databases.yaml."""
    sources = load_metadata(METADATA_DIR / "databases" / "databases.yaml")
    tracked = []
    for source in sources:
        for entry in source.get("tables") or []:
            table = entry["table"]
            tracked.append((source["name"], table.get("schema", "public"), table["name"]))
    return tracked


def test_every_metadata_yaml_parses_and_includes_resolve() -> None:
    """Each .yaml under hasura_metadata parses and its !include targets exist (version 3 layout)."""
    files = sorted(METADATA_DIR.rglob("*.yaml"))
    assert METADATA_DIR / "version.yaml" in files
    for path in files:
        load_metadata(path)
    assert load_metadata(METADATA_DIR / "version.yaml") == {"version": 3}
    assert _tracked_tables(), "databases.yaml tracks no table"


def test_actions_graphql_and_actions_yaml_agree() -> None:
    """actions.graphql parses; the actions and custom types of actions.yaml are exactly the ones it defines."""
    assert (METADATA_DIR / "actions.yaml").exists() == (METADATA_DIR / "actions.graphql").exists()
    definitions, config = _actions_graphql(), _actions_yaml()
    root_fields: set[str] = set()
    defined: dict[str, set[str]] = {"objects": set(), "input_objects": set(), "scalars": set(), "enums": set()}
    for node in definitions:
        if isinstance(node, ObjectTypeDefinitionNode | ObjectTypeExtensionNode) and node.name.value in ROOT_TYPES:
            root_fields |= {field.name.value for field in node.fields or ()}
        elif isinstance(node, ObjectTypeDefinitionNode):
            defined["objects"].add(node.name.value)
        elif isinstance(node, InputObjectTypeDefinitionNode):
            defined["input_objects"].add(node.name.value)
        elif isinstance(node, ScalarTypeDefinitionNode):
            defined["scalars"].add(node.name.value)
        elif isinstance(node, EnumTypeDefinitionNode):
            defined["enums"].add(node.name.value)
    actions = {action["name"] for action in config.get("actions") or []}
    assert actions == root_fields
    custom = config.get("custom_types") or {}
    for kind, names in defined.items():
        assert {entry["name"] for entry in custom.get(kind) or []} == names, kind


def _environment_names(metadata: Any) -> Iterator[str]:
    """Env var names Hasura resolves: {{NAME}} templates, `value_from_env` and `from_env` values."""
    if isinstance(metadata, dict):
        for key, value in metadata.items():
            if key in ("value_from_env", "from_env") and isinstance(value, str):
                yield value
            else:
                yield from _environment_names(value)
    elif isinstance(metadata, list):
        for item in metadata:
            yield from _environment_names(item)
    elif isinstance(metadata, str):
        yield from TEMPLATE.findall(metadata)


def test_every_environment_reference_is_provided_to_hasura() -> None:
    """Every {{ENV}} in a handler/URL and every value_from_env/from_env is set on the hasura service."""
    needed: set[str] = set()
    for path in METADATA_DIR.rglob("*.yaml"):
        needed |= set(_environment_names(load_metadata(path)))
    assert "PG_DATABASE_URL" in needed
    provided = environment("hasura")
    assert sorted(needed - set(provided)) == []
    resolved = resolved_environment("hasura")
    assert all(resolved[name] for name in needed)


def test_action_handlers_call_the_webhook_with_the_shared_secret() -> None:
    """Each action handler is `{{ACTIONS_BASE_URL}}/...` and sends ACTIONS_SECRET from the environment."""
    for action in _actions_yaml().get("actions") or []:
        definition = action["definition"]
        assert definition["handler"].startswith("{{ACTIONS_BASE_URL}}/"), action["name"]
        headers = {h["name"].lower(): h for h in definition.get("headers") or []}
        secret = [h for h in headers.values() if h.get("value_from_env") == "ACTIONS_SECRET"]
        assert secret, f"{action['name']} does not send ACTIONS_SECRET"
        assert not any("value" in h and "SECRET" in str(h["value"]) for h in headers.values())
    assert not any("{{" in value and "ACTIONS_BASE_URL" not in value for value in strings(_actions_yaml()))


def test_every_action_handler_is_served_by_the_webhook() -> None:
    """Each handler URL is the webhook's POST /actions/<name> of a registered action; none is left undeclared."""
    registry = default_registry()
    app = create_app(Settings.from_environ({}, require_keycloak=False))
    routes = {(route.path, *sorted(route.methods or ())) for route in app.router.routes if isinstance(route, Route)}
    assert ("/actions/{action_name}", "POST") in routes
    declared = {}
    for action in _actions_yaml().get("actions") or []:
        handler = action["definition"]["handler"]
        assert handler == f"{{{{ACTIONS_BASE_URL}}}}/actions/{action['name']}", handler
        declared[action["name"]] = handler
    assert set(declared) == set(registry)


# ------------------------------------------------------------------------------------------ tables


def _existing_tables(connection: Connection) -> set[str]:
    return set(inspect(connection).get_table_names())


async def _tables_after_upgrade(url: str, schema: str | None) -> set[str]:
    engine = make_engine(url, schema=schema)
    try:
        await migrate(engine, "upgrade", "head", schema=schema)
        async with engine.connect() as connection:
            return await connection.run_sync(_existing_tables)
    finally:
        await engine.dispose()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_every_tracked_table_exists_after_upgrade_head(backend: str, tmp_path: Path) -> None:
    """Each table Hasura tracks (schema public = the stack's DATABASE_SCHEMA) exists once migrations ran."""
    deployed_schema = resolved_environment("webhook")["DATABASE_SCHEMA"] or "public"
    tracked = _tracked_tables()
    assert {(source, schema) for source, schema, _ in tracked} == {("default", deployed_schema)}
    names = {name for _, _, name in tracked}
    if backend == "sqlite":
        tables = await _tables_after_upgrade(f"sqlite+aiosqlite:///{tmp_path / 'deploy.sqlite3'}", None)
    else:
        schema = f"deploy_test_{uuid.uuid4().hex[:12]}"
        await admin(f'CREATE SCHEMA "{schema}"')  # fails (test errors) if PostgreSQL is down
        try:
            tables = await _tables_after_upgrade(postgres_url(), schema)
        finally:
            await admin(f'DROP SCHEMA "{schema}" CASCADE')
    assert sorted(names - tables) == []
