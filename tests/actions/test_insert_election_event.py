"""insertElectionEvent end to end: Hasura stand-in -> our service -> database -> worker -> fake Keycloak."""

from __future__ import annotations

import asyncio
from typing import Any, Final

import pytest

from tests.actions.conftest import OTHER, SUPER, TENANT, ActionStack, StackFactory, random_uuid
from webhook.core.session import CLAIM_EVENT, CLAIM_TENANT
from webhook.db.models import ElectionEvent, RealmProvisioningJob
from webhook.provisioning.templates import keycloak_claim

pytestmark = pytest.mark.anyio

#: The `electionEvent` variable of seed 001's CreateElectionEvent mutation, exactly as the platform's
#: docs send it (its tenant is the dev super-admin tenant).
SEED_001_EVENT: Final[dict[str, Any]] = {
    "id": "dc65960e-5e64-4d6c-8d66-fc6f841b386b",
    "name": "Create Event 1",
    "encryption_protocol": "RSA256",
    "tenant_id": "90505c8a-23a9-4cdf-a26b-4e19f6a097d5",
    "is_archived": False,
    "presentation": {
        "i18n": {
            "en": {"name": "Create Event 1"},
            "es": {"name": "Create Event 1"},
            "cat": {"name": "Create Event 1"},
            "fr": {"name": "Create Event 1"},
        },
        "language_conf": {"enabled_language_codes": ["en"], "default_language_code": "en"},
    },
}
SEED_001_QUERY: Final = (
    "mutation CreateElectionEvent($electionEvent: CreateElectionEventInput!) {\n"
    "  insertElectionEvent(object: $electionEvent) {\n    id\n    __typename\n  }\n}"
)


def event_input(tenant: str = TENANT, **fields: Any) -> dict[str, Any]:
    return {"id": random_uuid(), "tenant_id": tenant, "name": "General election 2027", **fields}


def mappers(client: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {m["name"]: m for m in client["protocolMappers"]}


async def test_seed_001_mutation_creates_the_event_and_its_realm(stack: ActionStack) -> None:
    """Seed 001's variables, unchanged, make the event row (platform defaults) and the realm tenant-<t>-event-<e>."""
    verdict = await stack.call("insertElectionEvent", SEED_001_EVENT, token=stack.token(SUPER))
    assert verdict.outcome == "data", verdict.body
    realm = f"tenant-{SUPER}-event-{SEED_001_EVENT['id']}"
    assert verdict.data == {"id": SEED_001_EVENT["id"], "realm": realm, "provisioning": "pending"}

    row = await stack.event(SEED_001_EVENT["id"])
    assert row is not None
    assert (row.tenant_id, row.name, row.encryption_protocol, row.is_archived) == (
        SUPER,
        "Create Event 1",
        "RSA256",
        False,
    )
    assert row.presentation == SEED_001_EVENT["presentation"]
    assert row.statistics == {"num_emails_sent": 0, "num_sms_sent": 0}
    assert row.voting_channels == {
        "online": True,
        "kiosk": None,
        "telephone": None,
        "paper": None,
        "early_voting": None,
    }
    assert row.description is None and row.labels is None and row.is_audit is None
    assert row.created_at is not None and row.created_at == row.updated_at

    await stack.provisioned(realm)
    job = await stack.job(realm)
    assert job is not None and (job.status, job.attempts, job.last_error) == ("done", 1, None)
    created = stack.keycloak.admin_realms[realm]
    assert created["enabled"] is True and created["accessTokenLifespan"] == 300
    clients = {c["clientId"]: c for c in created["clients"]}
    assert set(clients) == {"admin-portal", "voting-portal", "api-key-client"}
    assert all("secret" not in c for c in clients.values())
    assert "components" not in created or "org.keycloak.keys.KeyProvider" not in created["components"]
    voting = clients["voting-portal"]
    assert voting["rootUrl"] == "https://vote.example.org"
    assert voting["baseUrl"] == f"/tenant/{SUPER}/event/{SEED_001_EVENT['id']}/login"
    assert clients["admin-portal"]["rootUrl"] == "https://admin.example.org"
    for client in clients.values():
        found = mappers(client)
        assert found[CLAIM_TENANT]["config"]["claim.value"] == SUPER
        assert found[CLAIM_EVENT]["config"]["claim.value"] == SEED_001_EVENT["id"]
        assert found[CLAIM_EVENT]["config"]["claim.name"] == keycloak_claim(CLAIM_EVENT)
    assert created["attributes"] == {"tenant-id": SUPER, "event-id": SEED_001_EVENT["id"], "realm-kind": "event"}
    calls = [(c.method, c.status) for c in stack.keycloak.admin_calls_for(realm)]
    assert calls[:2] == [("GET", 404), ("POST", 201)]  # then reads back (and assigns the API key's roles)
    assert {method for method, _ in calls} <= {"GET", "POST"} and [m for m, _ in calls].count("POST") == 2


async def test_new_event_realm_is_trusted_by_the_hook(stack: ActionStack) -> None:
    """Once provisioned, the event realm's tokens open a Hasura session with the event id (pattern mode)."""
    fields = event_input()
    verdict = await stack.call("insertElectionEvent", fields)
    assert verdict.outcome == "data", verdict.body
    await stack.provisioned(verdict.data["realm"])
    token = stack.keycloak.mint(verdict.data["realm"], default_role="user", roles=["user"])
    session = await stack.hook(token)
    assert session.outcome == "session", session.hook_body
    assert session.session is not None
    assert session.session["x-hasura-event-id"] == fields["id"]
    assert session.session["x-hasura-tenant-id"] == TENANT


async def test_hasura_request_query_and_ignored_platform_fields(sqlite_stack: ActionStack) -> None:
    """dates, created_at and updated_at are accepted and ignored; an id is generated when absent."""
    fields = {
        "tenant_id": TENANT,
        "name": "No id given",
        "dates": {"start_date": "2027-01-01"},
        "created_at": "2020-01-01T00:00:00Z",
        "updated_at": None,
        "description": "d",
        "labels": {"k": "v"},
        "annotations": {},
        "voting_channels": {"online": True, "kiosk": True},
        "status": {"voting_status": "NOT_STARTED"},
        "bulletin_board_reference": {"id": 1},
        "is_audit": False,
        "user_boards": "board",
        "public_key": "pk",
        "encryption_protocol": "ELGAMAL",
    }
    verdict = await sqlite_stack.call("insertElectionEvent", fields)
    assert verdict.outcome == "data", verdict.body
    row = await sqlite_stack.event(verdict.data["id"])
    assert row is not None
    assert row.created_at is not None and row.created_at.year > 2020
    assert (row.voting_channels, row.status, row.encryption_protocol) == (
        {"online": True, "kiosk": True},
        {"voting_status": "NOT_STARTED"},
        "ELGAMAL",
    )


async def test_same_request_twice_same_answer_nothing_more(stack: ActionStack) -> None:
    """Repeating a request (same id, same content) answers the same id and realm and creates nothing."""
    fields = event_input(description="first")
    first = await stack.call("insertElectionEvent", fields)
    assert first.outcome == "data", first.body
    await stack.provisioned(first.data["realm"])
    again = await stack.call("insertElectionEvent", {**fields, "is_archived": False, "dates": None})
    assert again.outcome == "data", again.body
    assert again.data == {**first.data, "provisioning": "done"}
    assert await stack.count(ElectionEvent) == 1
    assert await stack.count(RealmProvisioningJob) == 1
    assert len(stack.keycloak.realm_creations(first.data["realm"])) == 1


async def test_same_id_other_content_is_a_conflict(stack: ActionStack) -> None:
    """The same id with another name is `conflict` (409), and the stored event is unchanged."""
    fields = event_input()
    assert (await stack.call("insertElectionEvent", fields)).outcome == "data"
    verdict = await stack.call("insertElectionEvent", {**fields, "name": "Another name"})
    assert (verdict.status, verdict.code) == (409, "conflict")
    row = await stack.event(fields["id"])
    assert row is not None and row.name == fields["name"]


async def test_same_id_in_another_tenant_is_a_conflict(stack: ActionStack) -> None:
    """An event id already used by another tenant is a `conflict` for the caller's tenant, never a takeover."""
    fields = event_input()
    assert (await stack.call("insertElectionEvent", fields)).outcome == "data"
    verdict = await stack.call("insertElectionEvent", {**fields, "tenant_id": OTHER}, token=stack.token(OTHER))
    assert (verdict.status, verdict.code) == (409, "conflict")
    assert await stack.count(ElectionEvent) == 1


async def test_ten_concurrent_identical_requests_make_one_event_one_job_one_realm(stack: ActionStack) -> None:
    """10 identical requests at once: 10 equal answers, one row, one job, one realm POST."""
    fields = event_input()
    token = stack.token()
    verdicts = await asyncio.gather(*(stack.call("insertElectionEvent", fields, token=token) for _ in range(10)))
    assert all(v.outcome == "data" for v in verdicts), [v.body for v in verdicts]
    assert {(v.data["id"], v.data["realm"]) for v in verdicts} == {(fields["id"], verdicts[0].data["realm"])}
    assert await stack.count(ElectionEvent) == 1
    assert await stack.count(RealmProvisioningJob) == 1
    await stack.provisioned(verdicts[0].data["realm"])
    assert [c.status for c in stack.keycloak.realm_creations(verdicts[0].data["realm"])] == [201]


async def test_super_admin_tenant_acts_for_another_tenant(stack: ActionStack) -> None:
    """A token of SUPER_ADMIN_TENANT_ID may create an event for another registered tenant."""
    verdict = await stack.call("insertElectionEvent", event_input(TENANT), token=stack.token(SUPER))
    assert verdict.outcome == "data", verdict.body
    assert verdict.data["realm"].startswith(f"tenant-{TENANT}-event-")


async def test_other_tenant_is_a_tenant_mismatch(sqlite_stack: ActionStack) -> None:
    """A tenant's token cannot create an event for another tenant: 403 tenant-mismatch, nothing stored."""
    verdict = await sqlite_stack.call("insertElectionEvent", event_input(OTHER))
    assert (verdict.status, verdict.code) == (403, "tenant-mismatch")
    assert await sqlite_stack.count(ElectionEvent) == 0


async def test_missing_permission_is_forbidden(sqlite_stack: ActionStack) -> None:
    """Without election-event-create in the token's roles: 403 forbidden."""
    token = sqlite_stack.token(roles=["admin-user", "election-event-read"])
    verdict = await sqlite_stack.call("insertElectionEvent", event_input(), token=token)
    assert (verdict.status, verdict.code) == (403, "forbidden")
    assert "election-event-create" in (verdict.message or "")


async def test_unregistered_tenant_is_not_found(make_sqlite_stack: StackFactory) -> None:
    """A tenant without a row (never created with insertTenant) is `not-found`; nothing is stored."""
    async with make_sqlite_stack(tenants={SUPER: "super"}) as stack:
        verdict = await stack.call("insertElectionEvent", event_input())
        assert (verdict.status, verdict.code) == (404, "not-found")
        assert verdict.extensions is not None and verdict.extensions["fields"] == {"tenant_id": "not found"}
        assert await stack.count(ElectionEvent) == 0
        assert await stack.count(RealmProvisioningJob) == 0


async def test_audit_event_must_exist_in_the_tenant(sqlite_stack: ActionStack) -> None:
    """audit_election_event_id must name an event of the same tenant."""
    verdict = await sqlite_stack.call("insertElectionEvent", event_input(audit_election_event_id=random_uuid()))
    assert (verdict.status, verdict.code) == (400, "validation-failed")
    first = await sqlite_stack.call("insertElectionEvent", event_input())
    audited = await sqlite_stack.call("insertElectionEvent", event_input(audit_election_event_id=first.data["id"]))
    assert audited.outcome == "data", audited.body


BAD_INPUTS: Final = [
    ("id not a UUID", {"id": "dc65960e"}, "id", "not a UUID"),
    ("id a number", {"id": 42}, "id", "expected a UUID string, got number"),
    ("tenant_id missing", {"tenant_id": None}, "tenant_id", "required"),
    ("tenant_id braces", {"tenant_id": "{" + TENANT + "}"}, "tenant_id", "not a UUID"),
    ("tenant_id an object", {"tenant_id": {"id": TENANT}}, "tenant_id", "expected a UUID string, got object"),
    ("name missing", {"name": None}, "name", "required"),
    ("name empty", {"name": ""}, "name", "must not be empty"),
    ("name blank", {"name": "   "}, "name", "must not be empty"),
    ("name too long", {"name": "x" * 256}, "name", "longer than 255 characters"),
    ("name a list", {"name": ["a"]}, "name", "expected a string, got array"),
    ("presentation a string", {"presentation": "{}"}, "presentation", "expected an object, got string"),
    ("labels an array", {"labels": []}, "labels", "expected an object, got array"),
    ("is_archived a string", {"is_archived": "false"}, "is_archived", "expected a boolean, got string"),
    ("is_audit a number", {"is_audit": 1}, "is_audit", "expected a boolean, got number"),
    ("encryption_protocol empty", {"encryption_protocol": ""}, "encryption_protocol", "must not be empty"),
    ("unknown field", {"tenant": TENANT}, "tenant", "unknown field"),
]


@pytest.mark.parametrize(("case", "change", "field", "problem"), BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
async def test_invalid_input_is_validation_failed(
    sqlite_stack: ActionStack, case: str, change: dict[str, Any], field: str, problem: str
) -> None:
    """Each malformed field is a 400 validation-failed naming the field and the problem; nothing stored."""
    verdict = await sqlite_stack.call("insertElectionEvent", {**event_input(), **change})
    assert (verdict.status, verdict.code) == (400, "validation-failed"), case
    assert verdict.extensions is not None and verdict.extensions["fields"] == {field: problem}
    assert f"{field}: {problem}" in (verdict.message or "")
    assert await sqlite_stack.count(ElectionEvent) == 0


async def test_every_problem_is_reported_at_once(sqlite_stack: ActionStack) -> None:
    """Several bad fields are all named in one answer."""
    verdict = await sqlite_stack.call("insertElectionEvent", {"id": "x", "tenant_id": 1, "name": ""})
    assert verdict.extensions is not None
    assert set(verdict.extensions["fields"]) == {"id", "tenant_id", "name"}


async def test_input_object_missing_is_validation_failed(sqlite_stack: ActionStack) -> None:
    """An `input` without the `object` argument is validation-failed."""
    verdict = await sqlite_stack.call("insertElectionEvent", raw_input={"obj": {}})
    assert (verdict.status, verdict.code) == (400, "validation-failed")


async def test_counted_in_metrics(sqlite_stack: ActionStack) -> None:
    """webhook_actions_total counts calls by action and result code."""
    await sqlite_stack.call("insertElectionEvent", event_input())
    await sqlite_stack.call("insertElectionEvent", event_input(OTHER))
    registry = sqlite_stack.metrics.registry
    ok = registry.get_sample_value("webhook_actions_total", {"action": "insertElectionEvent", "code": "ok"})
    mismatch = registry.get_sample_value(
        "webhook_actions_total", {"action": "insertElectionEvent", "code": "tenant-mismatch"}
    )
    assert (ok, mismatch) == (1.0, 1.0)
