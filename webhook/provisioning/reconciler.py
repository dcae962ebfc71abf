"""Converging a live realm to its template through the admin API, and reading it back (see reconcile.py).

Rules of this module:
- `converge` creates the realm when absent (one POST of the full template); when present it PUTs
  only the owned top-level fields that differ (attributes merged, never `enabled`), runs one
  `partialImport` with `ifResourceExists: SKIP` (missing roles, groups, clients), then per client
  converges the owned fields and the protocol mappers, the default role's composites and the
  `api-key-client` service account's realm roles. Repeating it changes nothing more.
- `read` reads the live realm back (top level, clients with mappers, roles, default role, service
  account roles); `converge` ends with it and returns the drift that remains, so the caller marks
  the job done only when Keycloak really holds the Hasura mappers.
- A realm that exists but whose top level the admin client may not view (GET answers the name
  only, without `id`: Keycloak's answer to a caller without view-realm) is `AdminDenied` at once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from webhook.provisioning.keycloakadmin import AdminDenied, KeycloakAdmin, denied_message
from webhook.provisioning.reconcile import (
    API_KEY_CLIENT,
    LiveRealm,
    client_update,
    default_role_composites,
    drift,
    mapper_plan,
    partial_import,
    realm_update,
    service_account_roles,
)

Result = Literal["created", "updated", "unchanged"]


@dataclass(frozen=True, slots=True)
class Converged:
    """What `converge` did and what drift the read-back realm still shows (empty: done)."""

    result: Result
    changes: int
    drift: list[str]


def _visible(name: str, found: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    if found is not None and "id" not in found:
        raise AdminDenied(denied_message("get realm", name, 403))
    return found


class RealmReconciler:
    """Create or converge realms from rendered templates; read them back."""

    def __init__(self, admin: KeycloakAdmin) -> None:
        self.admin = admin

    async def read(self, name: str) -> LiveRealm | None:
        """The live realm (None: Keycloak has no such realm)."""
        admin = self.admin
        realm = _visible(name, await admin.get_realm(name))
        if realm is None:
            return None
        clients = await admin.clients(name)
        roles = [str(r.get("name")) for r in await admin.realm_roles(name)]
        defaults = [str(r.get("name")) for r in await admin.default_roles(name)]
        sa_roles: list[str] | None = None
        api = next((c for c in clients if c.get("clientId") == API_KEY_CLIENT), None)
        if api is not None and api.get("serviceAccountsEnabled"):
            user = await admin.service_account(name, str(api["id"]))
            sa_roles = [str(r.get("name")) for r in await admin.user_realm_roles(name, str(user["id"]))]
        return LiveRealm(realm, clients, roles, defaults, sa_roles)

    async def check(self, rendered: Mapping[str, Any], kind: str) -> list[str]:
        """The drift of the live realm from the template, changing nothing (missing realm: one line)."""
        live = await self.read(str(rendered["realm"]))
        return ["realm is missing in Keycloak"] if live is None else drift(rendered, live, kind)

    async def converge(self, rendered: Mapping[str, Any], kind: str) -> Converged:
        """Make the live realm match the template's owned parts; the drift left after reading it back."""
        admin = self.admin
        name = str(rendered["realm"])
        result: Result = "unchanged"
        changes = 0
        live = _visible(name, await admin.get_realm(name))
        if live is None and await admin.create_realm(rendered) == "created":
            result, changes = "created", 1
            live = _visible(name, await admin.get_realm(name))
        elif live is None:
            live = _visible(name, await admin.get_realm(name))
        if live is None:
            raise AdminDenied(denied_message("get realm", name, 403))
        if result != "created":
            update = realm_update(rendered, live)
            if update is not None:
                await admin.update_realm(name, update)
                changes += 1
            summary = await admin.partial_import(name, partial_import(rendered))
            changes += int(summary.get("added", 0) or 0)
            changes += await self._converge_clients(name, rendered)
            changes += await self._converge_default_roles(name, rendered)
        changes += await self._converge_service_account(name, rendered)
        if result == "unchanged" and changes:
            result = "updated"
        after = await self.read(name)
        left = ["realm is gone"] if after is None else drift(rendered, after, kind)
        return Converged(result, changes, left)

    async def _converge_clients(self, name: str, rendered: Mapping[str, Any]) -> int:
        admin = self.admin
        live = {str(c.get("clientId")): c for c in await admin.clients(name)}
        changes = 0
        for wanted in rendered.get("clients") or []:
            client = live.get(str(wanted.get("clientId")))
            if client is None:
                continue  # partialImport just added it, with its mappers
            uuid = str(client["id"])
            update = client_update(wanted, client)
            if update is not None:
                await admin.update_client(name, uuid, update)
                changes += 1
            create, replace = mapper_plan(wanted, await admin.client_mappers(name, uuid))
            for mapper in create:
                await admin.create_mapper(name, uuid, mapper)
            for mapper_id, mapper in replace:
                await admin.update_mapper(name, uuid, mapper_id, mapper)
            changes += len(create) + len(replace)
        return changes

    async def _converge_default_roles(self, name: str, rendered: Mapping[str, Any]) -> int:
        admin = self.admin
        wanted = set(default_role_composites(rendered))
        have = {str(r.get("name")) for r in await admin.default_roles(name)}
        missing = wanted - have
        if not missing:
            return 0
        roles = [r for r in await admin.realm_roles(name) if r.get("name") in missing]
        await admin.add_default_roles(name, roles)
        return 1

    async def _converge_service_account(self, name: str, rendered: Mapping[str, Any]) -> int:
        wanted = set(service_account_roles(rendered))
        if not wanted:
            return 0
        admin = self.admin
        api = next((c for c in await admin.clients(name) if c.get("clientId") == API_KEY_CLIENT), None)
        if api is None or not api.get("serviceAccountsEnabled"):
            return 0
        user = await admin.service_account(name, str(api["id"]))
        have = {str(r.get("name")) for r in await admin.user_realm_roles(name, str(user["id"]))}
        missing = wanted - have
        if not missing:
            return 0
        roles = [r for r in await admin.realm_roles(name) if r.get("name") in missing]
        await admin.assign_realm_roles(name, str(user["id"]), roles)
        return 1


__all__ = ["Converged", "RealmReconciler", "Result"]
