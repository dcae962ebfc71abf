"""POST /keycloak/backchannel-logout against our served app, on SQLite and PostgreSQL: what is taken,
what is refused (and then revokes nothing), and what a revocation does to access tokens."""

from __future__ import annotations

import time
import uuid

import anyio
import orjson
import pytest

from tests.revocation.conftest import LogoutStack, LogoutStackFactory
from webhook.core.reasons import Reason
from webhook.revocation.endpoint import PATH
from webhook.testing.keycloak import DROP, attacker_key

pytestmark = pytest.mark.anyio


def _session(stack: LogoutStack, sub: str | None = None) -> tuple[str, str, str]:
    """(access token, sid, sub) of a new session in the tenant realm."""
    sid, user = str(uuid.uuid4()), sub or str(uuid.uuid4())
    return stack.keycloak.mint(stack.tenant.name, sub=user, claims={"sid": sid}), sid, user


async def test_a_taken_logout_revokes_the_session_even_from_the_token_cache(
    make_logout_stack: LogoutStackFactory,
) -> None:
    """A Keycloak-shaped logout token for a sid answers 200 (no-store); the session's token, already in the
    verified-token cache, then answers 401 session_revoked, while another session of the same user works."""
    async with make_logout_stack() as stack:
        token, sid, sub = _session(stack)
        other, _, _ = _session(stack, sub)
        assert (await stack.hook(token))[0] == 200  # now cached
        status, body = await stack.logout(stack.keycloak.logout_token(stack.tenant.name, sub=sub, sid=sid))
        assert (status, body) == (200, b"")
        status, answer = await stack.hook(token)
        assert (status, answer["reason"]) == (401, "session_revoked")
        assert (await stack.hook(other))[0] == 200
        assert stack.first.revocations.set.hits >= 1
        metrics = (await stack.client.get(f"{stack.first.url}/metrics")).text
        assert 'webhook_revocations_received_total{result="taken"} 1.0' in metrics
        assert "webhook_revocation_hits_total 1.0" in metrics
        assert "webhook_revocation_uncertain 0.0" in metrics


async def test_a_logout_with_only_sub_revokes_every_earlier_session_of_the_user(
    make_logout_stack: LogoutStackFactory,
) -> None:
    """Without sid, every token of that user in that realm issued up to the logout's iat is refused; a token
    issued later, and the same user id in another realm, still work."""
    async with make_logout_stack() as stack:
        now = int(time.time())
        sub = str(uuid.uuid4())
        first = stack.keycloak.mint(stack.tenant.name, sub=sub, now=now - 10)
        second = stack.keycloak.mint(stack.tenant.name, sub=sub, now=now - 5)
        elsewhere = stack.keycloak.mint(stack.other.name, sub=sub, now=now - 5)
        status, _ = await stack.logout(stack.keycloak.logout_token(stack.tenant.name, sub=sub, now=now - 2))
        assert status == 200
        for token in (first, second):
            assert (await stack.hook(token))[1].get("reason") == "session_revoked"
        later = stack.keycloak.mint(stack.tenant.name, sub=sub, now=now)
        assert (await stack.hook(later))[0] == 200
        assert (await stack.hook(elsewhere))[0] == 200


async def test_a_replayed_logout_token_is_refused_and_audited(make_logout_stack: LogoutStackFactory) -> None:
    """The same logout token twice: 200, then 400 token_replayed (audited with its hash only)."""
    async with make_logout_stack() as stack:
        _, sid, sub = _session(stack)
        logout = stack.keycloak.logout_token(stack.tenant.name, sub=sub, sid=sid)
        assert (await stack.logout(logout))[0] == 200
        status, body = await stack.logout(logout)
        assert status == 400
        assert orjson.loads(body)["reason"] == "token_replayed"
        record = stack.first.audit.records[-1]
        assert (record.reason, record.hook_mode, record.source) == (Reason.TOKEN_REPLAYED, "logout", "hook")
        assert logout[:20] not in repr(stack.first.audit.records)


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("other_realms_key", "bad_signature"),
        ("attacker_key", "bad_signature"),
        ("no_events", "claims_invalid"),
        ("wrong_event", "claims_invalid"),
        ("nonce", "claims_invalid"),
        ("no_sid_no_sub", "claims_invalid"),
        ("no_jti", "claims_invalid"),
        ("no_aud", "claims_invalid"),
        ("foreign_aud", "audience_not_allowed"),
        ("expired", "expired"),
        ("future_iat", "not_yet_valid"),
        ("no_exp", "claims_invalid"),
        ("typ_jwt_access", "wrong_token_type"),
        ("unknown_issuer", "unknown_issuer"),
        ("alg_none", "alg_not_allowed"),
    ],
)
async def test_a_bad_logout_token_revokes_nothing(
    make_logout_stack: LogoutStackFactory, name: str, reason: str
) -> None:
    """Each forged or malformed logout token answers 400 with its reason code (no-store), is audited and
    counted, and the session it names keeps working."""
    async with make_logout_stack() as stack:
        token, sid, sub = _session(stack)
        kc, realm, now = stack.keycloak, stack.tenant.name, int(time.time())
        variants = {
            "other_realms_key": lambda: kc.logout_token(realm, sub=sub, sid=sid, signing_key=stack.other.private_key()),
            "attacker_key": lambda: kc.logout_token(realm, sub=sub, sid=sid, signing_key=attacker_key()),
            "no_events": lambda: kc.logout_token(realm, sub=sub, sid=sid, claims={"events": DROP}),
            "wrong_event": lambda: kc.logout_token(realm, sub=sub, sid=sid, claims={"events": {"other": {}}}),
            "nonce": lambda: kc.logout_token(realm, sub=sub, sid=sid, claims={"nonce": "n"}),
            "no_sid_no_sub": lambda: kc.logout_token(realm, claims={"sub": DROP}),
            "no_jti": lambda: kc.logout_token(realm, sub=sub, sid=sid, claims={"jti": DROP}),
            "no_aud": lambda: kc.logout_token(realm, sub=sub, sid=sid, claims={"aud": DROP}),
            "foreign_aud": lambda: kc.logout_token(realm, sub=sub, sid=sid, client_id="someone-else"),
            "expired": lambda: kc.logout_token(realm, sub=sub, sid=sid, now=now - 600),
            "future_iat": lambda: kc.logout_token(realm, sub=sub, sid=sid, now=now + 600),
            "no_exp": lambda: kc.logout_token(realm, sub=sub, sid=sid, claims={"exp": DROP}),
            "typ_jwt_access": lambda: kc.logout_token(realm, sub=sub, sid=sid, header={"typ": "at+jwt"}),
            "unknown_issuer": lambda: kc.logout_token(
                realm, sub=sub, sid=sid, claims={"iss": "https://evil.example/realms/x"}
            ),
            "alg_none": lambda: kc.logout_token(realm, sub=sub, sid=sid, header={"alg": "none"}),
        }
        logout = variants[name]()
        status, body = await stack.logout(logout)
        assert status == 400, body
        assert orjson.loads(body)["reason"] == reason
        assert (await stack.hook(token))[0] == 200
        assert len(stack.first.revocations.set) == 0
        record = stack.first.audit.records[-1]
        assert (record.hook_mode, record.reason.value) == ("logout", reason)
        if reason == "bad_signature":  # the realm the issuer named is recorded, as for access tokens
            assert record.realm == stack.tenant.name
        assert logout[:20] not in repr(record)
        assert stack.first.revocations.stats.received["rejected"] == 1


async def test_the_endpoint_refuses_what_is_not_a_logout_form(make_logout_stack: LogoutStackFactory) -> None:
    """GET is 405; JSON, two logout_tokens, none, or a body over the bound are 400 with no-store."""
    async with make_logout_stack() as stack:
        url = f"{stack.first.url}{PATH}"
        assert (await stack.client.get(url)).status_code == 405
        answers = [
            await stack.client.post(url, json={"logout_token": "x"}),
            await stack.client.post(url, content=b"logout_token=a&logout_token=b", headers=_FORM),
            await stack.client.post(url, content=b"other=1", headers=_FORM),
            await stack.client.post(url, content=b"logout_token=" + b"a" * 100_000, headers=_FORM),
        ]
        for answer in answers:
            assert answer.status_code == 400
            assert answer.headers["cache-control"] == "no-store"
            assert answer.json()["reason"] == "malformed_token"
        assert len(stack.first.revocations.set) == 0


async def test_two_replicas_share_revocations_within_a_second(make_logout_stack: LogoutStackFactory) -> None:
    """A logout taken by one replica is honoured by the other (NOTIFY on PostgreSQL, the poll on SQLite)
    within 1 s, and a replay sent to the other replica is refused by the database's uniqueness."""
    async with make_logout_stack(replicas=2) as stack:
        token, sid, sub = _session(stack)
        second = stack.replicas[1]
        assert (await stack.hook(token, second))[0] == 200
        logout = stack.keycloak.logout_token(stack.tenant.name, sub=sub, sid=sid)
        assert (await stack.logout(logout))[0] == 200
        with anyio.fail_after(1.0):
            await second.revocations.wait_until(bool)
        assert (await stack.hook(token, second))[1].get("reason") == "session_revoked"
        status, body = await stack.logout(logout, second)
        assert (status, orjson.loads(body)["reason"]) == (400, "token_replayed")


_FORM = {"Content-Type": "application/x-www-form-urlencoded"}
