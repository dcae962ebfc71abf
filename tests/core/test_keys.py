"""webhook.core.keys: a Keycloak JWKS document turned into verification keys."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from webhook.core.keys import MAX_KEYS, JwksError, RealmKeys, parse_jwks

from .conftest import ALLOWED, EC_KID, ENC_KID, RSA_KID, TestKeys, jwk_of, jwks_bytes

PUBLIC_RSA = {"kty", "n", "e", "kid", "use", "alg"}
PRIVATE_MEMBERS = ("d", "p", "q", "dp", "dq", "qi")


def test_keycloak_jwks_keeps_sig_drops_enc(realm_keys: RealmKeys) -> None:
    """The RS256 and ES256 sig keys are kept; the RSA-OAEP enc key is dropped and counted."""
    assert set(realm_keys.by_kid) == {RSA_KID, EC_KID}
    assert ENC_KID not in realm_keys.by_kid
    assert realm_keys.ignored == 1
    assert realm_keys.by_kid[RSA_KID].algorithms == {"RS256"}
    assert realm_keys.by_kid[EC_KID].algorithms == {"ES256"}
    assert realm_keys.by_kid[RSA_KID].kid == RSA_KID


def test_public_jwk_is_normalised(keys: TestKeys, realm_keys: RealmKeys) -> None:
    """public_jwk holds only the public members plus kid/use/alg."""
    public = realm_keys.by_kid[RSA_KID].public_jwk
    assert set(public) == PUBLIC_RSA
    assert public["n"] == keys.rsa.as_dict(private=False)["n"]
    assert (public["kid"], public["use"], public["alg"]) == (RSA_KID, "sig", "RS256")


@pytest.mark.parametrize("use", ["enc", "SIG", "", None, 1])
def test_drops_keys_not_for_signing(keys: TestKeys, use: object) -> None:
    """A key whose `use` is anything but absent or "sig" is dropped (enc keys never verify)."""
    parsed = parse_jwks(jwks_bytes(jwk_of(keys.rsa, kid="k", use=use)), ALLOWED)
    assert parsed.by_kid == {}
    assert parsed.ignored == 1


def test_keeps_key_without_use(keys: TestKeys) -> None:
    """A key with no `use` member counts as a signing key."""
    parsed = parse_jwks(jwks_bytes(jwk_of(keys.rsa, kid="k", alg="RS256")), ALLOWED)
    assert set(parsed.by_kid) == {"k"}


@pytest.mark.parametrize(
    ("key_name", "alg", "allowed"),
    [
        ("rsa", "RS256", {"ES256"}),
        ("rsa", "PS256", {"RS256"}),
        ("rsa", "RSA-OAEP", {"RS256"}),
        ("rsa", "HS256", {"RS256", "HS256"}),
        ("rsa", "ES256", {"RS256", "ES256"}),  # alg of another key type
        ("ec", "ES256", {"RS256"}),
        ("ec", "ES384", {"ES256", "ES384"}),  # a P-256 key cannot serve ES384
        ("ec", "RS256", {"RS256"}),
        ("okp", "EdDSA", {"RS256"}),
    ],
)
def test_drops_keys_whose_alg_is_not_allowed(keys: TestKeys, key_name: str, alg: str, allowed: set[str]) -> None:
    """A key is dropped when its declared alg is not allowed or does not fit its type/curve."""
    key = keys.named(key_name)
    parsed = parse_jwks(jwks_bytes(jwk_of(key, kid="k", use="sig", alg=alg)), frozenset(allowed))
    assert parsed.by_kid == {}
    assert parsed.ignored == 1


@pytest.mark.parametrize(
    ("key_name", "allowed", "expected"),
    [
        ("rsa", {"RS256", "ES256"}, {"RS256"}),
        ("rsa", {"RS256", "PS256", "RS512", "ES256", "EdDSA"}, {"RS256", "PS256", "RS512"}),
        ("ec", {"RS256", "ES256", "ES384"}, {"ES256"}),
        ("okp", {"RS256", "EdDSA"}, {"EdDSA"}),
        ("ec", {"RS256", "ES384"}, set()),
        ("rsa", {"ES256"}, set()),
        ("okp", {"ES256"}, set()),
    ],
)
def test_infers_algorithms_without_alg(keys: TestKeys, key_name: str, allowed: set[str], expected: set[str]) -> None:
    """Without `alg`, a key serves every allowed algorithm of its kty (and curve)."""
    key = keys.named(key_name)
    parsed = parse_jwks(jwks_bytes(jwk_of(key, kid="k", use="sig")), frozenset(allowed))
    if expected:
        assert parsed.by_kid["k"].algorithms == expected
        assert parsed.by_kid["k"].public_jwk["alg"] == min(expected)
    else:
        assert parsed.by_kid == {}


def test_drops_duplicated_kid(keys: TestKeys) -> None:
    """Two keys sharing a kid are both dropped (ambiguous), other keys are kept."""
    document = jwks_bytes(
        jwk_of(keys.rsa, kid="dup", use="sig", alg="RS256"),
        jwk_of(keys.attacker, kid="dup", use="sig", alg="RS256"),
        jwk_of(keys.ec, kid=EC_KID, use="sig", alg="ES256"),
    )
    parsed = parse_jwks(document, ALLOWED)
    assert set(parsed.by_kid) == {EC_KID}
    assert parsed.ignored == 2


def test_duplicated_kid_with_enc_key_drops_both(keys: TestKeys) -> None:
    """A sig key whose kid is shared with an enc key is dropped too (fail closed)."""
    document = jwks_bytes(
        jwk_of(keys.rsa, kid="k", use="sig", alg="RS256"),
        jwk_of(keys.enc, kid="k", use="enc", alg="RSA-OAEP"),
    )
    assert parse_jwks(document, ALLOWED).by_kid == {}


@pytest.mark.parametrize("kid", [None, "", 1, ["k"], {"k": 1}, "k" * 257])
def test_drops_keys_without_usable_kid(keys: TestKeys, kid: object) -> None:
    """A key without a kid, or with an empty, non-string or over-long kid, is dropped."""
    jwk = jwk_of(keys.rsa, use="sig", alg="RS256")
    if kid is not None:
        jwk["kid"] = kid
    parsed = parse_jwks(jwks_bytes(jwk), ALLOWED)
    assert parsed.by_kid == {}
    assert parsed.ignored == 1


def test_kid_is_opaque(keys: TestKeys) -> None:
    """A kid with path, SQL or shell characters (up to 256 chars) is kept verbatim as an opaque string."""
    kid = "../../x'; DROP TABLE keys;--$(id)" + "k" * 200
    parsed = parse_jwks(jwks_bytes(jwk_of(keys.rsa, kid=kid, use="sig", alg="RS256")), ALLOWED)
    assert set(parsed.by_kid) == {kid}


def test_never_imports_private_members(keys: TestKeys) -> None:
    """A JWK that leaks its private members still yields a public-only key."""
    leaked = {**keys.rsa.as_dict(private=True), "kid": "k", "use": "sig", "alg": "RS256"}
    assert "d" in leaked
    signing = parse_jwks(jwks_bytes(leaked), ALLOWED).by_kid["k"]
    assert signing.key.is_private is False
    assert not set(PRIVATE_MEMBERS) & set(signing.key.as_dict(private=False))
    assert not set(PRIVATE_MEMBERS) & set(signing.public_jwk)
    with pytest.raises(Exception):  # noqa: B017, PT011 - whatever joserfc raises, it must not sign
        signing.key.get_op_key("sign")


def test_never_imports_private_ec_members(keys: TestKeys) -> None:
    """An EC JWK with `d` still yields a public-only key."""
    leaked = {**keys.ec.as_dict(private=True), "kid": "k", "use": "sig", "alg": "ES256"}
    assert "d" in leaked
    signing = parse_jwks(jwks_bytes(leaked), ALLOWED).by_kid["k"]
    assert signing.key.is_private is False
    assert "d" not in signing.public_jwk


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param({"n": 5}, id="n-not-string"),
        pytest.param({"e": None}, id="e-null"),
        pytest.param({"n": "!!!"}, id="n-not-base64"),
        pytest.param({"kty": "oct", "k": "c2VjcmV0"}, id="oct"),
        pytest.param({"kty": "RSA-OAEP"}, id="unknown-kty"),
    ],
)
def test_malformed_key_is_ignored_not_fatal(keys: TestKeys, bad: dict[str, Any]) -> None:
    """A malformed key is ignored while the other keys of the document are kept."""
    broken = {**jwk_of(keys.attacker, kid="broken", use="sig", alg="RS256"), **bad}
    document = jwks_bytes(broken, jwk_of(keys.rsa, kid=RSA_KID, use="sig", alg="RS256"))
    parsed = parse_jwks(document, ALLOWED)
    assert set(parsed.by_kid) == {RSA_KID}
    assert parsed.ignored == 1


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param({"kty": ["RSA"]}, id="kty-list"),
        pytest.param({"kty": "EC", "crv": ["P-256"]}, id="ec-crv-list"),
        pytest.param({"kty": "OKP", "crv": {"a": 1}}, id="okp-crv-object"),
        pytest.param({"alg": ["RS256"]}, id="alg-list"),
    ],
)
def test_unhashable_members_are_ignored_not_fatal(keys: TestKeys, bad: dict[str, Any]) -> None:
    """A key whose kty/crv/alg is a list or object is ignored; the good keys are kept."""
    broken = {**jwk_of(keys.attacker, kid="broken", use="sig"), **bad}
    document = jwks_bytes(broken, jwk_of(keys.rsa, kid=RSA_KID, use="sig", alg="RS256"))
    parsed = parse_jwks(document, ALLOWED)
    assert set(parsed.by_kid) == {RSA_KID}
    assert parsed.ignored == 1


def test_non_object_entries_are_ignored(keys: TestKeys) -> None:
    """Entries of the keys list that are not objects are counted as ignored."""
    document = jwks_bytes(1, "x", None, [], jwk_of(keys.rsa, kid=RSA_KID, use="sig", alg="RS256"))
    parsed = parse_jwks(document, ALLOWED)
    assert set(parsed.by_kid) == {RSA_KID}
    assert parsed.ignored == 4


def test_empty_key_set_is_not_an_error() -> None:
    """A JWKS with an empty keys list parses to no keys (the caller decides what that means)."""
    parsed = parse_jwks(b'{"keys":[]}', ALLOWED)
    assert parsed.by_kid == {}
    assert parsed.ignored == 0


@pytest.mark.parametrize(
    "document",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"<html>502 Bad Gateway</html>", id="html"),
        pytest.param(b'{"keys": [', id="truncated"),
        pytest.param(b"\xff\xfe", id="binary"),
        pytest.param(b"[]", id="array"),
        pytest.param(b'"keys"', id="string"),
        pytest.param(b"null", id="null"),
        pytest.param(b"{}", id="no-keys"),
        pytest.param(b'{"keys": null}', id="keys-null"),
        pytest.param(b'{"keys": {"k": {}}}', id="keys-object"),
        pytest.param(b'{"Keys": []}', id="keys-wrong-case"),
        pytest.param(b'{"error": "Realm does not exist"}', id="keycloak-404-body"),
    ],
)
def test_rejects_non_jwks(document: bytes) -> None:
    """A document that is not JSON, or not an object with a keys list, is a JwksError."""
    with pytest.raises(JwksError):
        parse_jwks(document, ALLOWED)


def test_rejects_too_many_keys() -> None:
    """More than 64 entries is a JwksError; exactly 64 is accepted."""
    assert parse_jwks(jwks_bytes(*([{}] * MAX_KEYS)), ALLOWED).ignored == MAX_KEYS
    with pytest.raises(JwksError):
        parse_jwks(jwks_bytes(*([{}] * (MAX_KEYS + 1))), ALLOWED)


def test_fingerprint_stable(jwks_document: bytes, realm_keys: RealmKeys) -> None:
    """The same material gives the same fingerprint, whatever the key order or extra members."""
    assert parse_jwks(jwks_document, ALLOWED).fingerprint == realm_keys.fingerprint
    data = orjson.loads(jwks_document)
    data["keys"].reverse()
    data["keys"][0]["x5t"] = "ignored-member"
    assert parse_jwks(orjson.dumps(data), ALLOWED).fingerprint == realm_keys.fingerprint


def test_fingerprint_ignores_unusable_keys(keys: TestKeys, jwks_document: bytes, realm_keys: RealmKeys) -> None:
    """Adding a key that is dropped (enc, duplicate-free junk) does not change the fingerprint."""
    data = orjson.loads(jwks_document)
    data["keys"].append(jwk_of(keys.attacker, kid="another-enc", use="enc", alg="RSA-OAEP"))
    data["keys"].append({"kty": "oct", "kid": "x", "k": "c2VjcmV0"})
    assert parse_jwks(orjson.dumps(data), ALLOWED).fingerprint == realm_keys.fingerprint


@pytest.mark.parametrize("change", ["swap-material", "rename-kid", "remove-key", "add-key", "allowed"])
def test_fingerprint_changes_with_material(
    keys: TestKeys, jwks_document: bytes, realm_keys: RealmKeys, change: str
) -> None:
    """Replacing, renaming, removing or adding a usable key (or changing its algorithms) changes it."""
    data = orjson.loads(jwks_document)
    allowed = ALLOWED
    rsa_entry = next(k for k in data["keys"] if k["kid"] == RSA_KID)
    if change == "swap-material":
        rsa_entry.update(n=keys.attacker.as_dict(private=False)["n"])
    elif change == "rename-kid":
        rsa_entry["kid"] = "renamed"
    elif change == "remove-key":
        data["keys"].remove(rsa_entry)
    elif change == "add-key":
        data["keys"].append(jwk_of(keys.attacker, kid="new", use="sig", alg="RS256"))
    else:
        del rsa_entry["alg"]
        allowed = frozenset({"RS256", "PS256", "ES256"})
    assert parse_jwks(orjson.dumps(data), allowed).fingerprint != realm_keys.fingerprint
