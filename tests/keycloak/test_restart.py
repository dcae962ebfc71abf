"""Keycloak stopped and restarted under load: the hook makes no wrong decision and no 5xx, and recovers.

A second Keycloak of our own (never the session's) serves a tenant realm made from our template whose
signing key is an ``rsa`` key provider with a private key the test holds: the admin API never shows a
private key, and a restarted dev-mem Keycloak is empty, so the realm is re-imported from the same JSON
after the restart and its kid (derived from the public key) is the same. 64 concurrent connections
keep calling the hook (Hasura GET mode) with tokens issued before the stop and with forged ones, while
Keycloak goes down, comes back, and gets its realm again; the hook re-reads keys every 10 s
(``JWKS_TTL_SECONDS=10``) and verifies every request (``TOKEN_CACHE_SIZE=0``).
"""

from __future__ import annotations

import asyncio
import json
import random
import shutil
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.keycloak.support import PASSWORD, HookStack, bearer, header_of, hook_stack, imported_admin
from webhook.provisioning.templates import load_template, render
from webhook.testing.realkeycloak import RealKeycloak, start_keycloak

pytestmark = [pytest.mark.keycloak, pytest.mark.anyio]

CONNECTIONS = 64
PACE = 0.02  # seconds between two requests of one connection
SECRET = "restart-api-key-secret"


def realm_with_own_key() -> dict[str, Any]:
    """A tenant realm from our template, an administrator, and key providers whose RSA private key we hold."""
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    realm = render(load_template("tenant"), "tenant", tenant_id=str(uuid.uuid4()))
    # the pre-restart tokens must outlive a restart that takes minutes on a loaded machine
    realm["accessTokenLifespan"] = 3600
    next(c for c in realm["clients"] if c["clientId"] == "api-key-client")["secret"] = SECRET
    realm["users"] = [imported_admin("tenant-admin")]
    realm["components"] = {
        "org.keycloak.keys.KeyProvider": [
            {"name": "rsa-kept", "providerId": "rsa", "config": {"privateKey": [pem], "priority": ["100"]}},
            # refresh tokens are HS512: without an HMAC provider the password grant fails
            {"name": "hmac", "providerId": "hmac-generated", "config": {"priority": ["100"], "algorithm": ["HS512"]}},
        ]
    }
    return realm


def import_realm(server: RealKeycloak, realm: dict[str, Any]) -> None:
    with server.admin() as admin:
        response = admin.post("", json=realm)
        assert response.status_code == 201, response.text


def password_token(server: RealKeycloak, realm: str) -> str:
    answer = server.token(
        realm,
        grant_type="password",
        client_id="api-key-client",
        client_secret=SECRET,
        username="tenant-admin",
        password=PASSWORD,
    )
    return str(answer["access_token"])


def failed_fetches(hook: HookStack) -> int:
    return sum(hook.fetches(outcome) for outcome in ("network_error", "timeout", "http_error", "not_found"))


@pytest.fixture
def own_keycloak(tmp_path: Path) -> Iterator[RealKeycloak]:
    """A Keycloak of this test only (stopped and restarted by it), removed afterwards."""
    workdir = tmp_path / "own-keycloak"
    workdir.mkdir()
    server = start_keycloak(workdir)
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


@dataclass
class Load:
    """64 connections calling the hook until stopped; what each answer meant."""

    hook: HookStack
    valid: list[str]
    forged: list[str]
    outcomes: Counter[str] = field(default_factory=Counter)
    wrong: list[str] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def connection(self, seed: int) -> None:
        chooser = random.Random(seed)  # noqa: S311 - picking test tokens
        async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=1)) as client:
            hasura = self.hook.hasura("GET")
            hasura.client = client
            while not self.stop.is_set():
                good = chooser.random() < 0.9
                token = chooser.choice(self.valid if good else self.forged)
                verdict = await hasura.authenticate(bearer(token))
                status = verdict.hook_status
                reason = json.loads(verdict.hook_body).get("reason", "") if status == 401 else ""
                self.outcomes[f"{'valid' if good else 'forged'} {status} {reason}".strip()] += 1
                if status >= 500 or status == 0 or (status == 200) != good:
                    self.wrong.append(f"{'valid' if good else 'forged'} token answered {status} {reason}")
                await asyncio.sleep(PACE)  # pacing, so the JVM restarting on this 2-core machine gets some CPU


async def test_restart_under_load(
    own_keycloak: RealKeycloak, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Tokens issued before the stop keep opening sessions while Keycloak is down and after it returns with the
    same keys; forged ones stay refused; no 5xx; the hook fetches the restarted realm's keys again."""
    representation = realm_with_own_key()
    name = str(representation["realm"])
    import_realm(own_keycloak, representation)
    valid = [password_token(own_keycloak, name) for _ in range(16)]
    kid = header_of(valid[0])["kid"]
    forged = [token[:-8] + ("AAAAAAAA" if not token.endswith("AAAAAAAA") else "BBBBBBBB") for token in valid[:4]]
    async with hook_stack(
        own_keycloak.url, tmp_path, PREFETCH_REALMS=name, JWKS_TTL_SECONDS="10", TOKEN_CACHE_SIZE="0"
    ) as hook:
        load = Load(hook, valid, forged)
        workers = [asyncio.create_task(load.connection(seed)) for seed in range(CONNECTIONS)]
        try:
            began = time.monotonic()
            await asyncio.sleep(3)  # steady load before the stop (a duration of load, not a wait for a condition)
            await asyncio.to_thread(own_keycloak.stop)
            stopped = time.monotonic()
            failed_before = failed_fetches(hook)
            # A dev-mem Keycloak restarts empty: it imports the same realm JSON at startup (--import-realm,
            # as docker-compose does), so the realm exists before its HTTP port opens. (Importing it through
            # the admin API after the start leaves a window in which certs answers 404, and the hook rightly
            # forgets a realm Keycloak says is gone: see test_contract's deleted realm.)
            imports = own_keycloak.home / "data" / "import"
            imports.mkdir(parents=True, exist_ok=True)
            (imports / f"{name}.json").write_text(json.dumps(representation))
            own_keycloak.extra_args = ("--import-realm",)
            await asyncio.to_thread(own_keycloak.start)
            ready = time.monotonic()
            ok_before = hook.fetches()
            deadline = ready + 60
            while hook.fetches() == ok_before:
                assert time.monotonic() < deadline, "the hook never fetched the restarted realm's keys"
                await asyncio.sleep(0.05)
            refetched = time.monotonic()
            fresh = await asyncio.to_thread(password_token, own_keycloak, name)
            assert header_of(fresh)["kid"] == kid, "the re-imported realm signs with the same key"
            load.valid.append(fresh)
            verdict = await hook.decide(fresh)
            assert verdict.session is not None, verdict.hook_body
            accepted = time.monotonic()
            await asyncio.sleep(2)  # load after the recovery
        finally:
            load.stop.set()
            await asyncio.gather(*workers)
        failed = failed_fetches(hook) - failed_before
    total = sum(load.outcomes.values())
    figures = (
        f"\nrestart under load ({CONNECTIONS} connections): {total} requests in {time.monotonic() - began:.1f} s, "
        f"outcomes {dict(load.outcomes)}, wrong decisions {len(load.wrong)}; Keycloak down "
        f"{ready - stopped:.1f} s (stop, then a start that imports the realm), failed JWKS fetches meanwhile {failed}; "
        f"after it was ready: keys refetched in {refetched - ready:.1f} s, a new token accepted in "
        f"{accepted - ready:.1f} s"
    )
    with capsys.disabled():
        print(figures)
    assert load.wrong == [], load.wrong[:5]
    assert all(key.startswith(("valid 200", "forged 401")) for key in load.outcomes), load.outcomes
    assert load.outcomes["valid 200"] > 0
    assert failed >= 1, "the hook did try Keycloak while it was down"
