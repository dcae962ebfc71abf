"""What action handlers are given besides the call: the database, the clock, and who to tell.

Built once by the app's lifespan (the composition root) and shared by every call.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from webhook.db.datastore import DataStore

if TYPE_CHECKING:
    from webhook.actions.apikey import ApiKeyPolicy


def _nothing(_realm: str) -> None:
    return None


@dataclass(frozen=True, slots=True)
class ActionContext:
    """Services shared by the action handlers."""

    store: DataStore
    wall_clock: Callable[[], float]
    #: Called after a commit created a row and its provisioning job (wakes the worker, drops caches).
    on_created: Callable[[str], None] = field(default=_nothing)
    #: The API key actions' policy and service (None: those actions answer `unavailable`).
    api_keys: ApiKeyPolicy | None = None

    def now(self) -> dt.datetime:
        """The current time, UTC-aware, from the injected wall clock."""
        return dt.datetime.fromtimestamp(self.wall_clock(), dt.UTC)


__all__ = ["ActionContext"]
