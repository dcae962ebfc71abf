"""Back-channel logout against the real Keycloak 26: two `webhook serve` processes share PostgreSQL;
Keycloak's own logout POSTs end sessions on both within a second.

The realm is our tenant template rendered with BACKCHANNEL_LOGOUT_URL pointing at a recorder on
loopback that keeps each body Keycloak sends and forwards it to replica A (Keycloak's JVM POSTs
from 127.0.0.1). The realms import RSA keys this test holds, so it can also sign logout tokens
with a realm's real published key (missing `events`) or another realm's (a forgery).
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.requests import Request
from starlette.responses import Response

from tests.dbsupport import own_schema, postgres_url
from webhook.cli import main
from webhook.provisioning.templates import PortalUrls, load_template, render
from webhook.revocation.endpoint import PATH
from webhook.testing.keycloak import FakeKeycloak, sign_raw
from webhook.testing.realkeycloak import RealKeycloak
from webhook.testing.serveproc import ServeProcess, serve_replicas
from webhook.testing.server import serve_asgi_in_thread

pytestmark = pytest.mark.keycloak
PASSWORD = "correct horse battery staple"  # a throwaway test user
FANOUT_BOUND_SECONDS = 1.0


class Recorder:
    """ASGI app: records each form body Keycloak POSTs, forwards it to `target`, answers what it answered."""

    def __init__(self) -> None:
        self.target = ""
        self.bodies: list[bytes] = []
        self.received_at: list[float] = []  # time.monotonic() of each arrival

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        request = Request(scope, receive)
        body = await request.body()
        self.received_at.append(time.monotonic())
        self.bodies.append(body)
        async with httpx.AsyncClient(timeout=10) as client:
            answer = await client.post(
                self.target, content=body, headers={"Content-Type": request.headers.get("content-type", "")}
            )
        await Response(answer.content, status_code=answer.status_code)(scope, receive, send)

    def logout_tokens(self) -> list[str]:
        return [parse_qs(body.decode())["logout_token"][0] for body in self.bodies]

    def delivered(self, count: int) -> float:
        """When Keycloak's `count`-th back-channel POST arrived (waits for it, bounded: Keycloak sends
        from its own threads)."""
        deadline = time.monotonic() + 10.0
        while len(self.received_at) < count:
            assert time.monotonic() < deadline, f"Keycloak sent {len(self.received_at)} logouts, not {count}"
            time.sleep(0.01)
        return self.received_at[count - 1]


def _decode(segment: str) -> dict[str, Any]:
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    return decoded


def _parts(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    header, payload, _ = token.split(".")
    return _decode(header), _decode(payload)


def _key_provider(key: rsa.RSAPrivateKey) -> dict[str, Any]:
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    config = {"priority": ["500"], "enabled": ["true"], "active": ["true"], "algorithm": ["RS256"]}
    return {"name": "test-rsa", "providerId": "rsa", "config": {**config, "privateKey": [pem], "keyUse": ["SIG"]}}


def _realm(tenant: str, backchannel_url: str, key: rsa.RSAPrivateKey) -> dict[str, Any]:
    realm = render(
        load_template("tenant"), "tenant", tenant_id=tenant, urls=PortalUrls(backchannel_logout=backchannel_url)
    )
    for client in realm["clients"]:
        if client["clientId"] == "voting-portal":
            client["directAccessGrantsEnabled"] = True
    realm["components"] = {"org.keycloak.keys.KeyProvider": [_key_provider(key)]}
    realm["users"] = [
        {
            "username": "voter",
            "enabled": True,
            "email": "voter@example.org",
            "emailVerified": True,
            "firstName": "Vo",
            "lastName": "Ter",
            "realmRoles": ["user"],
            "credentials": [{"type": "password", "value": PASSWORD, "temporary": False}],
        }
    ]
    return realm


def _kid_of(keycloak: RealKeycloak, realm: str, key: rsa.RSAPrivateKey) -> str:
    n = key.public_key().public_numbers().n
    n_b64 = base64.urlsafe_b64encode(n.to_bytes((n.bit_length() + 7) // 8, "big")).rstrip(b"=").decode()
    jwks = httpx.get(f"{keycloak.url}/realms/{realm}/protocol/openid-connect/certs", timeout=30).json()
    return next(str(k["kid"]) for k in jwks["keys"] if k.get("n") == n_b64)


def _hook(replica: ServeProcess, token: str) -> tuple[int, str | None]:
    answer = httpx.get(f"{replica.url}/hasura/auth", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    return answer.status_code, answer.json().get("reason")


def _until_revoked(replicas: list[ServeProcess], token: str, started: float) -> list[float]:
    """Seconds from `started` until each replica answers session_revoked (polled; bounded at 10 s)."""
    lags: list[float] = []
    for replica in replicas:
        while _hook(replica, token) != (401, "session_revoked"):
            assert time.monotonic() - started < 10.0, f"{replica.url} still accepts a logged-out session"
        lags.append(time.monotonic() - started)
    return lags


def _post_logout(replica: ServeProcess, token: str) -> tuple[int, str | None]:
    answer = httpx.post(f"{replica.url}{PATH}", data={"logout_token": token}, timeout=10)
    return answer.status_code, (answer.json().get("reason") if answer.content else None)


@pytest.fixture
def schema() -> Iterator[str]:
    with own_schema(postgres_url(), "kc_revocation") as name:
        assert name is not None
        yield name


def test_keycloak_logouts_end_sessions_on_every_replica_within_a_second(
    real_keycloak: RealKeycloak, tmp_path: Path, schema: str
) -> None:
    """A user's logout at Keycloak's logout endpoint ends that session on both replicas within 1 s while
    their other session works; the real logout token has the fake's shape; replayed, forged with another
    realm's key, or lacking `events`, a logout token revokes nothing; an admin's `users/{id}/logout` ends
    every session of the user on both replicas within 1 s."""
    tenant, other_tenant = str(uuid.uuid4()), str(uuid.uuid4())
    realm, other_realm = f"tenant-{tenant}", f"tenant-{other_tenant}"
    env = {
        "KEYCLOAK_URL": real_keycloak.url,
        "DATABASE_URL": postgres_url(),
        "DATABASE_SCHEMA": schema,
        "DATABASE_AUTO_MIGRATE": "false",
        "REVOCATIONS": "true",
        "REVOCATION_MAX_TOKEN_LIFETIME_SECONDS": "300",
        "LOG_LEVEL": "warning",
    }
    migrated = CliRunner().invoke(main, ["db", "upgrade"], env=env)
    assert migrated.exit_code == 0, migrated.output
    key, other_key = (rsa.generate_private_key(public_exponent=65537, key_size=2048) for _ in range(2))
    recorder = Recorder()
    with (
        serve_replicas(2, env, tmp_path) as (first, second),
        serve_asgi_in_thread(recorder, lifespan="off") as proxy,
        real_keycloak.admin() as admin,
    ):
        recorder.target = f"{first.url}{PATH}"
        for tid, k in ((tenant, key), (other_tenant, other_key)):
            created = admin.post("", json=_realm(tid, f"{proxy.url}{PATH}", k))
            assert created.status_code == 201, created.text
        try:
            grant = {"grant_type": "password", "client_id": "voting-portal", "username": "voter", "password": PASSWORD}
            one, two = real_keycloak.token(realm, **grant), real_keycloak.token(realm, **grant)
            for replica in (first, second):
                assert _hook(replica, one["access_token"])[0] == 200
                assert _hook(replica, two["access_token"])[0] == 200

            logout = httpx.post(
                f"{real_keycloak.url}/realms/{realm}/protocol/openid-connect/logout",
                data={"client_id": "voting-portal", "refresh_token": one["refresh_token"]},
                timeout=30,
            )
            assert logout.status_code == 204
            lags = _until_revoked([first, second], one["access_token"], recorder.delivered(1))
            assert max(lags) < FANOUT_BOUND_SECONDS, lags  # from Keycloak's back-channel POST reaching us
            assert _hook(first, two["access_token"]) == (200, None)
            assert _hook(second, two["access_token"]) == (200, None)

            real = recorder.logout_tokens()[-1]
            header, claims = _parts(real)
            fake = FakeKeycloak(issuer_base=real_keycloak.url)
            fake.add_realm(realm)
            fake_header, fake_claims = _parts(fake.logout_token(realm, sub=claims["sub"], sid=claims["sid"]))
            assert list(header) == list(fake_header)
            assert header["typ"] == fake_header["typ"] == "logout+jwt"
            assert list(claims) == list(fake_claims)
            assert (claims["typ"], claims["aud"], claims["exp"] - claims["iat"]) == ("Logout", "voting-portal", 120)
            assert claims["events"] == fake_claims["events"]

            assert _post_logout(second, real) == (400, "token_replayed")
            kid = _kid_of(real_keycloak, realm, key)
            forged = {**claims, "jti": str(uuid.uuid4()), "sid": _parts(two["access_token"])[1]["sid"]}
            protected = {"alg": "RS256", "typ": "logout+jwt", "kid": kid}
            assert _post_logout(second, sign_raw(protected, forged, other_key, alg="RS256")) == (400, "bad_signature")
            no_events = {k: v for k, v in forged.items() if k != "events"}
            assert _post_logout(second, sign_raw(protected, no_events, key, alg="RS256")) == (400, "claims_invalid")
            assert _hook(first, two["access_token"]) == (200, None)
            assert _hook(second, two["access_token"]) == (200, None)

            three = real_keycloak.token(realm, **grant)
            user = admin.get(f"/{realm}/users", params={"username": "voter"}).json()[0]["id"]
            assert admin.post(f"/{realm}/users/{user}/logout").status_code == 204
            delivered = recorder.delivered(3)  # one logout token per remaining session (two, three)
            for token in (two["access_token"], three["access_token"]):
                lags = _until_revoked([first, second], token, delivered)
                assert max(lags) < FANOUT_BOUND_SECONDS, lags
        finally:
            admin.delete(f"/{realm}")
            admin.delete(f"/{other_realm}")
