"""Creating a row and its realm provisioning job at once, exactly once per id.

Rules of this module:
- The row and its job are written in one transaction (`write`), committed before the action answers;
  the worker provisions the realm afterwards. No realm is ever created for a row that was not
  committed, and no committed row lacks its job.
- Idempotency rests on the database's constraints, never on check-then-insert: a second request for
  the same id fails to insert (primary key, or the job's unique realm), and is then compared with the
  first by the SHA-256 of its normalized input stored on the job. Same input: the same answer (with
  the job's current status), nothing created. Other input (or a row we did not create): `conflict`.
- The digest covers the action name and every normalized input field but the id, with defaults
  applied, so `{"is_archived": false}` and an absent `is_archived` are the same request.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import orjson
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from webhook.actions.errors import ActionError, Code
from webhook.db.datastore import DataStore
from webhook.provisioning.jobs import job_for_realm


def request_digest(action: str, normalized: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of the action name and its normalized input (canonical JSON, sorted keys)."""
    canonical = orjson.dumps({"action": action, "input": dict(normalized)}, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(canonical).hexdigest()


async def create_once(
    store: DataStore,
    *,
    write: Callable[[AsyncSession], Awaitable[None]],
    realm: str,
    digest: str,
    conflict: str,
) -> tuple[bool, str]:
    """Run `write` in one transaction; (created, provisioning status).

    On a unique violation, the existing job of `realm` decides: same digest -> (False, its status);
    otherwise `ActionError(conflict)` with the message `conflict`.
    """
    try:
        async with store.transaction() as session:
            await write(session)
    except IntegrityError:
        pass
    else:
        return True, "pending"
    async with store.sessions() as session:
        job = await job_for_realm(session, realm)
        if job is not None and job.request_sha256 == digest:
            return False, job.status
    raise ActionError(Code.CONFLICT, conflict)


__all__ = ["create_once", "request_digest"]
