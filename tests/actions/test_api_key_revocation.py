"""Revoking or rotating an API key ends its live tokens at once (fake Keycloak, SQLite and PostgreSQL):
the key's client-credentials token, already in the verified-token cache, answers 401 `session_revoked`
right after the action, through the same `session_revocation` rows as `webhook sessions revoke --user`."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from click.testing import CliRunner, Result
from sqlalchemy import select

from tests.actions.conftest import (
    ADMIN_CLIENT,
    OTHER,
    SUPER,
    TENANT,
    ActionStack,
    FakeClock,
    StackFactory,
    prepare_database,
)
from tests.revocation.conftest import wait_loaded
from webhook.cli import main
from webhook.config import Settings
from webhook.db.datastore import DataStore
from webhook.db.models import ApiKeyEvent
from webhook.revocation.store import SessionRevocation
from webhook.testing.keycloak import FakeKeycloak

pytestmark = pytest.mark.anyio
WRITER = ["admin-user", "api-key-write", "tenant-read", "election-event-read"]
REALM = f"tenant-{TENANT}"


class LiveClock(FakeClock):
    """The real wall clock: Keycloak's `iat` and our cutoffs must be on the same time line."""

    def __call__(self) -> float:
        return time.time()


@pytest.fixture
async def key_stack(make_stack: StackFactory) -> AsyncIterator[ActionStack]:
    """The service with revocations on, in front of a fake Keycloak whose admin API holds the tenant realm."""
    async with FakeKeycloak.start() as keycloak:
        keycloak.configure_admin(*ADMIN_CLIENT, admin=True)
        for tenant_id in (SUPER, TENANT, OTHER):
            keycloak.admin_api.import_realm({"realm": f"tenant-{tenant_id}", "enabled": True})
        async with make_stack(keycloak=keycloak, clock=LiveClock(), REVOCATIONS="true") as stack:
            await wait_loaded(stack.client, stack.url)
            yield stack


async def _create(stack: ActionStack, name: str) -> dict[str, Any]:
    verdict = await stack.call(
        "createApiKey",
        raw_input={"name": name, "roles": ["tenant-read"]},
        token=stack.token(roles=WRITER),
        required=("client_secret",),
    )
    assert verdict.outcome == "data", verdict.body
    data: dict[str, Any] = verdict.data
    return data


async def _grant(stack: ActionStack, name: str, secret: str) -> httpx.Response:
    return await stack.client.post(
        f"{stack.keycloak.url}/realms/{REALM}/protocol/openid-connect/token",
        data={"grant_type": "client_credentials", "client_id": name, "client_secret": secret},
    )


async def _token(stack: ActionStack, name: str, secret: str) -> str:
    answer = await _grant(stack, name, secret)
    assert answer.status_code == 200, answer.text
    return str(answer.json()["access_token"])


async def _reason(stack: ActionStack, token: str) -> str | None:
    """None for a session, else the hook's reason code."""
    verdict = await stack.hook(token)
    if verdict.outcome == "session":
        return None
    reason: str = httpx.Response(200, content=verdict.hook_body).json()["reason"]
    return reason


async def _revocations(stack: ActionStack) -> list[SessionRevocation]:
    async with stack.store.sessions() as session:
        return list((await session.scalars(select(SessionRevocation))).all())


async def test_revoking_a_key_ends_its_cached_live_token_at_once(key_stack: ActionStack) -> None:
    """revokeApiKey: the key's token (a cache hit by then) is session_revoked, Keycloak refuses a new one, another
    key's token still works; one `session_revocation` row names the service account, one `api_key_event` row."""
    stack = key_stack
    issued, other = await _create(stack, "erp-sync"), await _create(stack, "reporting")
    token = await _token(stack, "erp-sync", issued["client_secret"])
    other_token = await _token(stack, "reporting", other["client_secret"])
    assert await _reason(stack, token) is None
    assert await _reason(stack, token) is None  # now in the verified-token cache
    runtime = stack.app.runtime
    assert runtime is not None and len(runtime.tokens) >= 1
    account = httpx.Response(200, content=(await stack.hook(token)).hook_body).json()["X-Hasura-User-Id"]

    revoked = await stack.call(
        "revokeApiKey", raw_input={"name": "erp-sync"}, token=stack.token(roles=WRITER), required=("revoked",)
    )
    assert revoked.outcome == "data" and revoked.data["revoked"] is True, revoked.body

    assert await _reason(stack, token) == "session_revoked"
    assert await _reason(stack, other_token) is None
    denied = await _grant(stack, "erp-sync", issued["client_secret"])
    assert (denied.status_code, denied.json()["error"]) == (401, "invalid_client")
    (row,) = await _revocations(stack)
    assert (row.realm, row.sub, row.sid, row.source) == (REALM, account, None, "operator")
    assert row.before.timestamp() >= time.time() - 5  # the cutoff is now (plus the leeway), not the token's iat
    async with stack.store.sessions() as session:
        actions = [e.action for e in (await session.scalars(select(ApiKeyEvent).order_by(ApiKeyEvent.at))).all()]
    assert actions == ["create", "create", "revoke"]


async def test_rotating_a_key_ends_the_old_secrets_tokens_not_the_new_ones(key_stack: ActionStack) -> None:
    """rotateApiKey: a token obtained with the old secret is session_revoked (cached or not); the old secret is
    refused by Keycloak; a token obtained with the new secret right after the answer opens a session."""
    stack = key_stack
    issued = await _create(stack, "erp-sync")
    cached = await _token(stack, "erp-sync", issued["client_secret"])
    uncached = await _token(stack, "erp-sync", issued["client_secret"])
    assert await _reason(stack, cached) is None

    rotated = await stack.call(
        "rotateApiKey", raw_input={"name": "erp-sync"}, token=stack.token(roles=WRITER), required=("client_secret",)
    )
    assert rotated.outcome == "data", rotated.body
    fresh = await _token(stack, "erp-sync", rotated.data["client_secret"])

    assert await _reason(stack, cached) == "session_revoked"
    assert await _reason(stack, uncached) == "session_revoked"
    assert await _reason(stack, fresh) is None
    old = await _grant(stack, "erp-sync", issued["client_secret"])
    assert (old.status_code, old.json()["error"]) == (401, "unauthorized_client")
    assert len(await _revocations(stack)) == 1


async def test_without_revocations_a_revoked_keys_token_lasts_until_exp(make_sqlite_stack: StackFactory) -> None:
    """REVOCATIONS off (no database link to fan out): revoking deletes the client only; no row is written."""
    async with FakeKeycloak.start() as keycloak:
        keycloak.configure_admin(*ADMIN_CLIENT, admin=True)
        for tenant_id in (SUPER, TENANT, OTHER):
            keycloak.admin_api.import_realm({"realm": f"tenant-{tenant_id}", "enabled": True})
        async with make_sqlite_stack(keycloak=keycloak, clock=LiveClock()) as stack:
            issued = await _create(stack, "erp-sync")
            token = await _token(stack, "erp-sync", issued["client_secret"])
            revoked = await stack.call(
                "revokeApiKey", raw_input={"name": "erp-sync"}, token=stack.token(roles=WRITER), required=("revoked",)
            )
            assert revoked.outcome == "data"
            assert await _reason(stack, token) is None
            assert await _revocations(stack) == []


def test_the_cli_rotate_and_revoke_write_the_service_accounts_revocation(db_env: dict[str, str]) -> None:
    """`webhook api-keys rotate|revoke` with REVOCATIONS on write the `--user` row of the key's service account
    (the running replicas take it like any other); with REVOCATIONS off they write none."""
    fake = FakeKeycloak()
    fake.configure_admin(*ADMIN_CLIENT, admin=True)
    fake.admin_api.import_realm({"realm": REALM, "enabled": True})
    with fake.serve_in_thread():
        env = {
            **db_env,
            "KEYCLOAK_URL": fake.url,
            "KEYCLOAK_ADMIN_CLIENT_ID": ADMIN_CLIENT[0],
            "KEYCLOAK_ADMIN_CLIENT_SECRET": ADMIN_CLIENT[1],
            "LOG_FORMAT": "console",
            "LOG_LEVEL": "error",
        }
        asyncio.run(prepare_database(env, {}))
        runner = CliRunner()

        def cli(name: str, *args: str, revocations: str = "true") -> Result:
            command = ["api-keys", *args, "--tenant", TENANT, "--name", name]
            result = runner.invoke(main, command, env={**env, "REVOCATIONS": revocations})
            assert result.exit_code == 0, result.output
            return result

        cli("erp-sync", "create", "--role", "tenant-read")
        secret = fake.admin_api.client_secret(REALM, "erp-sync")
        token = httpx.post(
            f"{fake.url}/realms/{REALM}/protocol/openid-connect/token",
            data={"grant_type": "client_credentials", "client_id": "erp-sync", "client_secret": secret},
        ).json()["access_token"]
        account = jwt_claims(token)["sub"]
        cli("erp-sync", "rotate")
        cli("erp-sync", "revoke")
        cli("untracked", "create", "--role", "tenant-read", revocations="false")
        cli("untracked", "revoke", revocations="false")

        rows = asyncio.run(_rows(env))
        assert [(r.realm, r.sub, r.sid, r.source) for r in rows] == [(REALM, account, None, "operator")] * 2
        rotated, revoked = rows
        assert revoked.before > rotated.before  # revoke: every token of the deleted account, leeway included


async def _rows(env: dict[str, str]) -> list[SessionRevocation]:
    store = DataStore.from_settings(Settings.from_environ(env, require_keycloak=False))
    try:
        async with store.sessions() as session:
            return list((await session.scalars(select(SessionRevocation).order_by(SessionRevocation.id))).all())
    finally:
        await store.dispose()


def jwt_claims(token: str) -> dict[str, Any]:
    segment = token.split(".")[1]
    loaded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    return loaded
