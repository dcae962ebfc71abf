"""webhook.core.token: strict parsing, algorithm allow-list, signature verification, registered claims."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from webhook.core.keys import RealmKeys, SigningKey
from webhook.core.reasons import Reason, Rejected
from webhook.core.token import (
    MAX_CLAIM_CHARS,
    ClaimsPolicy,
    ParsedToken,
    TokenFacts,
    b64url_decode,
    check_algorithm,
    check_claims,
    digests,
    loads_object,
    parse,
    verify_signature,
)

from .conftest import (
    EC_KID,
    NOW,
    RSA_KID,
    PrivateKey,
    TestKeys,
    b64url,
    header_json,
    hs256_token,
    join_segments,
    keycloak_claims,
    non_canonical,
    raw_token,
    replace_segment,
    rs256_raw,
    sign,
)

MAX = 16384
GOOD_HEADER = {"alg": "RS256", "typ": "JWT", "kid": RSA_KID}
GOOD_PAYLOAD = orjson.dumps({"iss": "x", "exp": 1})


def rejected(token: str, max_bytes: int = MAX) -> Reason | None:
    """The reason `parse` rejects `token`, None if it is accepted."""
    try:
        parse(token, max_bytes=max_bytes)
    except Rejected as exc:
        return exc.reason
    return None


def good_raw(header: dict[str, Any] | bytes | None = None, payload: bytes = GOOD_PAYLOAD) -> str:
    """A well-formed (unsigned) token with a dummy 3-byte signature."""
    return raw_token(GOOD_HEADER if header is None else header, payload, b"sig")


# --- parse --------------------------------------------------------------------------------------


def test_parse_accepts_well_formed_token() -> None:
    """A compact token with an {alg, typ, kid} header and an object payload parses."""
    parsed = parse(good_raw(), max_bytes=MAX)
    assert parsed.alg == "RS256"
    assert parsed.kid == RSA_KID
    assert dict(parsed.claims) == {"iss": "x", "exp": 1}
    header, payload, _ = good_raw().split(".")
    assert parsed.signing_input == f"{header}.{payload}".encode()
    assert parsed.signature == b"sig"


def test_parse_accepts_real_keycloak_token(keys: TestKeys) -> None:
    """A joserfc-signed Keycloak-shaped token parses to its claims."""
    claims = keycloak_claims()
    parsed = parse(sign(GOOD_HEADER, claims, keys.rsa), max_bytes=MAX)
    assert dict(parsed.claims) == claims


def test_parse_kid_of_wrong_type_is_malformed() -> None:
    """A non-string `kid` makes the token malformed (Keycloak always sends a string)."""
    assert rejected(good_raw({"alg": "RS256", "kid": 7})) is Reason.MALFORMED_TOKEN


def test_parse_rejects_oversize_token() -> None:
    """A token longer than max_bytes is malformed before any decoding."""
    token = good_raw()
    assert parse(token, max_bytes=len(token)).alg == "RS256"
    assert rejected(token, max_bytes=len(token) - 1) is Reason.MALFORMED_TOKEN


def test_parse_header_segment_cap() -> None:
    """A 1024-character header segment parses; a longer one is malformed."""
    at_cap = good_raw(header_json(alg="RS256", kid="k" * 744))  # 768 JSON bytes -> 1024 characters
    assert len(at_cap.split(".")[0]) == 1024
    assert parse(at_cap, max_bytes=MAX).alg == "RS256"
    assert rejected(good_raw(header_json(alg="RS256", kid="k" * 745))) is Reason.MALFORMED_TOKEN
    assert rejected(good_raw({"alg": "RS256", "kid": "k" * 8000})) is Reason.MALFORMED_TOKEN


@pytest.mark.parametrize(
    "token",
    [
        pytest.param(good_raw() + "é", id="latin1"),
        pytest.param(good_raw().replace(".", "\uff0e", 1), id="fullwidth-dot"),
        pytest.param("\u0435" + good_raw(), id="cyrillic-e"),
        pytest.param(good_raw() + "\udc80", id="lone-surrogate"),
    ],
)
def test_parse_rejects_non_ascii(token: str) -> None:
    """Any non-ASCII character makes the token malformed."""
    assert rejected(token) is Reason.MALFORMED_TOKEN


@pytest.mark.parametrize("count", [1, 2, 4, 5, 6])
def test_parse_rejects_wrong_segment_count(count: int) -> None:
    """Anything but exactly three segments is malformed."""
    segments = [header_json(alg="RS256"), GOOD_PAYLOAD, b"sig", b"iv", b"tag", b"x"][:count]
    assert rejected(join_segments(*segments)) is Reason.MALFORMED_TOKEN


def test_parse_rejects_jwe_with_detail() -> None:
    """A 5-segment (JWE) token is malformed and the detail says it is a JWE."""
    token = join_segments(header_json(alg="RSA-OAEP", enc="A256GCM"), b"k", b"iv", b"ct", b"tag")
    with pytest.raises(Rejected) as info:
        parse(token, max_bytes=MAX)
    assert info.value.reason is Reason.MALFORMED_TOKEN
    assert "JWE" in info.value.detail


@pytest.mark.parametrize("index", [0, 1, 2])
@pytest.mark.parametrize("bad", ["=", "==", "+", "/", " ", "!", "\t"])
def test_parse_rejects_non_base64url(index: int, bad: str) -> None:
    """Padding, the standard alphabet's `+`/`/` and stray characters in any segment are malformed."""
    token = good_raw()
    segment = token.split(".")[index]
    assert rejected(replace_segment(token, index, segment + bad)) is Reason.MALFORMED_TOKEN


@pytest.mark.parametrize("index", [0, 1, 2])
def test_parse_rejects_impossible_length(index: int) -> None:
    """A segment whose length is 1 mod 4 cannot be base64 and is malformed."""
    token = good_raw()
    segment = token.split(".")[index]
    extra = "A" * ((1 - len(segment)) % 4)
    assert rejected(replace_segment(token, index, segment + extra)) is Reason.MALFORMED_TOKEN


def test_parse_rejects_standard_alphabet_payload() -> None:
    """A payload encoded with `+` and `/` (standard base64) is malformed."""
    payload = b'{"a":"\xfb\xff"}'  # encodes to a segment holding both - and _
    token = raw_token(GOOD_HEADER, payload, b"sig")
    segment = token.split(".")[1]
    assert "-" in segment or "_" in segment
    standard = segment.replace("-", "+").replace("_", "/")
    assert rejected(replace_segment(token, 1, standard)) is Reason.MALFORMED_TOKEN


@pytest.mark.parametrize("index", [0, 1, 2])
def test_parse_rejects_non_canonical_trailing_bits(index: int) -> None:
    """A segment whose unused trailing bits are not zero is malformed (header, payload, signature)."""
    # lengths chosen so every segment has unused trailing bits
    token = raw_token(header_json(alg="RS256", kid="k1"), b'{"iss":"x"}', b"sig1")
    segment = token.split(".")[index]
    assert rejected(replace_segment(token, index, non_canonical(segment))) is Reason.MALFORMED_TOKEN


@pytest.mark.parametrize("segment", [b"QR", b"QX", b"QUF", b"QUJ"])
def test_b64url_decode_rejects_non_canonical(segment: bytes) -> None:
    """b64url_decode refuses encodings whose unused trailing bits are set (QR is QQ = b'A' with bits set)."""
    try:
        decoded: bytes | None = b64url_decode(segment)
    except ValueError:
        decoded = None
    assert decoded is None, f"{segment!r} decoded to {decoded!r}"


@pytest.mark.parametrize(
    ("segment", "expected"),
    [(b"", b""), (b"QQ", b"A"), (b"QUI", b"AB"), (b"QUJD", b"ABC"), (b"-_8", b"\xfb\xff")],
)
def test_b64url_decode_roundtrip(segment: bytes, expected: bytes) -> None:
    """Canonical unpadded base64url decodes, URL alphabet included."""
    assert b64url_decode(segment) == expected


@pytest.mark.parametrize("segment", [b"QQ==", b"QUI=", b"+/8", b"Q", b"QUJDR", b"QQ\n", b"Q Q"])
def test_b64url_decode_rejects_non_strict(segment: bytes) -> None:
    """Padding, the standard alphabet, impossible lengths and whitespace raise ValueError."""
    with pytest.raises(ValueError):  # noqa: PT011 - binascii.Error is a ValueError; either is right
        b64url_decode(segment)


@pytest.mark.parametrize(
    "header",
    [b'"alg"', b'["alg"]', b"5", b"null", b"true", b'"{\\"alg\\":\\"RS256\\"}"', b"", b"{", b"\xff"],
)
def test_parse_rejects_header_not_object(header: bytes) -> None:
    """A header that is not a JSON object is malformed (never a TypeError from a library)."""
    assert rejected(raw_token(header, GOOD_PAYLOAD, b"sig")) is Reason.MALFORMED_TOKEN


@pytest.mark.parametrize("payload", [b"[1]", b'"x"', b"1", b"null", b"", b"{", b"\xff\xfe", b"{}x"])
def test_parse_rejects_payload_not_object(payload: bytes) -> None:
    """A payload that is not a JSON object is malformed."""
    assert rejected(raw_token(GOOD_HEADER, payload, b"sig")) is Reason.MALFORMED_TOKEN


@pytest.mark.parametrize(
    "header",
    [
        pytest.param(b'{"alg":"RS256","alg":"none"}', id="two-alg"),
        pytest.param(b'{"alg":"none","alg":"RS256"}', id="two-alg-reversed"),
        pytest.param(b'{"alg":"RS256","\\u0061lg":"none"}', id="escaped-duplicate"),
        pytest.param(b'{"kid":"a","alg":"RS256","kid":"b"}', id="two-kid"),
        pytest.param(b'{"alg": "RS256", "alg": "RS256"}', id="same-value-spaced"),
    ],
)
def test_parse_rejects_duplicate_header_members(header: bytes) -> None:
    """Duplicate member names in the header are malformed, however they are spelled."""
    assert rejected(raw_token(header, GOOD_PAYLOAD, b"sig")) is Reason.MALFORMED_TOKEN


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(b'{"iss":"a","iss":"b"}', id="two-iss"),
        pytest.param(b'{"exp":1,"sub":"u","exp":2}', id="two-exp"),
        pytest.param(b'{"typ":"Bearer","\\u0074yp":"ID"}', id="escaped-duplicate"),
        pytest.param(
            b'{"https://hasura.io/jwt/claims":{"x-hasura-tenant-id":"a","x-hasura-tenant-id":"b"}}',
            id="nested-duplicate",
        ),
        pytest.param(b'{"a":[{"r":1,"r":2}]}', id="duplicate-inside-array"),
    ],
)
def test_parse_rejects_duplicate_payload_members(payload: bytes) -> None:
    """Duplicate member names anywhere in the payload are malformed."""
    assert rejected(raw_token(GOOD_HEADER, payload, b"sig")) is Reason.MALFORMED_TOKEN


def test_loads_object_keeps_non_compact_json() -> None:
    """JSON with whitespace or escapes (slow path) parses to the same object as compact JSON."""
    assert loads_object(b'{ "a" : [1, {"b": "\\u0063"}] }') == {"a": [1, {"b": "c"}]}
    assert loads_object(b'{"a":[1,{"b":"c"}]}') == {"a": [1, {"b": "c"}]}


def test_parse_rejects_deep_nesting() -> None:
    """A deeply nested payload is malformed, not a RecursionError (fast and slow JSON paths)."""
    for spacer in (b"", b" "):
        payload = b'{"a":' + spacer + b"[" * 5000 + b"]" * 5000 + b"}"
        token = raw_token(GOOD_HEADER, payload, b"sig")
        assert rejected(token, max_bytes=100_000) is Reason.MALFORMED_TOKEN


@pytest.mark.parametrize(
    "member",
    ["jku", "x5u", "jwk", "x5c", "x5t", "x5t#S256", "crit", "b64", "cty", "zip", "enc", "foo", "ALG", "Kid"],
)
def test_parse_rejects_forbidden_headers(member: str) -> None:
    """Any header member besides alg/kid/typ is refused as header_not_allowed."""
    header = {"alg": "RS256", "kid": RSA_KID, member: "x"}
    assert rejected(good_raw(header)) is Reason.HEADER_NOT_ALLOWED


def test_parse_rejects_escaped_forbidden_header() -> None:
    """A forbidden header name spelled with JSON escapes (\\u006aku = jku) is still refused."""
    token = raw_token(b'{"alg":"RS256","\\u006aku":"https://evil.test/jwks"}', GOOD_PAYLOAD, b"sig")
    assert rejected(token) is Reason.HEADER_NOT_ALLOWED


def test_parse_forbidden_header_detail_is_capped() -> None:
    """The rejection detail quotes at most 32 characters of an unknown header name."""
    with pytest.raises(Rejected) as info:
        parse(good_raw({"alg": "RS256", "z" * 200: 1}), max_bytes=MAX)
    assert info.value.reason is Reason.HEADER_NOT_ALLOWED
    assert "z" * 33 not in info.value.detail


@pytest.mark.parametrize(
    "header",
    [{}, {"kid": "k"}, {"alg": None}, {"alg": 1}, {"alg": ["RS256"]}, {"alg": {"n": 1}}, {"alg": True}],
)
def test_parse_rejects_missing_or_non_string_alg(header: dict[str, Any]) -> None:
    """A header without a string `alg` is malformed."""
    assert rejected(good_raw(header)) is Reason.MALFORMED_TOKEN


@pytest.mark.parametrize("typ", [1, None, ["JWT"], {"a": 1}])
def test_parse_rejects_non_string_header_typ(typ: object) -> None:
    """A header `typ` that is not a string is malformed."""
    assert rejected(good_raw({"alg": "RS256", "typ": typ})) is Reason.MALFORMED_TOKEN


def test_parse_rejects_empty_signature() -> None:
    """An unsigned token (empty third segment, as with alg none) is malformed."""
    token = raw_token({"alg": "none"}, GOOD_PAYLOAD, b"")
    assert token.endswith(".")
    assert rejected(token) is Reason.MALFORMED_TOKEN


def test_parse_header_memo_changes_no_outcome() -> None:
    """The memo of checked headers changes nothing: a refused header is refused every time (never
    memoised), and a memoised header's token is still refused for its payload or signature."""
    refused = good_raw({"alg": "RS256", "jku": "https://x"})
    assert [rejected(refused), rejected(refused)] == [Reason.HEADER_NOT_ALLOWED] * 2
    assert rejected(good_raw()) is None  # the header is now memoised
    header = good_raw().split(".")[0]
    assert rejected(f"{header}.{b64url(b'[1]')}.c2ln") is Reason.MALFORMED_TOKEN
    assert rejected(f"{header}.{b64url(GOOD_PAYLOAD)}.c2l=") is Reason.MALFORMED_TOKEN
    assert rejected(f"{header}.{b64url(GOOD_PAYLOAD)}.") is Reason.MALFORMED_TOKEN
    assert parse(good_raw(), max_bytes=MAX).header == GOOD_HEADER


@settings(max_examples=300, database=None, deadline=None)
@given(st.text(max_size=300))
def test_parse_arbitrary_text_only_raises_rejected(token: str) -> None:
    """Property: parse of arbitrary text either returns a ParsedToken or raises Rejected."""
    with contextlib.suppress(Rejected):
        parse(token, max_bytes=200)


_leaves = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8)
_names = st.sampled_from(["alg", "kid", "typ", "exp", "iss", "jku"]) | st.text(max_size=5)
_json_values = st.recursive(
    _leaves,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(_names, children, max_size=4),
    max_leaves=8,
)
_headers = st.fixed_dictionaries(
    {"alg": _leaves}, optional={"kid": _json_values, "typ": _json_values, "crit": _json_values}
)
# stdlib json: big integers, NaN/Infinity and ", " separators exercise the slow JSON path too
_segments = st.one_of(
    _json_values.map(lambda v: json.dumps(v).encode()),
    _headers.map(lambda v: json.dumps(v).encode()),
    _headers.map(lambda v: json.dumps(v, separators=(",", ":")).encode()),
    st.binary(max_size=40),
)


@settings(max_examples=300, database=None, deadline=None)
@given(_segments, _segments, st.binary(max_size=40))
def test_parse_structured_garbage_only_raises_rejected(header: bytes, payload: bytes, sig: bytes) -> None:
    """Property: well-encoded segments of arbitrary JSON or bytes never raise anything but Rejected."""
    try:
        parsed = parse(join_segments(header, payload, sig), max_bytes=MAX)
    except Rejected:
        return
    assert isinstance(parsed, ParsedToken)
    assert set(parsed.header) <= {"alg", "kid", "typ"}
    assert type(parsed.header["alg"]) is str
    TokenFacts.of(parsed)  # must not raise either


# --- check_algorithm ----------------------------------------------------------------------------


def parsed_with_alg(alg: str) -> ParsedToken:
    """A parsed (unsigned) token whose header names `alg`."""
    return parse(good_raw({"alg": alg}), max_bytes=MAX)


@pytest.mark.parametrize(
    ("alg", "allowed"),
    [
        ("none", {"RS256"}),
        ("None", {"RS256"}),
        ("nOnE", {"RS256"}),
        ("NONE", {"RS256", "ES256"}),
        ("HS256", {"RS256"}),
        ("HS512", {"RS256", "ES256"}),
        ("RS256", {"ES256"}),
        ("rs256", {"RS256"}),
        ("RS256 ", {"RS256"}),
        ("", {"RS256"}),
    ],
)
def test_check_algorithm_rejects_not_allowed(alg: str, allowed: set[str]) -> None:
    """An alg outside the allow-list (exact case) is alg_not_allowed."""
    with pytest.raises(Rejected) as info:
        check_algorithm(parsed_with_alg(alg), frozenset(allowed))
    assert info.value.reason is Reason.ALG_NOT_ALLOWED


@pytest.mark.parametrize("alg", ["RS256", "ES256"])
def test_check_algorithm_accepts_allowed(alg: str) -> None:
    """An alg in the allow-list passes."""
    check_algorithm(parsed_with_alg(alg), frozenset({"RS256", "ES256"}))


# --- verify_signature ---------------------------------------------------------------------------


def verify_reason(token: str, key: SigningKey) -> Reason | None:
    """None if `token` verifies with `key`, else the rejection reason."""
    try:
        verify_signature(parse(token, max_bytes=MAX), key)
    except Rejected as exc:
        return exc.reason
    return None


def test_verify_accepts_rs256(keys: TestKeys, rsa_key: SigningKey) -> None:
    """A token signed by the realm's RS256 key verifies."""
    token = sign(GOOD_HEADER, keycloak_claims(), keys.rsa)
    assert verify_reason(token, rsa_key) is None


def test_verify_accepts_es256(keys: TestKeys, ec_key: SigningKey) -> None:
    """A token signed by the realm's ES256 key verifies."""
    token = sign({"alg": "ES256", "kid": EC_KID, "typ": "JWT"}, keycloak_claims(), keys.ec)
    assert verify_reason(token, ec_key) is None


def hashed_reason(token: str, key: SigningKey, hashed_from: str | None = None) -> Reason | None:
    """As `verify_reason`, with the one-pass digests of `hashed_from` (default: the token itself)."""
    try:
        verify_signature(parse(token, max_bytes=MAX), key, digests(hashed_from or token))
    except Rejected as exc:
        return exc.reason
    return None


def test_digests_are_the_sha256_of_the_token_and_of_its_signing_input(keys: TestKeys) -> None:
    """One pass gives exactly SHA-256(token) and SHA-256(everything before the last dot)."""
    token = sign(GOOD_HEADER, keycloak_claims(), keys.rsa)
    hashed = digests(token)
    signing_input = token.rsplit(".", 1)[0].encode()
    assert hashed.token == hashlib.sha256(token.encode()).digest()
    assert hashed.signing is not None
    assert hashed.signing.digest() == hashlib.sha256(signing_input).digest()
    assert hashed.signed_length == len(signing_input)
    assert digests("no-dot-at-all") == (hashlib.sha256(b"no-dot-at-all").digest(), None, 0)


def test_digests_keep_surrogatepass_bytes_for_non_ascii_tokens() -> None:
    """A token that is not ASCII still gets the digest the audit has always used (utf-8, surrogatepass)."""
    token = "é.\udcff.x"
    assert digests(token).token == hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


def test_verify_with_digests_accepts_and_rejects_as_without(
    keys: TestKeys, rsa_key: SigningKey, ec_key: SigningKey
) -> None:
    """The pre-hashed path accepts the signed tokens and refuses a tampered payload, like the plain path."""
    rsa_token = sign(GOOD_HEADER, keycloak_claims(), keys.rsa)
    ec_token = sign({"alg": "ES256", "kid": EC_KID, "typ": "JWT"}, keycloak_claims(), keys.ec)
    forged = replace_segment(rsa_token, 1, b64url(orjson.dumps(keycloak_claims(sub="someone-else"))))
    assert hashed_reason(rsa_token, rsa_key) is None
    assert hashed_reason(ec_token, ec_key) is None
    assert hashed_reason(forged, rsa_key) is Reason.BAD_SIGNATURE
    assert verify_reason(forged, rsa_key) is Reason.BAD_SIGNATURE


def test_verify_ignores_digests_that_do_not_cover_the_signing_input(keys: TestKeys, rsa_key: SigningKey) -> None:
    """Digests of another token whose signing input has another length are not used: the plain check runs."""
    token = sign(GOOD_HEADER, keycloak_claims(), keys.rsa)
    other = sign(GOOD_HEADER, keycloak_claims(sub="a-much-longer-subject-than-before"), keys.rsa)
    assert len(other.rsplit(".", 1)[0]) != len(token.rsplit(".", 1)[0])
    assert hashed_reason(token, rsa_key, hashed_from=other) is None


def test_verify_rejects_tampered_payload(keys: TestKeys, rsa_key: SigningKey) -> None:
    """Changing one claim after signing is bad_signature."""
    token = sign(GOOD_HEADER, keycloak_claims(), keys.rsa)
    forged = replace_segment(token, 1, b64url(orjson.dumps(keycloak_claims(sub="someone-else"))))
    assert verify_reason(forged, rsa_key) is Reason.BAD_SIGNATURE


def test_verify_rejects_tampered_header(keys: TestKeys, rsa_key: SigningKey) -> None:
    """Changing the header after signing (same alg) is bad_signature."""
    token = sign(GOOD_HEADER, keycloak_claims(), keys.rsa)
    forged = replace_segment(token, 0, b64url(header_json(alg="RS256", kid=RSA_KID)))
    assert verify_reason(forged, rsa_key) is Reason.BAD_SIGNATURE


def test_verify_rejects_attacker_key(keys: TestKeys, rsa_key: SigningKey) -> None:
    """A token signed by another RSA key under the realm's kid is bad_signature."""
    token = sign(GOOD_HEADER, keycloak_claims(), keys.attacker)
    assert verify_reason(token, rsa_key) is Reason.BAD_SIGNATURE


def test_verify_rejects_enc_key_signature(keys: TestKeys, rsa_key: SigningKey) -> None:
    """A token signed with the realm's encryption key does not verify with the signing key."""
    token = sign(GOOD_HEADER, keycloak_claims(), keys.enc)
    assert verify_reason(token, rsa_key) is Reason.BAD_SIGNATURE


def test_verify_rejects_signature_of_other_token(keys: TestKeys, rsa_key: SigningKey) -> None:
    """A genuine signature moved onto another payload is bad_signature."""
    mine = sign(GOOD_HEADER, keycloak_claims(sub="me"), keys.rsa)
    admin = sign(GOOD_HEADER, keycloak_claims(sub="admin"), keys.rsa)
    forged = replace_segment(admin, 2, mine.split(".")[2])
    assert verify_reason(forged, rsa_key) is Reason.BAD_SIGNATURE


@pytest.mark.parametrize(
    "signature",
    [
        pytest.param(bytes(64), id="psychic-r=s=0"),
        pytest.param(bytes(32) + b"\x01" + bytes(31), id="r=0"),
        pytest.param(b"\xff" * 64, id="all-ones"),
        pytest.param(bytes(63), id="63-bytes"),
        pytest.param(bytes(65), id="65-bytes"),
        pytest.param(b"\x00", id="1-byte"),
    ],
)
def test_verify_rejects_bad_ecdsa_signatures(keys: TestKeys, ec_key: SigningKey, signature: bytes) -> None:
    """Psychic (r = s = 0), degenerate and wrong-length ES256 signatures are bad_signature."""
    token = sign({"alg": "ES256", "kid": EC_KID}, keycloak_claims(), keys.ec)
    forged = replace_segment(token, 2, b64url(signature))
    assert verify_reason(forged, ec_key) is Reason.BAD_SIGNATURE


@pytest.mark.parametrize("alg", ["RS256", "ES256"])
@pytest.mark.parametrize("change", ["truncate", "extend", "flip-last", "non-canonical"])
def test_verify_rejects_mangled_signature(keys: TestKeys, realm_keys: RealmKeys, alg: str, change: str) -> None:
    """Truncated, extended or bit-flipped signatures are bad_signature; non-canonically encoded ones malformed."""
    key = realm_keys.by_kid[RSA_KID if alg == "RS256" else EC_KID]
    private: PrivateKey = keys.rsa if alg == "RS256" else keys.ec
    token = sign({"alg": alg, "kid": key.kid}, keycloak_claims(), private)
    signature = b64url_decode(token.split(".")[2].encode())
    if change == "truncate":
        segment = b64url(signature[:-1])
    elif change == "extend":
        segment = b64url(signature + b"\x00")
    elif change == "flip-last":
        segment = b64url(signature[:-1] + bytes([signature[-1] ^ 1]))
    else:  # 256- and 64-byte signatures both leave unused trailing bits to set
        segment = non_canonical(b64url(signature))
    expected = Reason.MALFORMED_TOKEN if change == "non-canonical" else Reason.BAD_SIGNATURE
    assert verify_reason(replace_segment(token, 2, segment), key) is expected


P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


def test_verify_accepts_high_s_es256(keys: TestKeys, ec_key: SigningKey) -> None:
    """(r, n - s) still verifies: Java/Keycloak does not normalise S, so high-S must not be refused.

    This is ECDSA signature malleability: two token strings carry the same verified claims, so
    nothing may identify a token by its raw string for revocation or replay detection.
    """
    token = sign({"alg": "ES256", "kid": EC_KID}, keycloak_claims(), keys.ec)
    signature = b64url_decode(token.split(".")[2].encode())
    r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    flipped = r.to_bytes(32, "big") + (P256_ORDER - s).to_bytes(32, "big")
    assert flipped != signature
    assert verify_reason(replace_segment(token, 2, b64url(flipped)), ec_key) is None


def test_verify_rejects_hs256_key_confusion(keys: TestKeys, rsa_key: SigningKey) -> None:
    """HS256 signed with the realm's public key PEM as HMAC secret is key_mismatch."""
    secret = keys.rsa.as_pem(private=False)
    token = hs256_token({"alg": "HS256", "kid": RSA_KID}, keycloak_claims(), secret)
    assert verify_reason(token, rsa_key) is Reason.KEY_MISMATCH


@pytest.mark.parametrize(
    ("alg", "key_name"),
    [
        ("ES256", "rsa"),
        ("RS256", "ec"),
        ("PS256", "rsa"),  # an RSA key published for RS256 only
        ("RS384", "rsa"),
        ("none", "rsa"),
        ("EdDSA", "ec"),
    ],
)
def test_verify_rejects_alg_not_served_by_key(rsa_key: SigningKey, ec_key: SigningKey, alg: str, key_name: str) -> None:
    """A header alg that is not among the key's algorithms is key_mismatch (checked before crypto)."""
    key = rsa_key if key_name == "rsa" else ec_key
    token = raw_token({"alg": alg, "kid": key.kid}, GOOD_PAYLOAD, b"x" * 64)
    assert verify_reason(token, key) is Reason.KEY_MISMATCH


def test_verify_never_leaks_library_errors(keys: TestKeys, rsa_key: SigningKey) -> None:
    """A validly signed header with a kid joserfc would refuse (not a string) is a rejection, not an exception."""
    token = rs256_raw(b'{"alg":"RS256","kid":1}', orjson.dumps(keycloak_claims()), keys.rsa)
    assert verify_reason(token, rsa_key) is Reason.MALFORMED_TOKEN


def test_verify_key_algorithms_are_the_allow_list(keys: TestKeys, rsa_key: SigningKey) -> None:
    """A key whose allowed algorithms (configuration within its type) lack the token's alg refuses it."""
    token = sign(GOOD_HEADER, keycloak_claims(), keys.rsa)
    narrowed = dataclasses.replace(rsa_key, algorithms=frozenset({"RS512"}))
    assert verify_reason(token, narrowed) is Reason.KEY_MISMATCH
    assert verify_reason(token, rsa_key) is None


# --- check_claims -------------------------------------------------------------------------------

PLAIN = ClaimsPolicy(leeway=30, audiences=frozenset(), azps=frozenset())


def claims_reason(claims: dict[str, Any], policy: ClaimsPolicy = PLAIN, now: float = NOW) -> Reason | None:
    """None if the claims pass, else the rejection reason."""
    try:
        check_claims(claims, policy, now)
    except Rejected as exc:
        return exc.reason
    return None


def test_check_claims_accepts_keycloak_token() -> None:
    """A fresh Keycloak access token passes the registered-claim checks."""
    assert claims_reason(keycloak_claims()) is None


@pytest.mark.parametrize(
    "exp",
    [None, "1721256841", True, False, float("inf"), float("-inf"), float("nan"), [1], {"n": 1}, b"1"],
)
def test_check_claims_rejects_bad_exp(exp: object) -> None:
    """A missing, null, non-numeric, boolean or non-finite exp is claims_invalid."""
    claims = keycloak_claims()
    claims["exp"] = exp
    assert claims_reason(claims) is Reason.CLAIMS_INVALID


def test_check_claims_rejects_missing_exp() -> None:
    """A token without exp is claims_invalid."""
    claims = keycloak_claims()
    del claims["exp"]
    assert claims_reason(claims) is Reason.CLAIMS_INVALID


@pytest.mark.parametrize(
    ("leeway", "exp_offset", "expected"),
    [
        (30, -31, Reason.EXPIRED),
        (30, -30, Reason.EXPIRED),  # exp == now - leeway is expired
        (30, -29.5, None),
        (30, -29, None),
        (0, 0, Reason.EXPIRED),  # exp == now is expired
        (0, -1, Reason.EXPIRED),
        (0, 0.001, None),
        (0, 1, None),
        (300, -299, None),
    ],
)
def test_check_claims_expiry_and_leeway(leeway: int, exp_offset: float, expected: Reason | None) -> None:
    """exp <= now - leeway is expired; anything later passes."""
    policy = ClaimsPolicy(leeway=leeway, audiences=frozenset(), azps=frozenset())
    claims = keycloak_claims(exp=NOW + exp_offset, iat=NOW - 400)
    assert claims_reason(claims, policy) is expected


@pytest.mark.parametrize("name", ["nbf", "iat"])
@pytest.mark.parametrize(
    ("offset", "expected"),
    [(31, Reason.NOT_YET_VALID), (30.5, Reason.NOT_YET_VALID), (30, None), (0, None), (-1000, None)],
)
def test_check_claims_future_nbf_iat(name: str, offset: float, expected: Reason | None) -> None:
    """nbf or iat later than now + leeway is not_yet_valid; at the boundary it passes."""
    claims = keycloak_claims(exp=NOW + 3600)
    claims[name] = NOW + offset
    assert claims_reason(claims) is expected


@pytest.mark.parametrize("name", ["nbf", "iat"])
@pytest.mark.parametrize("value", ["0", True, float("nan"), float("inf"), [0]])
def test_check_claims_rejects_bad_nbf_iat(name: str, value: object) -> None:
    """A present nbf/iat that is not a finite number is claims_invalid."""
    claims = keycloak_claims()
    claims[name] = value
    assert claims_reason(claims) is Reason.CLAIMS_INVALID


@pytest.mark.parametrize("typ", ["ID", "Refresh", "Offline", "bearer", "BEARER", "Bearer ", "", 1, ["Bearer"]])
def test_check_claims_rejects_wrong_typ(typ: object) -> None:
    """Anything but typ == "Bearer" (ID, refresh, wrong case, wrong type) is wrong_token_type."""
    assert claims_reason(keycloak_claims(typ=typ)) is Reason.WRONG_TOKEN_TYPE


def test_check_claims_rejects_missing_typ() -> None:
    """A token without typ is wrong_token_type."""
    claims = keycloak_claims()
    del claims["typ"]
    assert claims_reason(claims) is Reason.WRONG_TOKEN_TYPE


def test_check_claims_order_expiry_first() -> None:
    """An expired ID token is reported as expired (exp is checked before typ)."""
    assert claims_reason(keycloak_claims(exp=NOW - 3600, typ="ID")) is Reason.EXPIRED


AUD = ClaimsPolicy(leeway=30, audiences=frozenset({"account", "hasura"}), azps=frozenset())


@pytest.mark.parametrize(
    ("aud", "expected"),
    [
        ("account", None),
        ("hasura", None),
        (["other", "account"], None),
        (["account"], None),
        ("other", Reason.AUDIENCE_NOT_ALLOWED),
        (["other"], Reason.AUDIENCE_NOT_ALLOWED),
        ([], Reason.AUDIENCE_NOT_ALLOWED),
        ("", Reason.AUDIENCE_NOT_ALLOWED),
        ("Account", Reason.AUDIENCE_NOT_ALLOWED),
        ("account ", Reason.AUDIENCE_NOT_ALLOWED),
        ([["account"]], Reason.AUDIENCE_NOT_ALLOWED),
        ([{"account": 1}], Reason.AUDIENCE_NOT_ALLOWED),
        ({"account": 1}, Reason.AUDIENCE_NOT_ALLOWED),
        (5, Reason.AUDIENCE_NOT_ALLOWED),
        (None, Reason.AUDIENCE_NOT_ALLOWED),  # None removes the claim
    ],
)
def test_check_claims_audience(aud: object, expected: Reason | None) -> None:
    """With audiences configured, aud (string or list) must contain one of them."""
    assert claims_reason(keycloak_claims(aud=aud), AUD) is expected


@pytest.mark.parametrize("aud", [None, "anything", ["x"], 5])
def test_check_claims_no_audience_check_when_unconfigured(aud: object) -> None:
    """Without configured audiences, aud is not checked."""
    assert claims_reason(keycloak_claims(aud=aud)) is None


AZP = ClaimsPolicy(leeway=30, audiences=frozenset(), azps=frozenset({"admin-portal", "voting-portal"}))


@pytest.mark.parametrize(
    ("azp", "expected"),
    [
        ("admin-portal", None),
        ("voting-portal", None),
        ("evil-client", Reason.AZP_NOT_ALLOWED),
        ("Admin-Portal", Reason.AZP_NOT_ALLOWED),
        ("", Reason.AZP_NOT_ALLOWED),
        (["admin-portal"], Reason.AZP_NOT_ALLOWED),
        ({"admin-portal": 1}, Reason.AZP_NOT_ALLOWED),
        (5, Reason.AZP_NOT_ALLOWED),
        (None, Reason.AZP_NOT_ALLOWED),  # None removes the claim
    ],
)
def test_check_claims_azp_allow_list(azp: object, expected: Reason | None) -> None:
    """With an azp allow-list, azp must be one of its strings (wrong types rejected, no TypeError)."""
    assert claims_reason(keycloak_claims(azp=azp), AZP) is expected


def test_check_claims_no_azp_check_when_unconfigured() -> None:
    """Without an azp allow-list, any or no azp passes."""
    assert claims_reason(keycloak_claims(azp=["weird"])) is None
    assert claims_reason(keycloak_claims(azp=None)) is None


# --- TokenFacts ---------------------------------------------------------------------------------


def test_token_facts_of_none() -> None:
    """No parsed token gives empty facts."""
    assert TokenFacts.of(None) == TokenFacts()


def test_token_facts_copies_claimed_values() -> None:
    """TokenFacts copies alg/kid from the header and iss/sub/azp/jti/typ/exp from the claims."""
    claims = keycloak_claims()
    facts = TokenFacts.of(parse(raw_token(GOOD_HEADER, orjson.dumps(claims), b"s"), max_bytes=MAX))
    assert facts == TokenFacts(
        alg="RS256",
        kid=RSA_KID,
        iss=claims["iss"],
        sub=claims["sub"],
        azp=claims["azp"],
        jti=claims["jti"],
        typ="Bearer",
        exp=claims["exp"],
    )


def test_token_facts_caps_long_strings() -> None:
    """Claimed strings longer than 256 characters are cut to 256."""
    long = "x" * 5000
    header = {"alg": "RS256", "kid": long[:600]}  # the header segment is capped at 1024 characters
    payload = orjson.dumps({"iss": long, "sub": long, "azp": long, "jti": long, "typ": long})
    facts = TokenFacts.of(parse(raw_token(header, payload, b"s"), max_bytes=100_000))
    for value in (facts.kid, facts.iss, facts.sub, facts.azp, facts.jti, facts.typ):
        assert value == "x" * MAX_CLAIM_CHARS


@pytest.mark.parametrize("value", [1, 1.5, True, None, ["a"], {"a": "b"}])
def test_token_facts_ignores_non_strings(value: object) -> None:
    """Non-string claimed values become None."""
    claims = {"iss": value, "sub": value, "azp": value, "jti": value, "typ": value}
    parsed = ParsedToken({"alg": "RS256", "kid": value}, claims, b"", b"")
    facts = TokenFacts.of(parsed)
    assert (facts.kid, facts.iss, facts.sub, facts.azp, facts.jti, facts.typ) == (None,) * 6


@pytest.mark.parametrize(
    ("exp", "expected"),
    [(1721256841, 1721256841), (1721256841.9, 1721256841), (True, None), ("1", None),
     (float("nan"), None), (float("inf"), None), (None, None)],
)  # fmt: skip
def test_token_facts_exp(exp: object, expected: int | None) -> None:
    """exp is kept as an int only when it is a finite number (not a bool)."""
    parsed = ParsedToken({"alg": "RS256"}, {"exp": exp}, b"", b"")
    assert TokenFacts.of(parsed).exp == expected
