"""`insertElectionEvent(object: CreateElectionEventInput!)`: an election event and its voters' realm.

Rules of this module:
- Input: the platform's `CreateElectionEventInput` (shared/design/platform.md 1.1), accepted as the
  admin portal and API clients send it (seed 001). `dates`, `created_at` and `updated_at` are accepted
  and ignored, as the platform does. Defaults are the platform's: `is_archived` false,
  `encryption_protocol` RSA256, `voting_channels` `VotingChannels::default()`, `statistics` zeroed.
- Permission: `election-event-create` in the token's allowed roles and a realm kind with
  `Power.CREATE_EVENTS` (not an event realm: `webhook/core/powers.py`); the input's `tenant_id` must be
  the token's tenant, unless the realm may act for other tenants (the super-admin tenant's own
  realm: then any registered tenant; logged). The tenant must be registered (`insertTenant`), else `not-found`.
- The event row and the job for realm `tenant-<tenant_id>-event-<id>` are committed together
  (`outbox.create_once`); the answer is `{"id", "realm", "provisioning"}`.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Final

from sqlalchemy.ext.asyncio import AsyncSession

from webhook.actions.auth import Caller
from webhook.actions.context import ActionContext
from webhook.actions.envelope import ActionCall
from webhook.actions.errors import ActionError, Code
from webhook.actions.fields import InputReader
from webhook.actions.outbox import create_once, request_digest
from webhook.actions.permissions import require_permission, require_power, require_tenant
from webhook.core.powers import Power
from webhook.core.realms import event_realm_name
from webhook.db.models import (
    DEFAULT_ENCRYPTION_PROTOCOL,
    DEFAULT_EVENT_STATISTICS,
    DEFAULT_EVENT_VOTING_CHANNELS,
    ElectionEvent,
    Tenant,
)
from webhook.observability.logs import get_logger
from webhook.provisioning.jobs import new_job

ACTION: Final = "insertElectionEvent"
PERMISSION: Final = "election-event-create"
MAX_NAME_CHARS: Final = 255
MAX_SHORT_CHARS: Final = 255
KNOWN: Final = (
    "id",
    "tenant_id",
    "name",
    "description",
    "presentation",
    "labels",
    "annotations",
    "voting_channels",
    "status",
    "bulletin_board_reference",
    "is_archived",
    "is_audit",
    "audit_election_event_id",
    "encryption_protocol",
    "user_boards",
    "public_key",
)
IGNORED: Final = ("dates", "created_at", "updated_at")


@dataclass(frozen=True, slots=True)
class EventInput:
    """A validated `CreateElectionEventInput` with the platform's defaults applied."""

    id: str
    tenant_id: str
    name: str
    description: str | None
    presentation: dict[str, Any] | None
    labels: dict[str, Any] | None
    annotations: dict[str, Any] | None
    voting_channels: dict[str, Any]
    status: dict[str, Any] | None
    bulletin_board_reference: dict[str, Any] | None
    is_archived: bool
    is_audit: bool | None
    audit_election_event_id: str | None
    encryption_protocol: str
    user_boards: str | None
    public_key: str | None

    def normalized(self) -> dict[str, Any]:
        """Every field but the id (what makes two requests for one id the same request)."""
        fields = asdict(self)
        del fields["id"]
        return fields


def parse_event_input(data: Mapping[str, Any], *, new_id: str | None = None) -> EventInput:
    """The validated input; `validation-failed` naming every bad field. Pure."""
    read = InputReader(data, known=KNOWN, ignored=IGNORED)
    event_id = read.uuid("id")
    tenant_id = read.uuid("tenant_id", required=True)
    name = read.text("name", required=True, non_empty=True, max_chars=MAX_NAME_CHARS)
    description = read.text("description")
    presentation = read.json_object("presentation")
    labels = read.json_object("labels")
    annotations = read.json_object("annotations")
    channels = read.json_object("voting_channels")
    status = read.json_object("status")
    board = read.json_object("bulletin_board_reference")
    is_archived = read.boolean("is_archived")
    is_audit = read.boolean("is_audit")
    audited = read.uuid("audit_election_event_id")
    protocol = read.text("encryption_protocol", non_empty=True, max_chars=MAX_SHORT_CHARS)
    user_boards = read.text("user_boards", max_chars=MAX_SHORT_CHARS)
    public_key = read.text("public_key")
    read.check()
    if tenant_id is None or name is None:  # pragma: no cover - required: check() raised already
        raise ActionError(Code.VALIDATION_FAILED, "invalid input: tenant_id and name are required")
    return EventInput(
        id=event_id or new_id or str(uuid.uuid4()),
        tenant_id=tenant_id,
        name=name,
        description=description,
        presentation=presentation,
        labels=labels,
        annotations=annotations,
        voting_channels=dict(DEFAULT_EVENT_VOTING_CHANNELS) if channels is None else channels,
        status=status,
        bulletin_board_reference=board,
        is_archived=bool(is_archived),
        is_audit=is_audit,
        audit_election_event_id=audited,
        encryption_protocol=protocol or DEFAULT_ENCRYPTION_PROTOCOL,
        user_boards=user_boards,
        public_key=public_key,
    )


def _row(event: EventInput, ctx: ActionContext) -> ElectionEvent:
    now = ctx.now()
    return ElectionEvent(
        id=event.id,
        created_at=now,
        updated_at=now,
        labels=event.labels,
        annotations=event.annotations,
        tenant_id=event.tenant_id,
        name=event.name,
        description=event.description,
        presentation=event.presentation,
        bulletin_board_reference=event.bulletin_board_reference,
        is_archived=event.is_archived,
        voting_channels=event.voting_channels,
        status=event.status,
        user_boards=event.user_boards,
        encryption_protocol=event.encryption_protocol,
        is_audit=event.is_audit,
        audit_election_event_id=event.audit_election_event_id,
        public_key=event.public_key,
        alias=None,
        statistics=dict(DEFAULT_EVENT_STATISTICS),
    )


async def insert_election_event(ctx: ActionContext, call: ActionCall, caller: Caller) -> dict[str, Any]:
    """Store the event and its realm's provisioning job (once per id); answer id, realm, status."""
    require_permission(caller, PERMISSION)
    require_power(caller, Power.CREATE_EVENTS)
    event = parse_event_input(call.argument("object"))
    acting_for_other = require_tenant(caller, event.tenant_id)
    realm = event_realm_name(event.tenant_id, event.id)
    digest = request_digest(ACTION, event.normalized())

    async def write(session: AsyncSession) -> None:
        if await session.get(Tenant, event.tenant_id) is None:
            raise ActionError(Code.NOT_FOUND, "tenant_id names no registered tenant", fields={"tenant_id": "not found"})
        audited = event.audit_election_event_id
        if audited is not None:
            target = await session.get(ElectionEvent, audited)
            if target is None or target.tenant_id != event.tenant_id:
                raise ActionError(
                    Code.VALIDATION_FAILED,
                    "invalid input: audit_election_event_id: no such election event in this tenant",
                    fields={"audit_election_event_id": "no such election event in this tenant"},
                )
        session.add(_row(event, ctx))
        await session.flush()  # the primary key decides first: a repeated id fails here
        job = new_job(
            kind="event",
            realm=realm,
            tenant_id=event.tenant_id,
            event_id=event.id,
            request_sha256=digest,
            now=ctx.now(),
        )
        session.add(job)
        await session.flush()

    created, status = await create_once(
        ctx.store,
        write=write,
        realm=realm,
        digest=digest,
        conflict="an election event with this id already exists with other content",
    )
    if created:
        if acting_for_other:
            get_logger("webhook.actions").info(
                "action.super_admin_acted_for_tenant",
                action=ACTION,
                tenant_id=event.tenant_id,
                caller_tenant=caller.identity.tenant_id,
                user=caller.identity.user_id,
                event_id=event.id,
            )
        ctx.on_created(realm)
    return {"id": event.id, "realm": realm, "provisioning": status}


__all__ = ["ACTION", "PERMISSION", "EventInput", "insert_election_event", "parse_event_input"]
