"""webhook.core.hookrequest: what Hasura sends in GET and POST mode, and the bearer token in it."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from webhook.core.hookrequest import (
    MAX_FORWARDED_CHARS,
    BadHookBody,
    HookRequest,
    bearer_token,
    from_get,
    from_post,
)
from webhook.core.reasons import Reason, Rejected

TOKEN = "eyJhbGciOiJSUzI1NiJ9.eyJleHAiOjF9.c2ln"


def post(headers: Any, **body: Any) -> HookRequest:
    """from_post of a Hasura body with these headers (and extra body members)."""
    return from_post(orjson.dumps({"headers": headers, **body}))


# --- GET mode -----------------------------------------------------------------------------------


def test_get_picks_wanted_headers() -> None:
    """GET mode reads authorization, role, first forwarded hop, user agent and request id."""
    request = from_get(
        [
            (b"host", b"hook:8080"),
            (b"authorization", f"Bearer {TOKEN}".encode()),
            (b"x-hasura-role", b"user"),
            (b"x-forwarded-for", b" 203.0.113.7 , 10.0.0.1, 10.0.0.2"),
            (b"x-real-ip", b"10.9.9.9"),
            (b"user-agent", b"hasura-graphql-engine/v2"),
            (b"x-request-id", b"req-1"),
            (b"cookie", b"session=secret"),
        ]
    )
    assert request == HookRequest(
        mode="GET",
        authorization=f"Bearer {TOKEN}",
        role="user",
        client_ip="203.0.113.7",
        user_agent="hasura-graphql-engine/v2",
        request_id="req-1",
        ambiguous=False,
    )


def test_get_without_headers() -> None:
    """GET mode with none of the wanted headers gives an empty request."""
    assert from_get([(b"host", b"x")]) == HookRequest(mode="GET")


def test_get_real_ip_fallback() -> None:
    """Without (or with an empty) X-Forwarded-For, X-Real-IP is the client IP."""
    assert from_get([(b"x-real-ip", b"198.51.100.1")]).client_ip == "198.51.100.1"
    assert from_get([(b"x-forwarded-for", b""), (b"x-real-ip", b"198.51.100.1")]).client_ip == "198.51.100.1"


def test_get_header_names_are_asgi_lowercase() -> None:
    """GET mode matches ASGI's lowercase names; other spellings are not the wanted headers."""
    assert from_get([(b"Authorization", b"Bearer x")]).authorization is None


def test_get_decodes_latin1() -> None:
    """Header bytes are decoded as latin-1, never raising on non-UTF-8 bytes."""
    assert from_get([(b"user-agent", b"caf\xe9\xff")]).user_agent == "caf\u00e9\u00ff"


def test_get_caps_untrusted_values() -> None:
    """Client IP, user agent and request id are capped to 256 characters."""
    long = b"x" * 5000
    request = from_get([(b"x-forwarded-for", long), (b"user-agent", long), (b"x-request-id", long)])
    for value in (request.client_ip, request.user_agent, request.request_id):
        assert value == "x" * MAX_FORWARDED_CHARS


def test_get_two_authorization_headers_are_ambiguous() -> None:
    """Two Authorization headers make the request ambiguous and bearer_token refuses it."""
    request = from_get([(b"authorization", f"Bearer {TOKEN}".encode()), (b"authorization", b"Bearer other")])
    assert request.ambiguous
    with pytest.raises(Rejected) as info:
        bearer_token(request)
    assert info.value.reason is Reason.MALFORMED_TOKEN


def test_get_identical_authorization_headers_are_still_ambiguous() -> None:
    """Even two identical Authorization headers are refused."""
    header = (b"authorization", f"Bearer {TOKEN}".encode())
    with pytest.raises(Rejected):
        bearer_token(from_get([header, header]))


def test_get_first_role_wins() -> None:
    """A repeated X-Hasura-Role keeps the first value (only Authorization is ambiguous)."""
    request = from_get([(b"x-hasura-role", b"user"), (b"x-hasura-role", b"admin-user")])
    assert request.role == "user"
    assert not request.ambiguous


# --- POST mode ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["Authorization", "authorization", "AUTHORIZATION", "aUtHoRiZaTiOn"])
def test_post_header_names_any_case(name: str) -> None:
    """POST mode finds Authorization whatever the case of its key."""
    request = post({name: f"Bearer {TOKEN}", "X-HASURA-ROLE": "user", "X-Request-Id": "r"})
    assert (request.mode, request.authorization, request.role, request.request_id) == (
        "POST",
        f"Bearer {TOKEN}",
        "user",
        "r",
    )


@pytest.mark.parametrize(
    "body_request",
    [{"variables": {}, "operationName": "Q", "query": "{ a }"}, [{"query": "{ a }"}], None, "absent"],
)
def test_post_request_member_never_read(body_request: object) -> None:
    """`request` may be an object, an array (batch), null or absent."""
    headers = {"Authorization": f"Bearer {TOKEN}"}
    body: dict[str, Any] = {"headers": headers}
    if body_request != "absent":
        body["request"] = body_request
    assert from_post(orjson.dumps(body)).authorization == f"Bearer {TOKEN}"


def test_post_keys_differing_in_case_are_ambiguous() -> None:
    """Two Authorization keys differing only in case are ambiguous."""
    request = post({"Authorization": f"Bearer {TOKEN}", "authorization": "Bearer other"})
    assert request.ambiguous
    with pytest.raises(Rejected) as info:
        bearer_token(request)
    assert info.value.reason is Reason.MALFORMED_TOKEN


def test_post_forwarded_first_hop() -> None:
    """POST mode takes the first X-Forwarded-For hop as the client IP."""
    assert post({"X-Forwarded-For": "203.0.113.7, 10.0.0.1"}).client_ip == "203.0.113.7"


def test_post_ignores_unwanted_non_string_headers() -> None:
    """Headers the hook does not use may hold anything."""
    assert post({"X-Other": 5, "Authorization": "Bearer t"}).authorization == "Bearer t"


def test_post_no_authorization() -> None:
    """A POST body without Authorization gives no token."""
    assert bearer_token(post({})) is None


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"not json", id="not-json"),
        pytest.param(b'{"headers": {', id="truncated"),
        pytest.param(b"\xff", id="binary"),
        pytest.param(b"[]", id="array"),
        pytest.param(b'[{"headers": {}}]', id="array-of-body"),
        pytest.param(b'"headers"', id="string"),
        pytest.param(b"null", id="null"),
        pytest.param(b"{}", id="missing-headers"),
        pytest.param(b'{"request": {}}', id="request-only"),
        pytest.param(b'{"headers": null}', id="headers-null"),
        pytest.param(b'{"headers": []}', id="headers-array"),
        pytest.param(b'{"headers": "Authorization: Bearer x"}', id="headers-string"),
        pytest.param(b'{"Headers": {}}', id="headers-wrong-case"),
        pytest.param(b'{"headers": {"Authorization": 5}}', id="authorization-number"),
        pytest.param(b'{"headers": {"Authorization": null}}', id="authorization-null"),
        pytest.param(b'{"headers": {"Authorization": ["Bearer x"]}}', id="authorization-list"),
        pytest.param(b'{"headers": {"X-Hasura-Role": {"r": 1}}}', id="role-object"),
        pytest.param(b'{"headers": {"User-Agent": true}}', id="ua-bool"),
    ],
)
def test_post_bad_body(body: bytes) -> None:
    """A body that is not Hasura's shape is BadHookBody (a 400), not a token rejection."""
    with pytest.raises(BadHookBody):
        from_post(body)


# --- bearer_token -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [f"Bearer {TOKEN}", f"bearer {TOKEN}", f"BEARER {TOKEN}", f"  Bearer   {TOKEN}  ", f"bEaReR {TOKEN}"],
)
def test_bearer_token_scheme_case_insensitive(value: str) -> None:
    """The Bearer scheme is matched case-insensitively and surrounding blanks are dropped."""
    assert bearer_token(HookRequest(mode="GET", authorization=value)) == TOKEN


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("Basic dXNlcjpwYXNz", id="basic"),
        pytest.param(TOKEN, id="no-scheme"),
        pytest.param(f"Token {TOKEN}", id="other-scheme"),
        pytest.param(f"Bearer{TOKEN}", id="no-space"),
        pytest.param(f"Bearer\t{TOKEN}", id="tab"),
        pytest.param(f"Bearer: {TOKEN}", id="colon"),
        pytest.param("Bearer", id="bearer-only"),
        pytest.param("Bearer ", id="bearer-space"),
        pytest.param("Bearer    ", id="bearer-spaces"),
        pytest.param("", id="empty"),
        pytest.param("   ", id="blank"),
    ],
)
def test_bearer_token_rejects_unusable(value: str) -> None:
    """Another scheme, a missing separator or an empty bearer value is malformed_token."""
    with pytest.raises(Rejected) as info:
        bearer_token(HookRequest(mode="GET", authorization=value))
    assert info.value.reason is Reason.MALFORMED_TOKEN


def test_bearer_token_absent() -> None:
    """No Authorization header at all gives None (missing token, not malformed)."""
    assert bearer_token(HookRequest(mode="POST")) is None
