"""The auth hook against Hasura's webhook contract, over real HTTP, in GET and POST mode."""

from __future__ import annotations

import hashlib
import time

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.auth.conftest import EVENT, OTHER_TENANT, TENANT, Stack, StackFactory, bearer, random_uuid
from webhook.testing.keycloak import SigningKey, attacker_key

pytestmark = pytest.mark.anyio
MODES = ["GET", "POST"]


@pytest.mark.parametrize("mode", MODES)
async def test_tenant_token_opens_a_session(stack: Stack, mode: str) -> None:
    """A tenant realm's access token gives Hasura a session of strings with the default role."""
    token = stack.keycloak.mint(stack.tenant.name, sub="u-1", lifetime=300)
    verdict = await stack.hasura(mode).authenticate(bearer(token))
    assert verdict.outcome == "session", verdict
    assert verdict.session is not None
    assert verdict.session["x-hasura-role"] == "admin-user"
    assert verdict.session["x-hasura-tenant-id"] == TENANT
    assert verdict.session["x-hasura-user-id"] == "u-1"
    assert "x-hasura-event-id" not in verdict.session
    assert verdict.expires_in is not None and 290 <= verdict.expires_in <= 300


@pytest.mark.parametrize("mode", MODES)
async def test_event_realm_token_carries_the_event(stack: Stack, mode: str) -> None:
    """An election-event realm's token adds X-Hasura-Event-Id to the session."""
    token = stack.keycloak.mint(stack.event.name)
    verdict = await stack.hasura(mode).authenticate(bearer(token))
    assert verdict.session is not None
    assert verdict.session["x-hasura-event-id"] == EVENT
    assert verdict.session["x-hasura-tenant-id"] == TENANT


@pytest.mark.parametrize("mode", MODES)
async def test_realm_loaded_at_run_time(stack: Stack, mode: str) -> None:
    """A realm never prefetched is fetched on first use and its RS256 key verifies."""
    token = stack.keycloak.mint(stack.other.name, kid=stack.other.signing_kids[1])
    verdict = await stack.hasura(mode).authenticate(bearer(token))
    assert verdict.outcome == "session", verdict.hook_body


async def test_es256_refused_unless_configured(stack: Stack) -> None:
    """With the default allow-list (RS256), an ES256 token is alg_not_allowed even from a trusted realm."""
    token = stack.keycloak.mint(stack.other.name, kid=stack.other.signing_kids[0])
    verdict = await stack.hasura("GET").authenticate(bearer(token))
    assert orjson.loads(verdict.hook_body)["reason"] == "alg_not_allowed"


async def test_rs256_and_es256_both_configurable(make_stack: StackFactory) -> None:
    """With ES256 allowed, both of a realm's signing keys verify."""
    async with make_stack(ALLOWED_ALGORITHMS="RS256,ES256") as stack:
        for kid in stack.other.signing_kids:
            token = stack.keycloak.mint(stack.other.name, kid=kid)
            verdict = await stack.hasura("GET").authenticate(bearer(token))
            assert verdict.outcome == "session", verdict.hook_body


@pytest.mark.parametrize("form", ["object", "array", "null", "absent"])
async def test_post_request_in_every_form(stack: Stack, form: str) -> None:
    """POST bodies whose `request` is an object, an array, null or absent are all fine."""
    token = stack.keycloak.mint(stack.tenant.name)
    verdict = await stack.hasura("POST").authenticate(bearer(token), request_form=form)  # type: ignore[arg-type]
    assert verdict.outcome == "session"


@pytest.mark.parametrize(
    "header", [("authorization", "Bearer {t}"), ("AUTHORIZATION", "bearer {t}"), ("Authorization", "BEARER {t}")]
)
@pytest.mark.parametrize("mode", MODES)
async def test_header_name_and_scheme_are_case_insensitive(stack: Stack, mode: str, header: tuple[str, str]) -> None:
    """`Authorization` and `Bearer` match in any case, in both modes."""
    token = stack.keycloak.mint(stack.tenant.name)
    verdict = await stack.hasura(mode).authenticate([(header[0], header[1].format(t=token))])
    assert verdict.outcome == "session"


@pytest.mark.parametrize("mode", MODES)
async def test_requested_role_is_honoured_when_allowed(stack: Stack, mode: str) -> None:
    """X-Hasura-Role picks one of the token's allowed roles."""
    token = stack.keycloak.mint(stack.tenant.name)
    verdict = await stack.hasura(mode).authenticate({**bearer(token), "x-hasura-role": "election-event-read"})
    assert verdict.role == "election-event-read"


@pytest.mark.parametrize("mode", MODES)
async def test_requested_role_not_allowed_is_401_not_a_downgrade(stack: Stack, mode: str) -> None:
    """A requested role outside the allowed roles is a 401 role_not_allowed."""
    token = stack.keycloak.mint(stack.tenant.name)
    verdict = await stack.hasura(mode).authenticate({**bearer(token), "X-Hasura-Role": "superuser"})
    assert verdict.outcome == "access-denied"
    assert orjson.loads(verdict.hook_body)["reason"] == "role_not_allowed"


async def test_role_refused_to_a_verified_token_is_audited_and_counted_under_its_realm(stack: Stack) -> None:
    """A verified token asking for a role it lacks: the audit record and the rejection metric name
    the token's realm and user (a realm's broken role mapper is alerted on per realm)."""
    token = stack.keycloak.mint(stack.tenant.name, sub="mapper-victim")
    await stack.hasura("GET").authenticate({**bearer(token), "X-Hasura-Role": "superuser"})
    (record,) = stack.audit.records
    assert (record.reason, record.realm, record.facts.sub) == ("role_not_allowed", stack.tenant.name, "mapper-victim")
    text = (await stack.client.get(f"{stack.url}/metrics")).text
    assert f'webhook_rejections_total{{realm="{stack.tenant.name}",reason="role_not_allowed"}} 1.0' in text


async def test_admin_role_is_never_granted(stack: Stack) -> None:
    """A token listing Hasura's `admin` role cannot select it (FORBIDDEN_ROLES)."""
    token = stack.keycloak.mint(stack.tenant.name, roles=["admin", "user"], default_role="user")
    verdict = await stack.hasura("GET").authenticate({**bearer(token), "X-Hasura-Role": "admin"})
    assert verdict.outcome == "access-denied"


@pytest.mark.parametrize("mode", MODES)
async def test_no_token_is_missing_token(stack: Stack, mode: str) -> None:
    """Without ANONYMOUS_ROLE, a request with no token is 401 missing_token."""
    verdict = await stack.hasura(mode).authenticate({"X-Request-Id": "r-1"})
    assert verdict.outcome == "access-denied"
    assert orjson.loads(verdict.hook_body) == {"error": "unauthorized", "reason": "missing_token"}


async def test_anonymous_role_for_no_token_but_never_for_a_bad_one(make_stack: StackFactory) -> None:
    """With ANONYMOUS_ROLE, no token gives that role only; a bad token is still 401."""
    async with make_stack(ANONYMOUS_ROLE="anonymous") as stack:
        hasura = stack.hasura("GET")
        verdict = await hasura.authenticate({})
        assert verdict.session == {"x-hasura-role": "anonymous"}
        bad = await hasura.authenticate(bearer("not.a.token"))
        assert bad.outcome == "access-denied"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"not json", "body is not JSON"),
        (b"[1, 2]", "body is not a JSON object"),
        (b'{"request": null}', 'body has no "headers" object'),
        (b'{"headers": "Authorization: Bearer x"}', 'body has no "headers" object'),
        (b'{"headers": {"Authorization": 5}}', 'header "Authorization" is not a string'),
    ],
)
async def test_post_body_not_hasura_shape_is_400(stack: Stack, body: bytes, message: str) -> None:
    """A POST body that is not Hasura's shape is a 400 naming what is wrong (caller error)."""
    response = await stack.client.post(f"{stack.url}/hasura/auth", content=body)
    assert response.status_code == 400
    assert response.json() == {"error": message}


async def test_post_body_over_cap_is_decided_on_its_headers(make_stack: StackFactory) -> None:
    """A POST body above MAX_BODY_BYTES (a large GraphQL request) is decided on its `headers` member
    like any other (here: no token, 401 missing_token); only a `headers` member above it is a 400."""
    async with make_stack(MAX_BODY_BYTES="4096") as stack:
        body = orjson.dumps({"headers": {}, "request": {"query": "x" * 5000}})
        response = await stack.client.post(f"{stack.url}/hasura/auth", content=body)
        assert (response.status_code, response.json()["reason"]) == (401, "missing_token")
        body = orjson.dumps({"headers": {"User-Agent": "x" * 5000}, "request": None})
        response = await stack.client.post(f"{stack.url}/hasura/auth", content=body)
        assert response.status_code == 400
        assert "MAX_BODY_BYTES" in response.json()["error"]


async def test_other_methods_are_405(stack: Stack) -> None:
    """Only GET and POST reach the hook."""
    response = await stack.client.put(f"{stack.url}/hasura/auth")
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, POST"


async def test_cache_control_never_outlives_the_token(stack: Stack) -> None:
    """max-age is the seconds left before exp, so Hasura closes websockets on time."""
    now = int(time.time())
    token = stack.keycloak.mint(stack.tenant.name, now=now - 100, lifetime=160)
    verdict = await stack.hasura("GET").authenticate(bearer(token))
    assert verdict.expires_in is not None and 0 < verdict.expires_in <= 60


async def test_decision_is_logged_once_without_the_token(stack: Stack) -> None:
    """Each decision is one JSON log line; neither it nor any field holds the token."""
    token = stack.keycloak.mint(stack.tenant.name)
    bad = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    await stack.hasura("GET").authenticate(bearer(token))
    await stack.hasura("POST").authenticate({**bearer(bad), "X-Forwarded-For": "203.0.113.9, 10.0.0.1"})
    decisions = stack.decision_lines()
    assert [d["event"] for d in decisions] == ["auth.decision"] * 2
    assert [d["result"] for d in decisions] == ["allow", "reject"]
    assert decisions[1]["reason"] == "bad_signature"
    assert decisions[1]["client_ip"] == "203.0.113.9"
    assert decisions[1]["kid"] == stack.tenant.active_kid
    assert decisions[1]["token_sha256"] == hashlib.sha256(bad.encode()).hexdigest()
    blob = repr(decisions)
    for text in (token, bad):
        assert not any(text[i : i + 20] in blob for i in range(0, len(text) - 20, 7))


async def test_rejection_is_audited_with_hash_not_token(stack: Stack) -> None:
    """A rejection reaches the audit sink with reason, realm, kid, sub and the token's SHA-256."""
    token = stack.keycloak.mint(stack.tenant.name, sub="victim", lifetime=-100, now=int(time.time()) - 1000)
    await stack.hasura("GET").authenticate(bearer(token))
    (record,) = stack.audit.records
    assert record.reason == "expired"
    assert record.realm == stack.tenant.name
    assert record.facts.sub == "victim"
    assert record.facts.kid == stack.tenant.active_kid
    assert record.hook_mode == "GET"
    assert record.user_agent is not None and record.user_agent.startswith("hasura-graphql-engine/")
    assert record.token_sha256 is not None and len(record.token_sha256) == 64
    assert token not in repr(record)


async def test_health_ready_and_metrics(stack: Stack) -> None:
    """/healthz is alive, /readyz ready once prefetched realms load, /metrics counts decisions by reason."""
    assert (await stack.client.get(f"{stack.url}/healthz")).json()["status"] == "ok"
    ready = await stack.client.get(f"{stack.url}/readyz")
    assert ready.status_code == 200
    assert ready.json()["realms"] == {stack.tenant.name: "fresh"}
    await stack.hasura("GET").authenticate({})
    text = (await stack.client.get(f"{stack.url}/metrics")).text
    assert 'webhook_decisions_total{reason="missing_token",result="reject"} 1.0' in text
    assert 'webhook_jwks_fetches_total{outcome="ok"} 1.0' in text
    assert "webhook_decision_seconds_bucket" in text


async def test_metrics_show_prefetched_realm_jwks_health(stack: Stack) -> None:
    """/metrics carries per-realm JWKS series for the prefetched realm only: state, failures, age, outcomes."""
    realm = stack.tenant.name
    text = (await stack.client.get(f"{stack.url}/metrics")).text
    assert f'webhook_jwks_realm_state{{realm="{realm}",state="fresh"}} 1.0' in text
    assert f'webhook_jwks_realm_state{{realm="{realm}",state="stale"}} 0.0' in text
    assert f'webhook_jwks_realm_fetch_failures{{realm="{realm}"}} 0.0' in text
    assert f'webhook_jwks_realm_fetches_total{{outcome="ok",realm="{realm}"}} 1.0' in text
    assert f'webhook_jwks_realm_key_age_seconds{{realm="{realm}"}}' in text
    assert f'webhook_jwks_realm_usable_seconds{{realm="{realm}"}}' in text
    other = stack.keycloak.add_realm(f"tenant-{random_uuid()}")
    await stack.hasura("GET").authenticate(bearer(stack.keycloak.mint(other.name)))
    text = (await stack.client.get(f"{stack.url}/metrics")).text
    assert other.name not in text  # a realm first seen in a token gets no series of its own


async def test_metrics_report_the_expiry_of_verified_api_keys_only(stack: Stack) -> None:
    """/metrics carries webhook_api_key_expiry_timestamp_seconds{realm,key} for API keys whose tokens
    verified (an expired key's too, though refused); a forged token, a name no key can have, an event
    realm's token and a key without expiry add no series."""
    soon, past = int(time.time()) + 3600, int(time.time()) - 60
    hasura = stack.hasura("GET")

    def key_token(realm: str, name: str, exp: int | None, signing_key: SigningKey | None = None) -> dict[str, str]:
        claim = {"name": name} if exp is None else {"name": name, "exp": exp}
        return bearer(stack.keycloak.mint(realm, claims={"api_key": claim}, signing_key=signing_key))

    assert (await hasura.authenticate(key_token(stack.tenant.name, "erp-sync", soon))).outcome == "session"
    assert (await hasura.authenticate(key_token(stack.tenant.name, "old-export", past))).outcome == "access-denied"
    forged = key_token(stack.tenant.name, "forged-key", soon, signing_key=attacker_key("RS256"))
    assert (await hasura.authenticate(forged)).outcome == "access-denied"
    assert (await hasura.authenticate(key_token(stack.tenant.name, "Not A Key", soon))).outcome == "session"
    assert (await hasura.authenticate(key_token(stack.event.name, "event-key", soon))).outcome == "session"
    assert (await hasura.authenticate(key_token(stack.tenant.name, "forever", None))).outcome == "session"
    text = (await stack.client.get(f"{stack.url}/metrics")).text
    series = {
        (sample.labels["realm"], sample.labels["key"]): sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "webhook_api_key_expiry_timestamp_seconds"
        for sample in family.samples
    }
    assert series == {(stack.tenant.name, "erp-sync"): soon, (stack.tenant.name, "old-export"): past}


async def test_not_ready_while_keycloak_is_down_at_start_then_recovers(make_stack: StackFactory) -> None:
    """Keycloak down at start: the service runs, /readyz is 503 with the error, then ready after a refresh."""
    async with make_stack(keycloak_down=True, JWKS_RETRY_SECONDS="0") as stack:
        runtime = stack.app.runtime
        assert runtime is not None
        ready = await stack.client.get(f"{stack.url}/readyz")
        assert ready.status_code == 503
        assert ready.json()["errors"] == {stack.tenant.name: "HTTP 503"}
        token = stack.keycloak.mint(stack.tenant.name)
        verdict = await stack.hasura("GET").authenticate(bearer(token))
        assert orjson.loads(verdict.hook_body)["reason"] == "jwks_unavailable"
        stack.keycloak.set_behaviour("ok")
        await runtime.cache.refresh_due()
        assert (await stack.client.get(f"{stack.url}/readyz")).status_code == 200
        assert (await stack.hasura("GET").authenticate(bearer(token))).outcome == "session"


async def test_other_tenant_realm_token_cannot_claim_our_tenant(stack: Stack) -> None:
    """A token of tenant B's realm naming tenant A in its claims is realm_mismatch."""
    token = stack.keycloak.mint(
        stack.other.name, kid=stack.other.signing_kids[1], hasura_claims={"x-hasura-tenant-id": TENANT}
    )
    verdict = await stack.hasura("GET").authenticate(bearer(token))
    assert orjson.loads(verdict.hook_body)["reason"] == "realm_mismatch"
    assert OTHER_TENANT in stack.other.name


async def test_roles_applied_after_the_token_cache(stack: Stack) -> None:
    """The same (cached) token answers each request with the role it asks for, and refuses a bad one."""
    token = stack.keycloak.mint(stack.tenant.name)
    hasura = stack.hasura("GET")
    assert (await hasura.authenticate(bearer(token))).role == "admin-user"
    assert (await hasura.authenticate({**bearer(token), "X-Hasura-Role": "tenant-read"})).role == "tenant-read"
    denied = await hasura.authenticate({**bearer(token), "X-Hasura-Role": "nope"})
    assert denied.outcome == "access-denied"
    text = (await stack.client.get(f"{stack.url}/metrics")).text
    assert 'webhook_token_cache_lookups_total{result="hit"} 2.0' in text


async def test_repeated_bad_token_is_audited_every_time(stack: Stack) -> None:
    """A cached rejection is still logged, counted and audited on each repeat."""
    token = stack.keycloak.mint(stack.tenant.name, typ="ID")
    for _ in range(3):
        await stack.hasura("GET").authenticate(bearer(token))
    assert [r.reason for r in stack.audit.records] == ["wrong_token_type"] * 3
    assert len({r.token_sha256 for r in stack.audit.records}) == 1
    assert stack.rejections("wrong_token_type") == 3


async def test_platform_roles_only_from_the_super_admin_tenant(make_stack: StackFactory) -> None:
    """A tenant realm's token listing platform-operator cannot use it; the super-admin tenant's can."""
    async with make_stack(SUPER_ADMIN_TENANT_ID=OTHER_TENANT) as stack:
        hasura = stack.hasura("GET")
        roles = ["admin-user", "platform-operator"]
        ours = stack.keycloak.mint(stack.tenant.name, roles=roles)
        verdict = await hasura.authenticate({**bearer(ours), "X-Hasura-Role": "platform-operator"})
        assert orjson.loads(verdict.hook_body)["reason"] == "role_not_allowed"
        kid = stack.other.signing_kids[1]
        platform = stack.keycloak.mint(stack.other.name, kid=kid, roles=roles)
        verdict = await hasura.authenticate({**bearer(platform), "X-Hasura-Role": "platform-operator"})
        assert verdict.role == "platform-operator"
