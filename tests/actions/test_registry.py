"""The action registry: name -> handler; adding an action is one handler and one registration."""

from __future__ import annotations

from typing import Any

import pytest

from tests.actions.conftest import TENANT, StackFactory
from webhook.actions.auth import Caller
from webhook.actions.context import ActionContext
from webhook.actions.envelope import ActionCall
from webhook.actions.errors import ActionError, Code
from webhook.actions.registry import ActionRegistry, default_registry

pytestmark = pytest.mark.anyio


def test_default_registry_holds_the_metadata_actions() -> None:
    """The service answers exactly the actions hasura_metadata declares."""
    assert sorted(default_registry()) == [
        "apiKeys",
        "createApiKey",
        "insertElectionEvent",
        "insertTenant",
        "revokeApiKey",
        "rotateApiKey",
    ]


def test_a_name_registers_once() -> None:
    """Registering a name twice is a programming error."""
    registry = default_registry()
    action = registry.get("insertTenant")
    assert action is not None
    with pytest.raises(ValueError, match="already registered"):
        registry.register("insertTenant", action.handler)


async def whoami(_ctx: ActionContext, call: ActionCall, caller: Caller) -> dict[str, Any]:
    if call.input.get("fail") == "refuse":
        raise ActionError(Code.CONFLICT, "refused on purpose")
    if call.input.get("fail") == "crash":
        raise RuntimeError('SELECT secret FROM "tenant" -- File "/srv/app.py", line 1')
    return {"id": caller.identity.user_id, "tenant": caller.identity.tenant_id, "role": caller.role}


async def test_added_action_runs_behind_the_same_checks(make_sqlite_stack: StackFactory) -> None:
    """A registered action gets the verified caller; refusals keep the error shape; a crash is a bare 500."""
    registry = ActionRegistry()
    registry.register("whoami", whoami)
    async with make_sqlite_stack(actions=registry) as stack:
        token = stack.token(sub="user-7")
        ok = await stack.call("whoami", raw_input={}, token=token, required=("id",))
        assert ok.data == {"id": "user-7", "tenant": TENANT, "role": "admin-user"}
        refused = await stack.call("whoami", raw_input={"fail": "refuse"}, required=("id",))
        assert (refused.status, refused.code, refused.message) == (409, "conflict", "refused on purpose")
        crashed = await stack.call("whoami", raw_input={"fail": "crash"}, required=("id",))
        assert crashed.status == 500 and crashed.outcome == "unexpected"
        assert crashed.body == b'{"message":"internal error","extensions":{"code":"internal"}}'
        assert (await stack.call("insertTenant", {}, required=("id",))).code == "not-found"
        no_secret = await stack.call("whoami", raw_input={}, secret=None, required=("id",))
        assert no_secret.code == "unauthorized"
