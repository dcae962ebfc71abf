"""One contract, two servers: what the fake Keycloak models, checked against the fake and the real Keycloak 26.

``keycloak=fake`` runs in the fast suite; ``keycloak=real`` carries the ``keycloak`` marker and runs on
the session's real server. Each test states a behaviour of Keycloak's token/OIDC side that the hook
relies on or that the fake claims to reproduce (keycloak-real.md rows 8, 10, 12, 13 and the key
lifecycle): the certs document, the claims each grant produces, and key rotation done the Keycloak way
(add a higher-priority ``rsa-generated`` provider, make the old one passive, disable it, delete it),
with the JWKS fetches our hook makes at each step (``webhook_jwks_fetches_total``), then a deleted realm.

The hook runs on a manual monotonic clock (``JWKS_TTL_SECONDS=60``): moving it past the TTL is what
makes the hook refresh a realm's keys, so every fetch count below is exact rather than timed.
"""

from __future__ import annotations

import asyncio
import base64
import time
import warnings
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509

from tests.keycloak.servers import ContractServer, FakeServer, RealServer, TokenKind
from tests.keycloak.support import HookStack, claims_of, header_of, hook_stack
from tests.security.support import OffsetClock
from webhook.testing.keycloak import FakeKeycloak, keycloak_kid

pytestmark = pytest.mark.anyio

TTL = 60
HOOK_ENV = {"JWKS_TTL_SECONDS": str(TTL), "JWKS_MIN_REFETCH_SECONDS": "10"}


@pytest.fixture(params=["fake", pytest.param("real", marks=pytest.mark.keycloak)], ids=lambda p: f"keycloak={p}")
async def server(request: pytest.FixtureRequest) -> AsyncIterator[ContractServer]:
    if request.param == "fake":
        async with FakeKeycloak.start() as fake:
            yield FakeServer(fake)
    else:
        real = request.getfixturevalue("real_keycloak")
        async with httpx.AsyncClient(timeout=60) as client:
            yield RealServer(real.url, client)


@pytest.fixture
def clock() -> OffsetClock:
    return OffsetClock()


@pytest.fixture
async def hook(server: ContractServer, clock: OffsetClock, tmp_path: Path) -> AsyncIterator[HookStack]:
    async with hook_stack(server.url, tmp_path, clock=clock, **HOOK_ENV) as stack:
        yield stack


async def until(condition: Callable[[], bool], what: str, deadline: float = 30.0) -> None:
    """Wait for a condition another task makes true (a background JWKS fetch), within a bounded deadline."""
    end = time.monotonic() + deadline
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def certs(client: httpx.AsyncClient, server: ContractServer, realm: str) -> httpx.Response:
    return await client.get(f"{server.url}/realms/{realm}/protocol/openid-connect/certs")


async def published_sig_kids(client: httpx.AsyncClient, server: ContractServer, realm: str) -> set[str]:
    response = await certs(client, server, realm)
    assert response.status_code == 200
    return {key["kid"] for key in response.json()["keys"] if key["use"] == "sig"}


def _common_name(jwk: dict[str, Any]) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # Keycloak's CN may pass X.509's 64-character bound
        certificate = x509.load_der_x509_certificate(base64.b64decode(jwk["x5c"][0]))
        return str(certificate.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value)


async def test_certs_document(server: ContractServer, hook: HookStack) -> None:
    """certs: 200 JSON with Cache-Control no-cache, one RS256 sig and one RSA-OAEP enc key, kid = base64url
    (SHA-256(SPKI)), x5c's CN the whole realm name; an unknown realm is 404 {"error": "Realm does not exist"}."""
    realm = await server.new_realm()
    response = await certs(hook.client, server, realm)
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-cache"
    assert response.headers["content-type"].startswith("application/json")
    keys = response.json()["keys"]
    assert sorted((key["use"], key["alg"], key["kty"]) for key in keys) == [
        ("enc", "RSA-OAEP", "RSA"),
        ("sig", "RS256", "RSA"),
    ]
    from joserfc.jwk import RSAKey

    for key in keys:
        assert key["kid"] == keycloak_kid(RSAKey.import_key(key))
        assert _common_name(key) == realm
    missing = await certs(hook.client, server, f"tenant-{'0' * 8}-0000-4000-8000-{'0' * 12}")
    assert (missing.status_code, missing.json()) == (404, {"error": "Realm does not exist"})


@pytest.mark.parametrize("kind", ["imported", "runtime", "service"])
async def test_claims_follow_the_grant_and_the_roles(server: ContractServer, hook: HookStack, kind: TokenKind) -> None:
    """No session_state (Keycloak 25+); sid and the openid scope only for a password grant; aud 'account' only
    with the default role (users and service accounts made at run time, not users imported with the realm);
    header alg/typ/kid. The administrators' tokens open admin-user sessions; the service account's (default
    roles only) is role_not_allowed."""
    realm = await server.new_realm()
    token = await server.token(realm, kind)
    header, claims = header_of(token), claims_of(token)
    assert set(header) == {"alg", "typ", "kid"} and header["typ"] == "JWT"
    assert claims["typ"] == "Bearer" and "session_state" not in claims
    scope = set(claims["scope"].split())
    if kind == "service":
        assert "sid" not in claims and scope == {"profile", "email"}
    else:
        assert isinstance(claims["sid"], str) and scope == {"openid", "profile", "email"}
    if kind != "imported":  # made at run time: the user, or the service account Keycloak creates
        assert claims["aud"] == "account"
        assert claims["resource_access"]["account"]["roles"]
    else:
        assert "aud" not in claims and "resource_access" not in claims
    verdict = await hook.decide(token)
    if kind == "service":
        assert b'"role_not_allowed"' in verdict.hook_body
    else:
        assert verdict.session is not None, verdict.hook_body
        assert verdict.session["x-hasura-role"] == "admin-user"
        assert verdict.session["x-hasura-user-id"] == claims["sub"]


async def test_key_rotation_the_keycloak_way(
    server: ContractServer, hook: HookStack, clock: OffsetClock, capsys: pytest.CaptureFixture[str]
) -> None:
    """A higher-priority key signs new tokens at once; the old key's tokens stay valid while it is published
    (active, then passive) and are unknown_kid once the hook refreshes after it was disabled or deleted. JWKS
    fetches: 1 first use, +1 for the new kid, then +1 per TTL refresh, never one per token."""
    realm = await server.new_realm()
    old_kid = await server.active_kid(realm)
    old_token = await server.token(realm, "imported")
    assert header_of(old_token)["kid"] == old_kid
    assert (await hook.decide(old_token)).session is not None
    counts = {"first use": hook.fetches()}
    assert counts["first use"] == 1

    new_kid = await server.rotate(realm)
    assert new_kid != old_kid
    assert await published_sig_kids(hook.client, server, realm) == {old_kid, new_kid}
    new_token = await server.token(realm, "imported")
    assert header_of(new_token)["kid"] == new_kid
    assert (await hook.decide(old_token)).session is not None
    clock.advance(11)  # past JWKS_MIN_REFETCH_SECONDS since the first fetch
    assert (await hook.decide(new_token)).session is not None
    counts["rotated (new kid seen)"] = hook.fetches()
    assert counts["rotated (new kid seen)"] == 2

    async def refresh() -> None:
        before = hook.fetches()
        clock.advance(TTL + 1)
        await hook.decide(new_token)  # a request past the TTL starts the background refresh
        await until(lambda: hook.fetches() > before, "the hook's JWKS refresh")

    await server.set_old_key(realm, "passive")
    assert await published_sig_kids(hook.client, server, realm) == {old_kid, new_kid}
    assert header_of(await server.token(realm, "imported"))["kid"] == new_kid
    await refresh()
    assert (await hook.decide(old_token)).session is not None, "a passive key still verifies"
    counts["old key passive, refreshed"] = hook.fetches()

    await server.set_old_key(realm, "disabled")
    assert await published_sig_kids(hook.client, server, realm) == {new_kid}
    assert (await hook.decide(old_token)).session is not None, "until its TTL the hook still holds the old key"
    await refresh()
    disabled = await hook.decide(old_token)
    assert b'"unknown_kid"' in disabled.hook_body
    assert (await hook.decide(new_token)).session is not None
    counts["old key disabled, refreshed"] = hook.fetches()

    await server.set_old_key(realm, "deleted")
    assert await published_sig_kids(hook.client, server, realm) == {new_kid}
    await refresh()
    assert b'"unknown_kid"' in (await hook.decide(old_token)).hook_body
    assert (await hook.decide(new_token)).session is not None
    counts["old key deleted, refreshed"] = hook.fetches()

    assert list(counts.values()) == [1, 2, 3, 4, 5]
    assert hook.fetches("not_found") == hook.fetches("http_error") == 0
    with capsys.disabled():
        print(f"\nrotation on {type(server).__name__}: JWKS fetches after each step {counts}")


async def test_a_deleted_realm_ends_as_unknown_realm(
    server: ContractServer, hook: HookStack, clock: OffsetClock
) -> None:
    """After the realm is deleted its tokens keep working only until the hook's next refresh (one TTL): then
    Keycloak's 404 makes them unknown_realm, and the negative cache answers without asking again."""
    realm = await server.new_realm()
    token = await server.token(realm, "imported")
    assert (await hook.decide(token)).session is not None
    await server.delete_realm(realm)
    assert (await certs(hook.client, server, realm)).status_code == 404
    assert (await hook.decide(token)).session is not None, "within the TTL the hook still has the keys"
    clock.advance(TTL + 1)
    await hook.decide(token)
    await until(lambda: hook.fetches("not_found") == 1, "the refresh that finds the realm gone")
    for _ in range(3):
        assert b'"unknown_realm"' in (await hook.decide(token)).hook_body
    assert hook.fetches("not_found") == 1 and hook.fetches() == 1
