"""The compose stack end to end without Docker: the webhook configured exactly as docker-compose.yml
configures it (only KEYCLOAK_URL and DATABASE_URL point at local stand-ins), the fake Keycloak
serving the demo realm of keycloak/import (its own generated keys) and minting tokens whose Hasura
claims are what that realm's mappers produce, and the Hasura stand-in calling the hook the way the
hasura service's configuration says, in GET and in POST mode, then the actions the way
hasura_metadata/actions.yaml says (handler URL, secret header, forwarded headers, timeout).
"""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx
import pytest
from graphql import NamedTypeNode, NonNullTypeNode, ObjectTypeDefinitionNode, ObjectTypeExtensionNode, parse

from tests.deploy.support import (
    METADATA_DIR,
    RealmModel,
    demo_realm_path,
    load_json,
    load_metadata,
    resolved_environment,
)
from webhook.app import WebhookApp, create_app
from webhook.core.session import CLAIM_ALLOWED_ROLES, CLAIM_DEFAULT_ROLE, CLAIM_USER
from webhook.db.engine import make_engine, migrate
from webhook.observability.decisionlog import DecisionLog
from webhook.settings import Settings
from webhook.testing.hasura import HasuraStandIn
from webhook.testing.keycloak import DROP, FakeKeycloak
from webhook.testing.server import serve_asgi
from webhook.wiring import Dependencies

pytestmark = pytest.mark.anyio


@dataclass
class Stack:
    keycloak: FakeKeycloak
    app: WebhookApp
    url: str
    client: httpx.AsyncClient
    model: RealmModel

    @property
    def realm(self) -> str:
        return str(self.model.realm["realm"])

    def hasura(self, mode: Literal["GET", "POST"]) -> HasuraStandIn:
        """A stand-in configured like the compose file's hasura service (hook path, request body)."""
        hasura = resolved_environment("hasura")
        hook = urlsplit(hasura["HASURA_GRAPHQL_AUTH_HOOK"])
        send_body = hasura.get("HASURA_GRAPHQL_AUTH_HOOK_SEND_REQUEST_BODY", "true") == "true"
        return HasuraStandIn(f"{self.url}{hook.path}", mode=mode, client=self.client, send_request_body=send_body)

    def token(self, client_id: str, username: str) -> str:
        """An access token of the demo realm whose Hasura claims are exactly what its mappers emit."""
        claims: dict[str, Any] = {
            "x-hasura-default-role": DROP,
            "x-hasura-tenant-id": DROP,
            "x-hasura-user-id": DROP,
            "x-hasura-allowed-roles": DROP,
            **self.model.hasura_claims(client_id, username),
        }
        user = self.model.user(username)
        return self.keycloak.mint(
            self.realm,
            sub=user["id"],
            roles=sorted(self.model.effective_realm_roles(user)),
            azp=client_id,
            hasura_claims=claims,
        )


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    env = resolved_environment("webhook")
    realm = load_json(demo_realm_path())
    async with FakeKeycloak.start(issuer_base=env["KEYCLOAK_ISSUER_URL"]) as keycloak:
        keycloak.add_realm(realm["realm"])
        database = f"sqlite+aiosqlite:///{tmp_path / 'stack.sqlite3'}"
        # What the webhook-migrate job does before the service starts.
        engine = make_engine(database)
        try:
            await migrate(engine)
        finally:
            await engine.dispose()
        # The stand-ins replace the keycloak and postgres services; the provisioning worker would
        # call Keycloak's admin API, which the fake does not serve.
        env |= {"KEYCLOAK_URL": keycloak.url, "DATABASE_URL": database, "PROVISIONING_WORKER": "false"}
        app = create_app(Settings.from_environ(env), Dependencies(decision_log=DecisionLog(io.BytesIO())))
        async with (
            httpx.AsyncClient(timeout=10) as client,
            serve_asgi(app, lifespan="on") as running,
        ):
            runtime = app.runtime
            assert runtime is not None and runtime.prefetch is not None
            await runtime.prefetch
            yield Stack(keycloak, app, running.url, client, RealmModel(realm))


async def test_ready_with_the_demo_realm_keys(stack: Stack) -> None:
    """/readyz is ready once the prefetched demo realm's keys are loaded (the compose healthcheck)."""
    response = await stack.client.get(f"{stack.url}/readyz")
    assert response.status_code == 200
    assert response.json()["realms"] == {stack.realm: "fresh"}


@pytest.mark.parametrize("mode", ["GET", "POST"])
async def test_demo_admin_token_opens_a_session(stack: Stack, mode: Literal["GET", "POST"]) -> None:
    """The demo admin's admin-portal token gives admin-user in the demo tenant, and may pick a permission role."""
    token = stack.token("admin-portal", "admin")
    expected_user = stack.model.user("admin")["id"]
    tenant_id = stack.realm.removeprefix("tenant-")
    verdict = await stack.hasura(mode).authenticate({"Authorization": f"Bearer {token}"})
    assert verdict.outcome == "session", verdict.hook_body
    assert verdict.session == {
        "x-hasura-role": "admin-user",
        "x-hasura-user-id": expected_user,
        "x-hasura-tenant-id": tenant_id,
    }
    assert verdict.expires_in is not None and 0 < verdict.expires_in <= 300
    chosen = await stack.hasura(mode).authenticate(
        {"Authorization": f"Bearer {token}", "X-Hasura-Role": "election-event-create"}
    )
    assert chosen.role == "election-event-create"


@pytest.mark.parametrize("mode", ["GET", "POST"])
async def test_service_account_token_opens_a_session(stack: Stack, mode: Literal["GET", "POST"]) -> None:
    """A client-credentials token of api-key-client (its service account's roles) gets admin-user."""
    token = stack.token("api-key-client", "service-account-api-key-client")
    verdict = await stack.hasura(mode).authenticate({"Authorization": f"Bearer {token}"})
    assert verdict.outcome == "session", verdict.hook_body
    assert verdict.role == "admin-user"


@pytest.mark.parametrize("mode", ["GET", "POST"])
async def test_voting_portal_default_role_needs_the_user_role(stack: Stack, mode: Literal["GET", "POST"]) -> None:
    """The admin has no `user` role, so the voting-portal mapper's default role `user` is refused (401)."""
    claims = stack.model.hasura_claims("voting-portal", "admin")
    assert claims[CLAIM_DEFAULT_ROLE] == "user" and "user" not in claims[CLAIM_ALLOWED_ROLES]
    verdict = await stack.hasura(mode).authenticate(
        {"Authorization": f"Bearer {stack.token('voting-portal', 'admin')}"}
    )
    assert verdict.outcome == "access-denied"
    assert b"role_not_allowed" in verdict.hook_body


async def test_forged_tenant_claim_is_refused(stack: Stack) -> None:
    """A demo-realm token claiming another tenant is refused: the hook binds iss -> realm -> tenant."""
    user = stack.model.user("admin")
    token = stack.keycloak.mint(
        stack.realm,
        sub=user["id"],
        hasura_claims={"x-hasura-tenant-id": "11111111-2222-4333-8444-555555555555", CLAIM_USER: user["id"]},
    )
    verdict = await stack.hasura("GET").authenticate({"Authorization": f"Bearer {token}"})
    assert verdict.outcome == "access-denied"
    assert b"realm_mismatch" in verdict.hook_body


async def test_jwks_serves_the_demo_realm_keys_for_jwt_mode(stack: Stack) -> None:
    """GET /jwks (Hasura JWT mode's jwk_url) lists the demo realm's signing key with a max-age."""
    response = await stack.client.get(f"{stack.url}/jwks")
    assert response.status_code == 200
    assert response.headers["cache-control"].startswith("max-age=")
    kids = {key["kid"] for key in response.json()["keys"]}
    assert kids == {stack.keycloak.realm(stack.realm).active_kid}


# ------------------------------------------------------------------------------------------ actions


def _action(name: str) -> dict[str, Any]:
    (action,) = [a for a in load_metadata(METADATA_DIR / "actions.yaml")["actions"] if a["name"] == name]
    found: dict[str, Any] = action
    return found


def _required_output_fields(action_name: str) -> tuple[str, ...]:
    """The non-null fields of the action's output type, from actions.graphql (what Hasura validates)."""
    document = parse((METADATA_DIR / "actions.graphql").read_text())
    objects = [d for d in document.definitions if isinstance(d, ObjectTypeDefinitionNode | ObjectTypeExtensionNode)]
    (field,) = [f for d in objects if d.name.value == "Mutation" for f in d.fields or () if f.name.value == action_name]
    output_type = field.type.type if isinstance(field.type, NonNullTypeNode) else field.type
    assert isinstance(output_type, NamedTypeNode), "an action returning a list is not modelled here"
    output = output_type.name.value
    (definition,) = [d for d in objects if d.name.value == output]
    return tuple(f.name.value for f in definition.fields or () if isinstance(f.type, NonNullTypeNode))


async def _call_action(stack: Stack, name: str, object_: dict[str, Any], mode: Literal["GET", "POST"]) -> Any:
    """Authenticate the demo admin through the hook, then call action `name` as the hasura service would."""
    token = stack.token("admin-portal", "admin")
    client_headers = {"Authorization": f"Bearer {token}", "X-Hasura-Role": "admin-user"}
    hasura = stack.hasura(mode)
    verdict = await hasura.authenticate(client_headers)
    assert verdict.outcome == "session" and verdict.session is not None, verdict.hook_body
    definition = _action(name)["definition"]
    assert verdict.role in {p["role"] for p in _action(name)["permissions"]}, "Hasura would hide the mutation"
    assert definition["kind"] == "synchronous" and definition["forward_client_headers"] is True
    env = resolved_environment("hasura")
    (secret,) = definition["headers"]
    handler = definition["handler"].replace("{{ACTIONS_BASE_URL}}", stack.url)
    assert definition["handler"].replace("{{ACTIONS_BASE_URL}}", env["ACTIONS_BASE_URL"]).startswith("http://webhook:")
    result = await hasura.call_action(
        name,
        {"object": object_},
        verdict.session,
        client_headers,
        secret=env[secret["value_from_env"]],
        secret_header=secret["name"],
        required=_required_output_fields(name),
        handler_url=handler,
        timeout_seconds=float(definition.get("timeout", 30)),
    )
    assert result.outcome == "data", result.body
    return result.data


async def _register_demo_tenant(stack: Stack, mode: Literal["GET", "POST"]) -> str:
    """README step 1: the demo tenant's admin registers the demo tenant itself (insertTenant is idempotent on id)."""
    tenant_id = stack.realm.removeprefix("tenant-")
    data = await _call_action(stack, "insertTenant", {"id": tenant_id, "slug": "demo"}, mode)
    assert (data["id"], data["realm"]) == (tenant_id, stack.realm)
    return tenant_id


@pytest.mark.parametrize("mode", ["GET", "POST"])
async def test_insert_election_event_through_hasura(stack: Stack, mode: Literal["GET", "POST"]) -> None:
    """Once the demo tenant is registered, its admin creates an election event; the event realm is queued."""
    tenant_id = await _register_demo_tenant(stack, mode)
    data = await _call_action(stack, "insertElectionEvent", {"tenant_id": tenant_id, "name": "Demo event"}, mode)
    assert data["realm"] == f"tenant-{tenant_id}-event-{data['id']}"
    assert data["provisioning"] in ("pending", "running", "done")


async def test_insert_tenant_through_hasura(stack: Stack) -> None:
    """The demo tenant is the stack's super-admin tenant: its admin creates another tenant, whose realm is queued."""
    data = await _call_action(stack, "insertTenant", {"slug": "acme"}, "GET")
    assert data["slug"] == "acme"
    assert data["realm"] == f"tenant-{data['id']}"
