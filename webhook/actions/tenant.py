"""`insertTenant(object: CreateTenantInput!)`: a tenant and its realm `tenant-<id>`.

Rules of this module:
- Only a token of the super-admin tenant's own realm (`tenant-<SUPER_ADMIN_TENANT_ID>`, the one
  realm kind with `Power.CREATE_TENANTS`) whose allowed roles hold `tenant-create` may create
  tenants: not its event realms, not a TRUSTED_EXTRA_REALMS token claiming that tenant; with no
  super-admin tenant configured, nobody may.
- Input: `id` (optional UUID, the idempotency key), `slug` (required, unique: lowercase letters,
  digits and inner hyphens, at most 63 characters), `labels`, `annotations`, `settings`,
  `voting_channels` (JSON objects), `is_active` (default false, the platform's column default).
- The tenant row and the job for its realm are committed together (`outbox.create_once`); a slug
  taken by another tenant is a `conflict`.
"""

from __future__ import annotations

import re
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
from webhook.actions.permissions import require_permission, require_power
from webhook.core.powers import Power
from webhook.core.realms import tenant_realm_name
from webhook.db.models import DEFAULT_TENANT_VOTING_CHANNELS, Tenant
from webhook.provisioning.jobs import new_job

ACTION: Final = "insertTenant"
PERMISSION: Final = "tenant-create"
MAX_SLUG_CHARS: Final = 63
SLUG_RE: Final = re.compile(r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?")
KNOWN: Final = ("id", "slug", "labels", "annotations", "settings", "voting_channels", "is_active")
IGNORED: Final = ("created_at", "updated_at")


@dataclass(frozen=True, slots=True)
class TenantInput:
    """A validated `CreateTenantInput` with defaults applied."""

    id: str
    slug: str
    labels: dict[str, Any] | None
    annotations: dict[str, Any] | None
    settings: dict[str, Any] | None
    voting_channels: dict[str, Any]
    is_active: bool

    def normalized(self) -> dict[str, Any]:
        """Every field but the id."""
        fields = asdict(self)
        del fields["id"]
        return fields


def parse_tenant_input(data: Mapping[str, Any]) -> TenantInput:
    """The validated input; `validation-failed` naming every bad field. Pure."""
    read = InputReader(data, known=KNOWN, ignored=IGNORED)
    tenant_id = read.uuid("id")
    slug = read.text("slug", required=True, non_empty=True, max_chars=MAX_SLUG_CHARS)
    if slug is not None and not SLUG_RE.fullmatch(slug):
        read.problems["slug"] = "only lowercase letters, digits and inner hyphens"
    labels = read.json_object("labels")
    annotations = read.json_object("annotations")
    settings = read.json_object("settings")
    channels = read.json_object("voting_channels")
    is_active = read.boolean("is_active")
    read.check()
    if slug is None:  # pragma: no cover - required: check() raised already
        raise ActionError(Code.VALIDATION_FAILED, "invalid input: slug is required")
    return TenantInput(
        id=tenant_id or str(uuid.uuid4()),
        slug=slug,
        labels=labels,
        annotations=annotations,
        settings=settings,
        voting_channels=dict(DEFAULT_TENANT_VOTING_CHANNELS) if channels is None else channels,
        is_active=bool(is_active),
    )


async def insert_tenant(ctx: ActionContext, call: ActionCall, caller: Caller) -> dict[str, Any]:
    """Store the tenant and its realm's provisioning job (once per id); answer id, realm, status."""
    require_permission(caller, PERMISSION)
    require_power(caller, Power.CREATE_TENANTS)
    tenant = parse_tenant_input(call.argument("object"))
    realm = tenant_realm_name(tenant.id)
    digest = request_digest(ACTION, tenant.normalized())

    async def write(session: AsyncSession) -> None:
        now = ctx.now()
        session.add(
            Tenant(
                id=tenant.id,
                slug=tenant.slug,
                created_at=now,
                updated_at=now,
                labels=tenant.labels,
                annotations=tenant.annotations,
                is_active=tenant.is_active,
                voting_channels=tenant.voting_channels,
                settings=tenant.settings,
                test=0,
            )
        )
        await session.flush()  # primary key and unique slug decide first
        session.add(
            new_job(kind="tenant", realm=realm, tenant_id=tenant.id, event_id=None, request_sha256=digest, now=now)
        )
        await session.flush()

    created, status = await create_once(
        ctx.store,
        write=write,
        realm=realm,
        digest=digest,
        conflict="a tenant with this id or slug already exists with other content",
    )
    if created:
        ctx.on_created(realm)
    return {"id": tenant.id, "slug": tenant.slug, "realm": realm, "provisioning": status}


__all__ = ["ACTION", "PERMISSION", "TenantInput", "insert_tenant", "parse_tenant_input"]
