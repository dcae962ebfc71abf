"""Who may call an action: only Hasura (shared secret), for a caller whose forwarded token verifies again
and agrees with the session; every refusal is audited with source "action"."""

from __future__ import annotations

import hashlib
import time
from typing import Any

import orjson
import pytest

from tests.actions.conftest import OTHER, SECRET, TENANT, ActionStack, random_uuid
from webhook.db.models import ElectionEvent
from webhook.testing.keycloak import attacker_key

pytestmark = pytest.mark.anyio


def event_input(tenant: str = TENANT) -> dict[str, Any]:
    return {"id": random_uuid(), "tenant_id": tenant, "name": "Referendum"}


def sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def only_rejection(stack: ActionStack) -> dict[str, Any]:
    rows = await stack.rejections()
    assert len(rows) == 1, rows
    assert rows[0]["source"] == "action"
    return rows[0]


async def test_missing_secret_is_unauthorized_and_audited(stack: ActionStack) -> None:
    """Without X-Actions-Secret (not called by Hasura): 401 unauthorized, audited missing_token, nothing stored."""
    verdict = await stack.call("insertElectionEvent", event_input(), secret=None)
    assert (verdict.status, verdict.code) == (401, "unauthorized")
    row = await only_rejection(stack)
    assert (row["reason"], row["token_sha256"], row["client_ip_untrusted"]) == ("missing_token", None, "203.0.113.7")
    assert await stack.count(ElectionEvent) == 0


async def test_wrong_secret_is_unauthorized_and_audited(stack: ActionStack) -> None:
    """A wrong secret: 401, audited bad_signature with neither the secret nor its hash kept."""
    verdict = await stack.call("insertElectionEvent", event_input(), secret="not-the-actions-secret")
    assert (verdict.status, verdict.code) == (401, "unauthorized")
    row = await only_rejection(stack)
    assert row["reason"] == "bad_signature"
    assert row["token_sha256"] is None
    assert "not-the-actions-secret" not in orjson.dumps(row, default=str).decode()


async def test_client_cannot_supply_the_secret_header(sqlite_stack: ActionStack) -> None:
    """A client's own X-Actions-Secret header replaces Hasura's (its header fold), so the call is refused."""
    verdict = await sqlite_stack.call("insertElectionEvent", event_input(), headers={"X-Actions-Secret": "guess"})
    assert (verdict.status, verdict.code) == (401, "unauthorized")


async def test_direct_call_without_hasura(sqlite_stack: ActionStack) -> None:
    """A direct POST with a valid token but no secret is refused before the token is even read."""
    body = {"action": {"name": "insertElectionEvent"}, "input": {"object": event_input()}, "session_variables": {}}
    response = await sqlite_stack.client.post(
        f"{sqlite_stack.url}/actions/insertElectionEvent",
        json=body,
        headers={"Authorization": f"Bearer {sqlite_stack.token()}"},
    )
    assert response.status_code == 401
    assert response.json()["extensions"]["code"] == "unauthorized"


async def test_unknown_action_is_not_found(sqlite_stack: ActionStack) -> None:
    """An action name that is not registered: 404 in Hasura's error shape."""
    verdict = await sqlite_stack.call("dropDatabase", {})
    assert (verdict.status, verdict.code, verdict.message) == (404, "not-found", "no such action")


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"not json", "not JSON"),
        (b"[]", "not a JSON object"),
        (b'{"input": {}, "session_variables": {}}', '"action.name"'),
        (b'{"action": {"name": "insertElectionEvent"}, "session_variables": {}}', '"input"'),
        (b'{"action": {"name": "insertElectionEvent"}, "input": {}}', '"session_variables"'),
        (b'{"action": {"name": "insertTenant"}, "input": {}, "session_variables": {}}', "not the action of the URL"),
        (
            b'{"action": {"name": "insertElectionEvent"}, "input": {}, "session_variables": {"x-hasura-role": 1}}',
            "strings",
        ),
    ],
)
async def test_malformed_envelope_is_validation_failed(sqlite_stack: ActionStack, body: bytes, problem: str) -> None:
    """A body that is not Hasura's action envelope: 400 validation-failed saying what is wrong."""
    response = await sqlite_stack.client.post(
        f"{sqlite_stack.url}/actions/insertElectionEvent",
        content=body,
        headers={"X-Actions-Secret": SECRET, "Content-Type": "application/json"},
    )
    assert response.status_code == 400
    answer = response.json()
    assert answer["extensions"]["code"] == "validation-failed"
    assert problem in answer["message"]


async def test_only_post(sqlite_stack: ActionStack) -> None:
    """Other methods are 405."""
    response = await sqlite_stack.client.get(f"{sqlite_stack.url}/actions/insertElectionEvent")
    assert response.status_code == 405


async def test_forged_token_is_unauthorized_and_audited(stack: ActionStack) -> None:
    """A token signed with an attacker's key under the realm's kid: 401 (bad_signature), audited with its hash."""
    token = stack.token(signing_key=attacker_key())
    verdict = await stack.call("insertElectionEvent", event_input(), token=token)
    assert (verdict.status, verdict.code) == (401, "unauthorized")
    assert verdict.extensions == {"code": "unauthorized", "reason": "bad_signature"}
    row = await only_rejection(stack)
    assert (row["reason"], row["token_sha256"], row["realm"]) == ("bad_signature", sha256(token), f"tenant-{TENANT}")
    assert row["user_agent_untrusted"] == "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0"
    assert await stack.count(ElectionEvent) == 0


async def test_expired_token_is_unauthorized_and_audited(stack: ActionStack) -> None:
    """An expired token: 401 with reason expired, audited."""
    token = stack.token(now=int(time.time()) - 1000, lifetime=300)
    verdict = await stack.call("insertElectionEvent", event_input(), token=token)
    assert verdict.extensions == {"code": "unauthorized", "reason": "expired"}
    assert (await only_rejection(stack))["reason"] == "expired"


@pytest.mark.parametrize(
    ("realm", "reason"),
    [("master", "unknown_issuer"), (f"tenant-{random_uuid()}", "unknown_realm")],
    ids=["untrusted realm", "realm Keycloak does not have"],
)
async def test_other_realm_token_is_unauthorized_and_audited(stack: ActionStack, realm: str, reason: str) -> None:
    """A token naming a realm we do not trust, or one Keycloak does not know: 401 with that reason, audited."""
    token = stack.token(claims={"iss": f"{stack.keycloak.issuer_base}/realms/{realm}"})
    verdict = await stack.call("insertElectionEvent", event_input(), token=token)
    assert verdict.extensions == {"code": "unauthorized", "reason": reason}
    assert (await only_rejection(stack))["reason"] == reason


async def test_no_token_is_unauthorized(sqlite_stack: ActionStack) -> None:
    """No Authorization forwarded (e.g. an admin-secret request): 401 missing_token."""
    verdict = await sqlite_stack.call("insertElectionEvent", event_input(), token="")
    assert verdict.extensions == {"code": "unauthorized", "reason": "missing_token"}


async def test_session_role_not_in_token_is_forbidden(stack: ActionStack) -> None:
    """A session role the token does not allow (e.g. admin via admin secret): 403 forbidden, audited."""
    verdict = await stack.call("insertElectionEvent", event_input(), role="admin")
    assert (verdict.status, verdict.code) == (403, "forbidden")
    assert (await only_rejection(stack))["reason"] == "role_not_allowed"


async def test_session_tenant_not_the_tokens_is_tenant_mismatch(stack: ActionStack) -> None:
    """Session variables naming another tenant than the token's: 403 tenant-mismatch, audited."""
    session = {"x-hasura-role": "admin-user", "x-hasura-tenant-id": OTHER}
    verdict = await stack.call("insertElectionEvent", event_input(OTHER), session=session)
    assert (verdict.status, verdict.code) == (403, "tenant-mismatch")
    assert (await only_rejection(stack))["reason"] == "realm_mismatch"
    assert await stack.count(ElectionEvent) == 0


async def test_session_user_not_the_tokens_is_forbidden(sqlite_stack: ActionStack) -> None:
    """Session variables naming another user than the token's: 403 forbidden."""
    session = {"x-hasura-role": "admin-user", "x-hasura-user-id": random_uuid()}
    verdict = await sqlite_stack.call("insertElectionEvent", event_input(), session=session)
    assert (verdict.status, verdict.code) == (403, "forbidden")


async def test_agreeing_session_is_accepted(sqlite_stack: ActionStack) -> None:
    """The session Hasura builds from our hook (role, user, tenant of the token) is accepted."""
    token = sqlite_stack.token(sub="user-1")
    session = {"x-hasura-role": "admin-user", "x-hasura-user-id": "user-1", "x-hasura-tenant-id": TENANT.upper()}
    verdict = await sqlite_stack.call("insertElectionEvent", event_input(), token=token, session=session)
    assert verdict.outcome == "data", verdict.body


async def test_hasura_forwards_what_the_handler_needs(sqlite_stack: ActionStack) -> None:
    """The stand-in forwards Authorization and the secret, drops x-hasura-* and the ignored headers."""
    verdict = await sqlite_stack.call("insertElectionEvent", event_input())
    sent = {name.lower(): value for name, value in verdict.sent_headers}
    assert sent["x-actions-secret"] == SECRET
    assert sent["authorization"].startswith("Bearer ")
    assert sent["user-agent"].startswith("hasura-graphql-engine/")
    assert sent["x-forwarded-user-agent"].startswith("Mozilla/5.0")
    assert sent["x-forwarded-origin"] == "http://127.0.0.1:3002"
    assert sent["x-forwarded-host"] == "hasura.example:8080"
    assert "x-hasura-role" not in sent and "origin" not in sent and "accept" not in sent


async def test_actions_disabled_without_secret(make_sqlite_stack: Any) -> None:
    """With ACTIONS_SECRET unset every call is 401, whatever it carries."""
    async with make_sqlite_stack(ACTIONS_SECRET="", STRICT_REALM_REGISTRY="true") as stack:
        verdict = await stack.call("insertElectionEvent", event_input())
        assert (verdict.status, verdict.code) == (401, "unauthorized")
        assert (await only_rejection(stack))["reason"] == "missing_token"


async def test_error_bodies_are_hasura_shaped(sqlite_stack: ActionStack) -> None:
    """Every refusal is {"message": str, "extensions": {"code": str, ...}} and nothing else."""
    for verdict in (
        await sqlite_stack.call("insertElectionEvent", event_input(), secret=None),
        await sqlite_stack.call("insertElectionEvent", {"name": 3}),
        await sqlite_stack.call("insertElectionEvent", event_input(OTHER)),
        await sqlite_stack.call("nope", {}),
    ):
        body = orjson.loads(verdict.body)
        assert set(body) == {"message", "extensions"} and isinstance(body["message"], str)
        assert isinstance(body["extensions"]["code"], str)


async def test_database_down_is_unavailable_without_details(make_sqlite_stack: Any, closed_port: int) -> None:
    """PostgreSQL unreachable: 424 unavailable with a fixed message (no driver error, host or SQL)."""
    url = f"postgresql+asyncpg://postgres@127.0.0.1:{closed_port}/nowhere"
    async with make_sqlite_stack(prepare=False, DATABASE_URL=url, PROVISIONING_WORKER="false") as stack:
        verdict = await stack.call("insertElectionEvent", event_input())
        assert (verdict.status, verdict.code) == (424, "unavailable")
        assert verdict.message == "the database is unavailable; retry later"
        assert str(closed_port) not in verdict.body.decode()
