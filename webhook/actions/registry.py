"""The actions this service answers: name -> handler. Adding one = one module + one line below."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

from webhook.actions import apikey, election_event, tenant
from webhook.actions.auth import Caller
from webhook.actions.context import ActionContext
from webhook.actions.envelope import ActionCall

Handler = Callable[[ActionContext, ActionCall, Caller], Awaitable[dict[str, Any]]]


@dataclass(frozen=True, slots=True)
class Action:
    """One registered action."""

    name: str
    handler: Handler


class ActionRegistry:
    """Name -> action; names are the GraphQL field names (`actions.yaml`)."""

    def __init__(self) -> None:
        self._actions: dict[str, Action] = {}

    def register(self, name: str, handler: Handler) -> None:
        """Add an action; a name can be registered once."""
        if name in self._actions:
            raise ValueError(f"action {name!r} is already registered")
        self._actions[name] = Action(name, handler)

    def get(self, name: str) -> Action | None:
        """The action called `name`, if registered."""
        return self._actions.get(name)

    def __iter__(self) -> Iterator[str]:
        return iter(self._actions)

    def __len__(self) -> int:
        return len(self._actions)


def default_registry() -> ActionRegistry:
    """Every action of the service."""
    registry = ActionRegistry()
    registry.register("insertElectionEvent", election_event.insert_election_event)
    registry.register("insertTenant", tenant.insert_tenant)
    registry.register("createApiKey", apikey.create_api_key)
    registry.register("rotateApiKey", apikey.rotate_api_key)
    registry.register("revokeApiKey", apikey.revoke_api_key)
    registry.register("apiKeys", apikey.api_keys)
    return registry


__all__ = ["Action", "ActionRegistry", "Handler", "default_registry"]
