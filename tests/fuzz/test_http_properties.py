"""Properties of the whole HTTP surface, generated with hypothesis and sent as raw ASGI calls.

- Arbitrary methods, paths, header bytes, bodies (bytes, JSON, Hasura-shaped) and token-like
  strings: never a 5xx, and on the hook never a 200 unless the request carries exactly one
  Authorization credential that is the unmodified valid token.
- Mutations of valid tokens (bit and byte flips, segment swaps, re-encodings, case changes,
  truncations, insertions): never a 200, in GET or POST mode.
- The unmodified valid token with arbitrary unrelated headers: always a 200 with its identity.
- Throughout: the attacker host gets nothing, the fake Keycloak gets nothing but certs GETs.

The default run has 200 examples per property (a few seconds); the `slow` variants run 10,000+.
Requests are raw ASGI calls into the app (lifespan started by the fixture) so that any bytes can
be sent: an HTTP client would refuse most of these headers before the service saw them.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tests.fuzz.conftest import Fuzz
from tests.security.support import AdversarialStack, b64url, b64url_decode

DEFAULT = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
LONG = settings(max_examples=10_000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
HOOK = "/hasura/auth"
SURFACE = [HOOK, "/healthz", "/readyz", "/metrics", "/jwks", "/openapi.json", "/", "/hasura/auth/", "/HASURA/AUTH"]
CERTS = re.compile(r"/realms/tenant-[^/]+/protocol/openid-connect/certs")


@dataclass(frozen=True)
class Answer:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes


async def asgi_call(
    app: Any, method: str, path: str, headers: list[tuple[bytes, bytes]], body: bytes = b"", *, pieces: int = 1
) -> Answer:
    """One HTTP request straight into the ASGI app (any bytes allowed), the body in `pieces` messages."""
    size = max(1, -(-len(body) // max(1, pieces)))
    chunks = [body[i : i + size] for i in range(0, len(body), size)] or [b""]
    messages: list[dict[str, Any]] = [
        {"type": "http.request", "body": chunk, "more_body": i < len(chunks) - 1} for i, chunk in enumerate(chunks)
    ]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode("utf-8", "surrogatepass"),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 40000),
        "server": ("webhook.test", 80),
        "state": {},
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    assert sent and sent[0]["type"] == "http.response.start", sent[:1]
    body_out = b"".join(m.get("body", b"") for m in sent[1:])
    return Answer(int(sent[0]["status"]), list(sent[0].get("headers", [])), body_out)


# ---------------------------------------------------------------------------------------------- oracle

_BEARER = r"[ \t]*[Bb][Ee][Aa][Rr][Ee][Rr] [ \t]*{token}[ \t]*"


def is_exact_credential(value: str, token: str) -> bool:
    return re.fullmatch(_BEARER.format(token=re.escape(token)), value) is not None


def carries_valid_token(method: str, headers: list[tuple[bytes, bytes]], body: bytes, valid: set[str]) -> bool:
    """Whether the hook may open a session: exactly one Authorization, holding a valid token as is."""
    if method == "GET":
        values = [v.decode("latin-1") for n, v in headers if n == b"authorization"]
    elif method == "POST":
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            return False
        if type(data) is not dict or type(data.get("headers")) is not dict:
            return False
        values = [v for n, v in data["headers"].items() if n.lower() == "authorization"]
    else:
        return False
    return len(values) == 1 and type(values[0]) is str and any(is_exact_credential(values[0], t) for t in valid)


def check_answer(stack: AdversarialStack, answer: Answer, path: str, carries_valid: bool) -> None:
    assert answer.status < 500, (answer.status, answer.body[:200])
    if path == HOOK:
        assert answer.status in (200, 400, 401, 405), answer.status
        if answer.status == 200:
            assert carries_valid, answer.body[:200]
            session = orjson.loads(answer.body)
            assert all(type(v) is str for v in session.values())
        length = dict(answer.headers).get(b"content-length")
        assert length is None or int(length) == len(answer.body)
    assert stack.attacker.hits == []
    assert all(m == "GET" and CERTS.fullmatch(p) for m, p in stack.keycloak.requests[-20:])


# ---------------------------------------------------------------------------------------------- strategies

B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)  # orjson serialises 64-bit integers only
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=15,
)


@st.composite
def jose_like(draw: st.DrawFn, stack: AdversarialStack) -> str:
    """Three base64url JSON segments with plausible, hostile or broken header and claims."""
    header = draw(
        st.fixed_dictionaries(
            {},
            optional={
                "alg": st.sampled_from(["RS256", "ES256", "none", "HS256", "nOnE", "PS256", "", "RS256 "])
                | st.text(max_size=8),
                "kid": st.sampled_from([stack.tenant.active_kid, *stack.other.signing_kids, "../x", ""])
                | st.text(max_size=20),
                "typ": st.sampled_from(["JWT", "at+jwt"]),
                "jku": st.just(stack.attacker.jwks_url),
                "crit": st.just(["b64"]),
            },
        )
    )
    issuers = [stack.tenant.issuer, stack.other.issuer, f"{stack.attacker.url}/realms/{stack.tenant.name}"]
    claims = draw(
        st.fixed_dictionaries(
            {},
            optional={
                "iss": st.sampled_from(issuers) | st.text(max_size=40),
                "exp": st.integers(0, 2**40) | json_values,
                "typ": st.sampled_from(["Bearer", "ID"]) | json_values,
                "sub": st.text(max_size=20),
                "https://hasura.io/jwt/claims": json_values,
            },
        )
    )
    signature = draw(st.binary(max_size=300))
    return f"{b64url(orjson.dumps(header))}.{b64url(orjson.dumps(claims))}.{b64url(signature)}"


def token_like(stack: AdversarialStack) -> st.SearchStrategy[str]:
    return st.one_of(
        st.text(alphabet=B64 + ".", max_size=200),
        st.from_regex(r"[A-Za-z0-9_\-+/=]{0,60}(\.[A-Za-z0-9_\-+/=]{0,60}){0,5}", fullmatch=True),
        jose_like(stack),
        st.text(max_size=60),
    )


HEADER_NAMES = st.sampled_from(
    [
        *(b"authorization", b"x-hasura-role", b"x-forwarded-for", b"x-real-ip", b"user-agent", b"x-request-id"),
        *(b"content-type", b"content-length", b"cookie", b"host", b"Authorization", b"transfer-encoding"),
    ]
) | st.binary(min_size=1, max_size=20)


@st.composite
def header_lists(draw: st.DrawFn, stack: AdversarialStack, valid: list[str]) -> list[tuple[bytes, bytes]]:
    credential = st.one_of(
        token_like(stack).map(lambda t: f"Bearer {t}".encode("utf-8", "surrogatepass")),
        st.sampled_from(valid).map(lambda t: f"Bearer {t}".encode()),
        st.sampled_from(valid).map(lambda t: f"bEaReR \t{t} ".encode()),
    )
    value = st.one_of(st.binary(max_size=120), credential)
    return draw(st.lists(st.tuples(HEADER_NAMES, value), max_size=8))


@st.composite
def bodies(draw: st.DrawFn, stack: AdversarialStack, valid: list[str]) -> bytes:
    name = st.sampled_from(
        ["Authorization", "authorization", "AUTHORIZATION", "X-Hasura-Role", "User-Agent"]
    ) | st.text(max_size=15)
    value = st.one_of(
        token_like(stack).map(lambda t: f"Bearer {t}"),
        st.sampled_from(valid).map(lambda t: f"Bearer {t}"),
        json_values,
    )
    hasura = st.fixed_dictionaries(
        {"headers": st.dictionaries(name, value, max_size=5)}, optional={"request": json_values}
    ).map(orjson.dumps)
    return draw(st.one_of(st.binary(max_size=400), json_values.map(orjson.dumps), hasura))


# ---------------------------------------------------------------------------------------------- mutations

MUTATIONS = [
    "bitflip",
    "byteflip",
    "swap",
    "replace-segment",
    "reencode-padded",
    "reencode-std",
    "reserialize",
    "case",
    "truncate",
    "insert",
    "delete",
    "extra-segment",
]


def _segments(token: str) -> list[str]:
    return token.split(".")


@st.composite
def mutations(draw: st.DrawFn, tokens: list[str]) -> tuple[str, str, str]:
    """(kind, original, mutated) with mutated != original (modulo the OWS HTTP strips anyway)."""
    token = draw(st.sampled_from(tokens))
    kind = draw(st.sampled_from(MUTATIONS))
    seg = _segments(token)
    j = draw(st.integers(0, 2))
    if kind == "bitflip":
        i = draw(st.integers(0, len(token) - 1))
        bit = draw(st.integers(0, 6))
        mutated = token[:i] + chr(ord(token[i]) ^ (1 << bit)) + token[i + 1 :]
    elif kind == "byteflip":
        flipped = bytearray(b64url_decode(seg[j]))
        i = draw(st.integers(0, len(flipped) - 1))
        flipped[i] ^= 1 << draw(st.integers(0, 7))
        seg[j] = b64url(bytes(flipped))
        mutated = ".".join(seg)
    elif kind == "swap":
        order = draw(st.permutations([0, 1, 2]).filter(lambda p: list(p) != [0, 1, 2]))
        mutated = ".".join(seg[k] for k in order)
    elif kind == "replace-segment":
        other = _segments(draw(st.sampled_from(tokens)))
        k = draw(st.integers(0, 2))
        seg[j] = other[k] if (other[k] != seg[j]) else seg[(j + 1) % 3]
        mutated = ".".join(seg)
    elif kind == "reencode-padded":
        seg[j] = base64.urlsafe_b64encode(b64url_decode(seg[j])).decode()
        mutated = ".".join(seg)
    elif kind == "reencode-std":
        seg[j] = base64.b64encode(b64url_decode(seg[j])).decode().rstrip("=")
        mutated = ".".join(seg)
    elif kind == "reserialize":
        k = draw(st.integers(0, 1))
        data = orjson.loads(b64url_decode(seg[k]))
        style = draw(st.sampled_from(["sorted", "spaced", "ascii-escaped", "pretty"]))
        if style == "sorted":
            raw = orjson.dumps(data, option=orjson.OPT_SORT_KEYS)
        elif style == "pretty":
            raw = orjson.dumps(data, option=orjson.OPT_INDENT_2)
        elif style == "spaced":
            raw = orjson.dumps(data).replace(b'":', b'": ', 1)
        else:
            raw = orjson.dumps(data).replace(b'"alg"', b'"\\u0061lg"').replace(b'"iss"', b'"\\u0069ss"')
        seg[k] = b64url(raw)
        mutated = ".".join(seg)
    elif kind == "case":
        if draw(st.booleans()):
            i = draw(st.integers(0, len(token) - 1))
            mutated = token[:i] + token[i].swapcase() + token[i + 1 :]
        else:
            seg[j] = seg[j].swapcase()
            mutated = ".".join(seg)
    elif kind == "truncate":
        mutated = token[: draw(st.integers(0, len(token) - 1))]
    elif kind == "insert":
        i = draw(st.integers(0, len(token)))
        char = draw(st.sampled_from(list("A_-.=+/ \t\x00\u00e9\u3000\u200b\ufeff")) | st.characters())
        mutated = token[:i] + char + token[i:]
    elif kind == "delete":
        i = draw(st.integers(0, len(token) - 1))
        mutated = token[:i] + token[i + 1 :]
    else:
        mutated = f"{token}.{seg[draw(st.integers(0, 2))]}"
    return kind, token, mutated


# ---------------------------------------------------------------------------------------------- examples


@pytest.fixture(scope="module")
def valid(fz: Fuzz) -> list[str]:
    """Honest tokens (RS256 tenant, ES256 and RS256 of another tenant, an event realm), valid for 2 h."""
    stack, kc = fz.stack, fz.stack.keycloak
    return [
        kc.mint(stack.tenant.name, lifetime=7200),
        kc.mint(stack.other.name, kid=stack.other.signing_kids[0], lifetime=7200),
        kc.mint(stack.other.name, kid=stack.other.signing_kids[1], lifetime=7200),
        kc.mint(stack.event.name, lifetime=7200),
    ]


def arbitrary_request(fz: Fuzz, valid: list[str], data: st.DataObject) -> None:
    stack = fz.stack
    method = data.draw(
        st.sampled_from(["GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS"])
        | st.from_regex(r"[A-Z]{1,8}", fullmatch=True)
    )
    path = data.draw(st.sampled_from(SURFACE) | st.text(max_size=20).map(lambda p: "/" + p))
    headers = data.draw(header_lists(stack, valid))
    body = data.draw(bodies(stack, valid)) if method != "GET" or data.draw(st.booleans()) else b""
    pieces = data.draw(st.integers(1, 3))
    carries = carries_valid_token(method, headers, body, set(valid))

    async def call() -> None:
        answer = await asgi_call(stack.app, method, path, headers, body, pieces=pieces)
        check_answer(stack, answer, path, carries)

    fz.run(call())


def mutated_token(fz: Fuzz, valid: list[str], data: st.DataObject) -> None:
    stack = fz.stack
    kind, original, mutated = data.draw(mutations(valid))
    assume(mutated.strip(" \t") != original)  # HTTP strips optional whitespace around a field value
    raw = mutated.encode("utf-8", "surrogatepass")
    try:
        body: bytes | None = orjson.dumps({"headers": {"Authorization": f"Bearer {mutated}"}})
    except orjson.JSONEncodeError:  # lone surrogates cannot be JSON: Hasura could not send them
        body = None

    async def call() -> None:
        get = await asgi_call(stack.app, "GET", HOOK, [(b"authorization", b"Bearer " + raw)])
        check_answer(stack, get, HOOK, carries_valid=False)
        assert get.status == 401, (kind, get.status, get.body)
        if body is not None:
            post = await asgi_call(stack.app, "POST", HOOK, [(b"content-type", b"application/json")], body)
            check_answer(stack, post, HOOK, carries_valid=False)
            assert post.status == 401, (kind, post.status, post.body)

    fz.run(call())


def unmodified_token(fz: Fuzz, valid: list[str], data: st.DataObject) -> None:
    token = data.draw(st.sampled_from(valid))
    unrelated = st.binary(min_size=1, max_size=20).filter(
        lambda n: n.lower() not in (b"authorization", b"x-hasura-role")
    )
    extra = data.draw(st.lists(st.tuples(unrelated, st.binary(max_size=80)), max_size=6))
    headers = [*extra, (b"authorization", f"Bearer {token}".encode())]
    claims = orjson.loads(b64url_decode(token.split(".")[1]))

    async def call() -> None:
        answer = await asgi_call(fz.stack.app, "GET", HOOK, headers)
        assert answer.status == 200, answer.body
        session = orjson.loads(answer.body)
        assert session["X-Hasura-User-Id"] == claims["https://hasura.io/jwt/claims"]["x-hasura-user-id"]

    fz.run(call())


# ---------------------------------------------------------------------------------------------- tests


@DEFAULT
@given(data=st.data())
def test_arbitrary_requests_never_5xx_never_unearned_200(fz: Fuzz, valid: list[str], data: st.DataObject) -> None:
    arbitrary_request(fz, valid, data)


@DEFAULT
@given(data=st.data())
def test_mutated_valid_tokens_never_accepted(fz: Fuzz, valid: list[str], data: st.DataObject) -> None:
    mutated_token(fz, valid, data)


@DEFAULT
@given(data=st.data())
def test_unmodified_valid_token_always_accepted(fz: Fuzz, valid: list[str], data: st.DataObject) -> None:
    unmodified_token(fz, valid, data)


@pytest.mark.slow
@LONG
@given(data=st.data())
def test_arbitrary_requests_long(fz: Fuzz, valid: list[str], data: st.DataObject) -> None:
    arbitrary_request(fz, valid, data)


@pytest.mark.slow
@LONG
@given(data=st.data())
def test_mutated_valid_tokens_long(fz: Fuzz, valid: list[str], data: st.DataObject) -> None:
    mutated_token(fz, valid, data)


@pytest.mark.slow
@LONG
@given(data=st.data())
def test_unmodified_valid_token_long(fz: Fuzz, valid: list[str], data: st.DataObject) -> None:
    unmodified_token(fz, valid, data)


def test_oracle_recognises_exact_credentials() -> None:
    assert is_exact_credential("Bearer a.b.c", "a.b.c")
    assert is_exact_credential(" bearer \ta.b.c\t", "a.b.c")
    assert not is_exact_credential("Bearer a.b.c\u3000", "a.b.c")
    assert not is_exact_credential("Bearer a.b.cd", "a.b.c")
    assert not is_exact_credential("Bearera.b.c", "a.b.c")
