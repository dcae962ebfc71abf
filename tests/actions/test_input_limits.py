"""Action input the database cannot store, or that would not be kept exactly, is a 400
`validation-failed` naming the field (never 424 `unavailable`, which clients retry forever, nor a 500):
U+0000, lone surrogates, control characters in text, deep or large jsonb, integers beyond 64 bits and
decimals a double does not keep. Run on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from tests.actions.conftest import SECRET, TENANT, ActionStack, random_uuid
from webhook.actions.fields import MAX_JSONB_BYTES
from webhook.actions.jsonlimits import MAX_INT, MIN_INT
from webhook.db.models import ElectionEvent

pytestmark = pytest.mark.anyio


def event_input(**fields: Any) -> dict[str, Any]:
    return {"id": random_uuid(), "tenant_id": TENANT, "name": "Referendum", **fields}


def nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


async def raw_call(stack: ActionStack, obj_json: bytes) -> tuple[int, dict[str, Any]]:
    """POST an insertElectionEvent body whose `input.object` is the raw JSON text `obj_json`."""
    body = (
        b'{"action":{"name":"insertElectionEvent"},"input":{"object":'
        + obj_json
        + b'},"session_variables":{"x-hasura-role":"admin-user"},"request_query":null}'
    )
    headers = {"X-Actions-Secret": SECRET, "Authorization": f"Bearer {stack.token()}"}
    response = await stack.client.post(f"{stack.url}/actions/insertElectionEvent", content=body, headers=headers)
    return response.status_code, orjson.loads(response.content)


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"name": "Refer\x00endum"}, "name"),
        ({"description": "a\x00b"}, "description"),
        ({"labels": {"k": "v\x00"}}, "labels"),
        ({"annotations": {"k\x00": "v"}}, "annotations"),
        ({"presentation": {"deep": [{"x": "\x00"}]}}, "presentation"),
        ({"name": "bell\x07"}, "name"),
        ({"public_key": "esc\x1b[31m"}, "public_key"),
    ],
)
async def test_nul_and_control_characters_are_validation_errors(
    stack: ActionStack, fields: dict[str, Any], field: str
) -> None:
    """NUL anywhere (text, jsonb value or member name) and control characters in text: 400 naming the field."""
    verdict = await stack.call("insertElectionEvent", event_input(**fields))
    assert (verdict.status, verdict.code) == (400, "validation-failed"), verdict.body
    assert verdict.extensions is not None
    assert any(name.endswith(field) for name in verdict.extensions["fields"]), verdict.extensions
    assert await stack.count(ElectionEvent) == 0


async def test_tabs_and_line_breaks_stay_allowed_in_text(stack: ActionStack) -> None:
    """Tab, LF and CR are ordinary in a description."""
    verdict = await stack.call("insertElectionEvent", event_input(description="line 1\r\n\tline 2"))
    assert verdict.outcome == "data", verdict.body


@pytest.mark.parametrize("literal", [rb'"\ud800"', rb'"\udc00x"', b'"\xed\xa0\x80"', b'"\xff"'])
async def test_lone_surrogates_and_bad_utf8_are_validation_errors(stack: ActionStack, literal: bytes) -> None:
    """Lone surrogates (escaped or raw) and invalid UTF-8 in input: 400 validation-failed."""
    obj = b'{"tenant_id":"' + TENANT.encode() + b'","name":' + literal + b"}"
    status, body = await raw_call(stack, obj)
    assert (status, body["extensions"]["code"]) == (400, "validation-failed"), body
    assert await stack.count(ElectionEvent) == 0


@pytest.mark.parametrize("depth", [17, 40, 1000, 5000])
async def test_deep_jsonb_is_a_validation_error(stack: ActionStack, depth: int) -> None:
    """jsonb nested past the bound (1,000 deep was a 500): 400 validation-failed, nothing stored."""
    if depth <= 40:
        verdict = await stack.call("insertElectionEvent", event_input(labels=nested(depth)))
        assert (verdict.status, verdict.code) == (400, "validation-failed"), verdict.body
    else:
        obj = (
            b'{"tenant_id":"'
            + TENANT.encode()
            + b'","name":"x","labels":'
            + b'{"a":' * depth
            + b"1"
            + b"}" * (depth + 1)
        )
        status, body = await raw_call(stack, obj)
        assert (status, body["extensions"]["code"]) == (400, "validation-failed"), body
    assert await stack.count(ElectionEvent) == 0


async def test_jsonb_at_the_bounds_is_accepted_and_past_them_refused(stack: ActionStack) -> None:
    """16 levels and 64 KiB are accepted; one byte more of jsonb is refused."""
    assert (await stack.call("insertElectionEvent", event_input(labels=nested(16)))).outcome == "data"
    filler = "x" * (MAX_JSONB_BYTES - len(orjson.dumps({"k": ""})))
    assert (await stack.call("insertElectionEvent", event_input(labels={"k": filler}))).outcome == "data"
    verdict = await stack.call("insertElectionEvent", event_input(labels={"k": filler + "x"}))
    assert (verdict.status, verdict.code) == (400, "validation-failed")
    assert verdict.extensions is not None and verdict.extensions["fields"] == {
        "labels": "larger than 65536 bytes as JSON"
    }


@pytest.mark.parametrize("number", [MAX_INT + 1, MAX_INT + 2, MIN_INT - 1, MIN_INT - 2, 10**400])
async def test_integers_beyond_64_bits_are_refused(stack: ActionStack, number: int) -> None:
    """Integers orjson would round to a float are refused: so two different ones are never one request."""
    event_id = random_uuid()
    verdict = await stack.call("insertElectionEvent", event_input(id=event_id, labels={"n": number}))
    assert (verdict.status, verdict.code) == (400, "validation-failed"), verdict.body
    assert await stack.event(event_id) is None


async def test_64_bit_integers_are_kept_exactly_and_idempotency_tells_them_apart(stack: ActionStack) -> None:
    """MAX_INT and MIN_INT are stored exactly; the same id with MAX_INT - 1 is a conflict, not a repeat."""
    event_id = random_uuid()
    labels = {"big": MAX_INT, "small": MIN_INT}
    assert (await stack.call("insertElectionEvent", event_input(id=event_id, labels=labels))).outcome == "data"
    stored = await stack.event(event_id)
    assert stored is not None and stored.labels == labels
    verdict = await stack.call("insertElectionEvent", event_input(id=event_id, labels={**labels, "big": MAX_INT - 1}))
    assert (verdict.status, verdict.code) == (409, "conflict")


@pytest.mark.parametrize("literal", [b"0.1000000000000000000001", b"1e-400", b"123456789012345678901.5"])
async def test_decimals_a_double_does_not_keep_are_refused(stack: ActionStack, literal: bytes) -> None:
    """A decimal that would be rounded (and then equal to another request) is refused; 0.1 is kept."""
    obj = b'{"tenant_id":"' + TENANT.encode() + b'","name":"x","labels":{"n":' + literal + b"}}"
    status, body = await raw_call(stack, obj)
    assert (status, body["extensions"]["code"]) == (400, "validation-failed"), body
    status, body = await raw_call(stack, obj.replace(literal, b"0.1"))
    assert status == 200, body
