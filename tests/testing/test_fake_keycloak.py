"""Tests of the fake Keycloak and the attacker host: what they serve, mint, count and how they misbehave."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import uuid
from typing import Any

import anyio
import httpx
import pytest
from joserfc import jwt
from joserfc.errors import BadSignatureError, InvalidKeyIdError
from joserfc.jwk import ECKey, JWKRegistry, KeySet, KeySetSerialization, RSAKey

from webhook.testing.keycloak import (
    DROP,
    HASURA_CLAIMS,
    ROLES,
    AttackerHost,
    FakeKeycloak,
    FakeRealm,
    attacker_key,
    sign_raw,
)

pytestmark = pytest.mark.anyio

CLAIM_ORDER = [
    "exp",
    "iat",
    "jti",
    "iss",
    "aud",
    "sub",
    "typ",
    "azp",
    "sid",
    "acr",
    "allowed-origins",
    "realm_access",
    "resource_access",
    "scope",
    "email_verified",
    HASURA_CLAIMS,
    "name",
    "preferred_username",
    "given_name",
    "family_name",
    "email",
]


def tenant_realm(keycloak: FakeKeycloak, **options: Any) -> FakeRealm:
    return keycloak.add_realm(f"tenant-{uuid.uuid4()}", **options)


def segments(token: str) -> tuple[dict[str, Any], dict[str, Any], bytes]:
    header, payload, signature = token.split(".")

    def decode(part: str) -> bytes:
        return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))

    return json.loads(decode(header)), json.loads(decode(payload)), decode(signature)


def rfc7638_thumbprint(jwk: dict[str, Any]) -> str:
    members = {"RSA": ("e", "kty", "n"), "EC": ("crv", "kty", "x", "y")}[jwk["kty"]]
    canonical = json.dumps({name: jwk[name] for name in members}, separators=(",", ":"), sort_keys=True)
    return base64.urlsafe_b64encode(hashlib.sha256(canonical.encode()).digest()).rstrip(b"=").decode()


def keycloak_key_id(jwk: dict[str, Any]) -> str:
    """Keycloak's KeyUtils.createKeyId, computed from the published key: base64url(SHA-256(SPKI DER))."""
    key = JWKRegistry.import_key(jwk)
    assert isinstance(key, RSAKey | ECKey)
    der = key.as_der(private=False)
    return base64.urlsafe_b64encode(hashlib.sha256(der).digest()).rstrip(b"=").decode()


async def served_jwks(http: httpx.AsyncClient, realm: FakeRealm) -> KeySetSerialization:
    response = await http.get(realm.jwks_url)
    assert response.status_code == 200
    body: KeySetSerialization = response.json()
    return body


def published(realm: FakeRealm) -> list[tuple[str, str]]:
    """(use, kid) of every key the realm publishes, in JWKS order."""
    return [(str(key["use"]), str(key["kid"])) for key in realm.jwks()["keys"]]


# ---------------------------------------------------------------------------------------- serving


async def test_jwks_serves_sig_and_enc_keys_like_keycloak(keycloak: FakeKeycloak, http: httpx.AsyncClient) -> None:
    """The certs endpoint serves one RS256 sig key and one RSA-OAEP enc key, with no-cache."""
    realm = tenant_realm(keycloak)
    response = await http.get(f"{keycloak.url}/realms/{realm.name}/protocol/openid-connect/certs")
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-cache"
    assert response.headers["content-type"] == "application/json"
    keys = response.json()["keys"]
    assert [(key["use"], key["alg"], key["kty"]) for key in keys] == [
        ("sig", "RS256", "RSA"),
        ("enc", "RSA-OAEP", "RSA"),
    ]
    assert [key["kid"] for key in keys] == [realm.active_kid, realm.enc_kid]
    for key in keys:
        assert key["kid"] == keycloak_key_id(key)
        assert not {"d", "p", "q", "dp", "dq", "qi"} & set(key)
        assert set(key) >= {"n", "e", "x5c", "x5t", "x5t#S256"}


async def test_realm_without_enc_key_publishes_only_sig(keycloak: FakeKeycloak, http: httpx.AsyncClient) -> None:
    """with_enc_key=False publishes only the signing keys."""
    realm = tenant_realm(keycloak, with_enc_key=False)
    assert realm.enc_kid is None
    assert [key["use"] for key in (await served_jwks(http, realm))["keys"]] == ["sig"]


async def test_unknown_realm_is_a_keycloak_404(keycloak: FakeKeycloak, http: httpx.AsyncClient) -> None:
    """Both realm endpoints answer 404 {"error": "Realm does not exist"} for an unknown realm."""
    for path in ("protocol/openid-connect/certs", ".well-known/openid-configuration"):
        response = await http.get(f"{keycloak.url}/realms/no-such-realm/{path}")
        assert response.status_code == 404
        assert response.json() == {"error": "Realm does not exist"}


async def test_other_paths_are_404(keycloak: FakeKeycloak, http: httpx.AsyncClient) -> None:
    """Paths outside the two realm endpoints are 404, and still recorded."""
    realm = tenant_realm(keycloak)
    for path in ("/", "/admin/realms", f"/realms/{realm.name}", f"/realms/{realm.name}/certs"):
        assert (await http.get(keycloak.url + path)).status_code == 404
    assert [path for _, path in keycloak.requests] == [
        "/",
        "/admin/realms",
        f"/realms/{realm.name}",
        f"/realms/{realm.name}/certs",
    ]


async def test_openid_configuration_uses_public_issuer(http: httpx.AsyncClient) -> None:
    """The discovery document and iss use the public issuer base while keys are served internally."""
    async with FakeKeycloak.start(issuer_base="https://keycloak-staging") as keycloak:
        realm = tenant_realm(keycloak)
        response = await http.get(f"{keycloak.url}/realms/{realm.name}/.well-known/openid-configuration")
        document = response.json()
        issuer = f"https://keycloak-staging/realms/{realm.name}"
        assert document["issuer"] == realm.issuer == issuer
        assert document["jwks_uri"] == f"{issuer}/protocol/openid-connect/certs"
        assert document["token_endpoint"] == f"{issuer}/protocol/openid-connect/token"
        assert realm.jwks_url.startswith(keycloak.url)
        assert segments(keycloak.mint(realm.name))[1]["iss"] == issuer


async def test_counters_count_requests_and_fetches(keycloak: FakeKeycloak, http: httpx.AsyncClient) -> None:
    """jwks_fetches counts certs requests per realm name (unknown ones too); requests records all."""
    realm = tenant_realm(keycloak)
    await http.get(realm.jwks_url)
    await http.get(realm.jwks_url)
    await http.get(f"{keycloak.url}/realms/ghost/protocol/openid-connect/certs")
    await http.get(f"{keycloak.url}/realms/{realm.name}/.well-known/openid-configuration")
    assert keycloak.jwks_fetches == {realm.name: 2, "ghost": 1}
    assert keycloak.total_requests == 4
    assert keycloak.requests[0] == ("GET", f"/realms/{realm.name}/protocol/openid-connect/certs")
    keycloak.reset_counters()
    assert keycloak.total_requests == 0
    assert not keycloak.jwks_fetches


# ----------------------------------------------------------------------------------------- tokens


async def test_minted_token_verifies_against_served_jwks(keycloak: FakeKeycloak, http: httpx.AsyncClient) -> None:
    """A minted token verifies with joserfc against the JWKS the fake serves."""
    realm = tenant_realm(keycloak)
    token = keycloak.mint(realm.name)
    decoded = jwt.decode(token, KeySet.import_key_set(await served_jwks(http, realm)))
    assert decoded.header == {"alg": "RS256", "typ": "JWT", "kid": realm.active_kid}
    assert decoded.claims["iss"] == realm.issuer


async def test_token_has_keycloak_admin_shape_and_size(keycloak: FakeKeycloak) -> None:
    """Default claims follow the real admin token: 62 roles, Bearer, tenant claim, ~4.7 KB."""
    realm = tenant_realm(keycloak)
    token = keycloak.mint(realm.name, sub="a20376d6-e53a-4edf-afc3-cc18bb8e23e5", now=1_721_256_541)
    assert 4_000 <= len(token) <= 6_000
    _, claims, _ = segments(token)
    assert list(claims) == CLAIM_ORDER
    assert claims["exp"] - claims["iat"] == 300
    assert (claims["aud"], claims["typ"], claims["azp"], claims["acr"]) == ("account", "Bearer", "admin-portal", "1")
    assert "session_state" not in claims  # gone from tokens since Keycloak 25; sid stays
    assert len(ROLES) == 62
    assert claims["realm_access"]["roles"] == list(ROLES)
    assert claims[HASURA_CLAIMS] == {
        "x-hasura-default-role": "admin-user",
        "x-hasura-tenant-id": realm.tenant_id,
        "x-hasura-user-id": "a20376d6-e53a-4edf-afc3-cc18bb8e23e5",
        "x-hasura-allowed-roles": list(ROLES),
    }


async def test_event_and_plain_realms_shape_the_hasura_claims(keycloak: FakeKeycloak) -> None:
    """An event realm adds x-hasura-event-id; a non-tenant realm has no tenant claim."""
    tenant, event = str(uuid.uuid4()), str(uuid.uuid4())
    realm = keycloak.add_realm(f"tenant-{tenant}-event-{event}")
    assert (realm.tenant_id, realm.event_id) == (tenant, event)
    hasura = segments(keycloak.mint(realm.name))[1][HASURA_CLAIMS]
    assert (hasura["x-hasura-tenant-id"], hasura["x-hasura-event-id"]) == (tenant, event)
    master = keycloak.add_realm("master")
    assert (master.tenant_id, master.event_id) == (None, None)
    assert set(segments(keycloak.mint("master"))[1][HASURA_CLAIMS]) == {
        "x-hasura-default-role",
        "x-hasura-user-id",
        "x-hasura-allowed-roles",
    }


async def test_mint_overrides_and_drop(keycloak: FakeKeycloak) -> None:
    """claims, hasura_claims and header merge over the defaults; DROP removes a field."""
    realm = tenant_realm(keycloak)
    token = keycloak.mint(
        realm.name,
        roles=["voter"],
        default_role="voter",
        typ="ID",
        azp="voting-portal",
        claims={"aud": ["account", "hasura"], "exp": DROP, "extra": 1},
        hasura_claims={"x-hasura-tenant-id": DROP, "x-hasura-area-id": "a1"},
        header={"typ": DROP, "jku": "https://evil.example/jwks"},
    )
    header, claims, _ = segments(token)
    assert header == {"alg": "RS256", "kid": realm.active_kid, "jku": "https://evil.example/jwks"}
    assert "exp" not in claims
    assert (claims["aud"], claims["extra"], claims["typ"], claims["azp"]) == (
        ["account", "hasura"],
        1,
        "ID",
        "voting-portal",
    )
    assert claims[HASURA_CLAIMS] == {
        "x-hasura-default-role": "voter",
        "x-hasura-user-id": claims["sub"],
        "x-hasura-allowed-roles": ["voter"],
        "x-hasura-area-id": "a1",
    }


async def test_mint_with_enc_key_signs_with_it(keycloak: FakeKeycloak) -> None:
    """kid=enc_kid signs with the encryption key, which the served key set refuses for signatures."""
    realm = tenant_realm(keycloak)
    assert realm.enc_kid is not None
    token = keycloak.mint(realm.name, kid=realm.enc_kid)
    assert segments(token)[0] == {"alg": "RS256", "typ": "JWT", "kid": realm.enc_kid}
    jwt.decode(token, RSAKey.import_key(realm.public_key_pem(realm.enc_kid)))
    with pytest.raises(InvalidKeyIdError):
        jwt.decode(token, KeySet.import_key_set(realm.jwks()))


async def test_mint_with_foreign_key_fails_verification(keycloak: FakeKeycloak) -> None:
    """signing_key signs with an outside key under the realm's kid: the signature does not verify."""
    realm = tenant_realm(keycloak)
    token = keycloak.mint(realm.name, signing_key=attacker_key())
    assert segments(token)[0]["kid"] == realm.active_kid
    with pytest.raises(BadSignatureError):
        jwt.decode(token, KeySet.import_key_set(realm.jwks()))


@pytest.mark.parametrize("form", ["joserfc", "pem-bytes", "pem-str", "cryptography"])
@pytest.mark.parametrize("algorithm", ["RS256", "ES256"])
async def test_foreign_key_forms_sign_with_their_natural_alg(keycloak: FakeKeycloak, algorithm: str, form: str) -> None:
    """A foreign key given as a joserfc key, a PEM or a cryptography key signs with its own algorithm."""
    realm = keycloak.add_realm("master")
    foreign = attacker_key(algorithm)
    pem = foreign.as_pem(private=True)
    given: Any = {"joserfc": foreign, "pem-bytes": pem, "pem-str": pem.decode(), "cryptography": foreign.private_key}
    token = keycloak.mint(realm.name, signing_key=given[form])
    assert segments(token)[0]["alg"] == algorithm
    verifier = KeySet.import_key_set({"keys": [{**foreign.as_dict(private=False), "kid": realm.active_kid}]})
    jwt.decode(token, verifier)


async def test_ps256_realm_tokens_verify(keycloak: FakeKeycloak) -> None:
    """A PS256 realm signs with RSASSA-PSS."""
    realm = keycloak.add_realm("master", algorithms=("PS256",))
    decoded = jwt.decode(keycloak.mint(realm.name), KeySet.import_key_set(realm.jwks()), algorithms=["PS256"])
    assert decoded.header["alg"] == "PS256"


async def test_sign_raw_crafts_none_and_hmac_confusion_tokens(keycloak: FakeKeycloak) -> None:
    """sign_raw gives alg none an empty signature and HMACs with a public PEM as secret."""
    realm = tenant_realm(keycloak)
    unsigned = sign_raw({"alg": "none", "typ": "JWT"}, {"sub": "x"}, None)
    assert unsigned.endswith(".")
    assert segments(unsigned)[:2] == ({"alg": "none", "typ": "JWT"}, {"sub": "x"})

    secret = realm.public_key_pem()
    confused = keycloak.mint(realm.name, alg="HS256", signing_key=secret)
    header_part, payload_part, _ = confused.split(".")
    assert segments(confused)[0] == {"alg": "HS256", "typ": "JWT", "kid": realm.active_kid}
    expected = hmac.new(secret, f"{header_part}.{payload_part}".encode(), hashlib.sha256).digest()
    assert segments(confused)[2] == expected

    raw = sign_raw({"alg": "RS256", "kid": "k"}, b"not json", realm.private_key())
    assert base64.urlsafe_b64decode(raw.split(".")[1] + "==") == b"not json"


async def test_es256_realm_keys_and_tokens(keycloak: FakeKeycloak, http: httpx.AsyncClient) -> None:
    """An ES256 realm publishes an EC P-256 key and its tokens verify."""
    realm = tenant_realm(keycloak, algorithms=("ES256", "RS256"))
    keys = (await served_jwks(http, realm))["keys"]
    assert [(key["kty"], key["alg"], key.get("crv")) for key in keys if key["use"] == "sig"] == [
        ("EC", "ES256", "P-256"),
        ("RSA", "RS256", None),
    ]
    assert keys[0]["kid"] == keycloak_key_id(keys[0]) == realm.active_kid
    token = keycloak.mint(realm.name)
    assert jwt.decode(token, KeySet.import_key_set(realm.jwks())).header["alg"] == "ES256"
    rs_kid = realm.signing_kids[1]
    assert jwt.decode(keycloak.mint(realm.name, kid=rs_kid), KeySet.import_key_set(realm.jwks())).header == {
        "alg": "RS256",
        "typ": "JWT",
        "kid": rs_kid,
    }


# ------------------------------------------------------------------------------------------- keys


async def test_rotate_keeps_or_replaces_old_keys(keycloak: FakeKeycloak, http: httpx.AsyncClient) -> None:
    """rotate publishes a new active key beside the old one, or alone with keep_old=False."""
    realm = tenant_realm(keycloak)
    old_kid = realm.active_kid
    old_token = keycloak.mint(realm.name)
    new_kid = realm.rotate()
    assert (realm.signing_kids, realm.active_kid) == ((old_kid, new_kid), new_kid)
    served = KeySet.import_key_set(await served_jwks(http, realm))
    jwt.decode(old_token, served)
    assert jwt.decode(keycloak.mint(realm.name), served).header["kid"] == new_kid

    newest = realm.rotate(keep_old=False, algorithm="ES256")
    assert published(realm) == [("sig", newest), ("enc", realm.enc_kid)]
    with pytest.raises(InvalidKeyIdError):
        jwt.decode(old_token, KeySet.import_key_set(await served_jwks(http, realm)))


async def test_remove_key(keycloak: FakeKeycloak) -> None:
    """remove_key unpublishes a sig or enc key; the newest remaining sig key becomes active."""
    realm = tenant_realm(keycloak)
    first, enc = realm.active_kid, realm.enc_kid
    assert enc is not None
    second = realm.rotate()
    realm.remove_key(second)
    assert published(realm) == [("sig", first), ("enc", enc)]
    assert segments(keycloak.mint(realm.name))[0]["kid"] == first
    realm.remove_key(enc)
    assert published(realm) == [("sig", first)]
    with pytest.raises(KeyError):
        realm.remove_key("no-such-kid")
    realm.remove_key(first)
    with pytest.raises(LookupError):
        keycloak.mint(realm.name)


async def test_signing_key_pem_round_trips() -> None:
    """A realm created from another's signing_key_pem has the same kid and verifies its tokens."""
    first = FakeKeycloak(issuer_base="http://keycloak:8080")
    second = FakeKeycloak(issuer_base="http://keycloak:8080")
    original = first.add_realm("master")
    restored = second.add_realm("master", signing_key_pem=original.signing_key_pem())
    assert restored.active_kid == original.active_kid
    assert original.signing_key_pem().startswith(b"-----BEGIN PRIVATE KEY-----")
    jwt.decode(first.mint("master"), KeySet.import_key_set(restored.jwks()))


async def test_keys_are_distinct_within_one_fake() -> None:
    """Every key of one FakeKeycloak is distinct, while a second fake reuses the pooled keys."""
    first = FakeKeycloak(issuer_base="http://a")
    second = FakeKeycloak(issuer_base="http://b")
    kids: list[str] = []
    for index in range(3):
        realm = first.add_realm(f"realm-{index}")
        assert realm.enc_kid is not None
        kids += [*realm.signing_kids, realm.enc_kid]
    assert len(set(kids)) == len(kids) == 6
    assert second.add_realm("realm-0").active_kid == kids[0]
    assert attacker_key().thumbprint() not in kids


async def test_duplicate_realm_is_refused(keycloak: FakeKeycloak) -> None:
    """Adding a realm name twice raises ValueError."""
    keycloak.add_realm("master")
    with pytest.raises(ValueError, match="already exists"):
        keycloak.add_realm("master")


# -------------------------------------------------------------------------------------- behaviour


async def test_down_answers_503(keycloak: FakeKeycloak, http: httpx.AsyncClient) -> None:
    """down: both realm endpoints answer 503, and the fetch is still counted."""
    realm = tenant_realm(keycloak)
    keycloak.set_behaviour("down")
    assert (await http.get(realm.jwks_url)).status_code == 503
    assert (await http.get(f"{keycloak.url}/realms/{realm.name}/.well-known/openid-configuration")).status_code == 503
    assert keycloak.jwks_fetches[realm.name] == 1


async def test_garbage_answers_200_non_json(keycloak: FakeKeycloak, http: httpx.AsyncClient) -> None:
    """garbage: 200 with bytes that are not JSON."""
    realm = tenant_realm(keycloak)
    keycloak.set_behaviour("garbage")
    response = await http.get(realm.jwks_url)
    assert response.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        json.loads(response.content.decode("utf-8", "replace"))


async def test_html_answers_200_html(keycloak: FakeKeycloak, http: httpx.AsyncClient) -> None:
    """html: 200 with a text/html page."""
    realm = tenant_realm(keycloak)
    keycloak.set_behaviour("html")
    response = await http.get(realm.jwks_url)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert response.text.startswith("<!DOCTYPE html>")


async def test_huge_streams_ten_megabytes_of_json(keycloak: FakeKeycloak, http: httpx.AsyncClient) -> None:
    """huge: 200 with a ~10 MB JSON body streamed without Content-Length."""
    realm = tenant_realm(keycloak)
    keycloak.set_behaviour("huge")
    async with http.stream("GET", realm.jwks_url) as response:
        assert response.status_code == 200
        assert "content-length" not in response.headers
        body = b"".join([chunk async for chunk in response.aiter_bytes()])
    assert len(body) >= 10_000_000
    assert json.loads(body)["keys"] == []


async def test_redirect_answers_302_elsewhere(keycloak: FakeKeycloak, http: httpx.AsyncClient) -> None:
    """redirect: 302 to http://127.0.0.1:<port>/evil (or redirect_to), not followed by the fake itself."""
    realm = tenant_realm(keycloak)
    keycloak.set_behaviour("redirect")
    response = await http.get(realm.jwks_url)
    assert response.status_code == 302
    assert response.headers["location"] == f"{keycloak.url}/evil"
    assert response.headers["location"].startswith("http://127.0.0.1:")
    keycloak.set_behaviour("redirect", redirect_to="http://127.0.0.1:9/elsewhere")
    assert (await http.get(realm.jwks_url)).headers["location"] == "http://127.0.0.1:9/elsewhere"
    assert all(path != "/evil" for _, path in keycloak.requests)


async def test_empty_keys_answers_an_empty_set(keycloak: FakeKeycloak, http: httpx.AsyncClient) -> None:
    """empty_keys: the certs endpoint answers {"keys": []}."""
    realm = tenant_realm(keycloak)
    keycloak.set_behaviour("empty_keys")
    assert await served_jwks(http, realm) == {"keys": []}


async def test_behaviour_can_target_one_realm(keycloak: FakeKeycloak, http: httpx.AsyncClient) -> None:
    """A per-realm mode leaves the other realms alone; a global mode clears per-realm ones."""
    sick, healthy = tenant_realm(keycloak), tenant_realm(keycloak)
    keycloak.set_behaviour("down", sick.name)
    assert (await http.get(sick.jwks_url)).status_code == 503
    assert (await http.get(healthy.jwks_url)).status_code == 200
    keycloak.set_behaviour("ok")
    assert (await http.get(sick.jwks_url)).status_code == 200


async def test_slow_holds_requests_until_released(keycloak: FakeKeycloak, http: httpx.AsyncClient) -> None:
    """slow: the request is counted on arrival and answered only after release_slow()."""
    realm = tenant_realm(keycloak)
    keycloak.set_behaviour("slow")
    pending = asyncio.create_task(http.get(realm.jwks_url))
    with anyio.fail_after(5):
        await keycloak.wait_for_jwks_fetches(realm.name)
    assert not pending.done()
    keycloak.release_slow()
    with anyio.fail_after(5):
        response = await pending
    assert response.status_code == 200
    assert response.json() == realm.jwks()


async def test_slow_requests_are_released_at_shutdown(http: httpx.AsyncClient) -> None:
    """Stopping the fake releases requests held by slow instead of hanging."""
    with anyio.fail_after(5):
        async with FakeKeycloak.start() as keycloak:
            realm = tenant_realm(keycloak)
            keycloak.set_behaviour("slow")
            pending = asyncio.create_task(http.get(realm.jwks_url))
            await keycloak.wait_for_jwks_fetches(realm.name)
        assert (await pending).status_code == 200


# --------------------------------------------------------------------------------------- attacker


async def test_attacker_host_records_every_hit(http: httpx.AsyncClient) -> None:
    """The attacker host answers any request with its JWKS and records method, path, query, headers."""
    async with AttackerHost.start() as attacker:
        assert attacker.hits == []
        response = await http.get(f"{attacker.url}/jwks.json?x=1", headers={"X-Probe": "yes"})
        await http.post(f"{attacker.url}/x5u", content=b"{}")
    assert response.status_code == 200
    (key,) = response.json()["keys"]
    assert key["kid"] == attacker.kid == rfc7638_thumbprint(key)
    assert [(hit.method, hit.path, hit.query) for hit in attacker.hits] == [
        ("GET", "/jwks.json", "x=1"),
        ("POST", "/x5u", ""),
    ]
    assert ("x-probe", "yes") in attacker.hits[0].headers
    assert attacker.jwks_url.endswith("/jwks.json")


def test_serve_in_thread_for_sync_callers() -> None:
    """serve_in_thread serves the fake from a background thread; issuer_base follows its URL."""
    keycloak = FakeKeycloak()
    realm = keycloak.add_realm("master")
    with keycloak.serve_in_thread() as served:
        response = httpx.get(realm.jwks_url)
        assert response.status_code == 200
        assert realm.issuer == f"{served.url}/realms/master"
    assert keycloak.jwks_fetches == {"master": 1}
