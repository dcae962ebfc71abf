"""What provisioning owns in a realm (reconcile.py): owned fields, merged attributes, mapper plans, drift."""

from __future__ import annotations

from typing import Any

from webhook.provisioning.reconcile import (
    LiveRealm,
    client_update,
    drift,
    mapper_plan,
    partial_import,
    realm_update,
    service_account_roles,
)
from webhook.provisioning.templates import load_template, render

TENANT = "5a0c7a4e-9b1d-4c2e-8f3a-6b7c8d9e0f1a"


def rendered() -> dict[str, Any]:
    return render(load_template("tenant"), "tenant", tenant_id=TENANT)


def test_realm_update_never_sends_enabled_or_sub_resources_and_merges_attributes() -> None:
    """The PUT body has the differing owned fields only; the operator's attributes are kept, ours set."""
    wanted = rendered()
    live = {**{k: v for k, v in wanted.items() if k not in ("clients", "roles", "groups")}, "enabled": False}
    live["attributes"] = {"frontendUrl": "https://op.example", "tenant-id": "tampered"}
    live["displayName"] = "changed by hand"
    update = realm_update(wanted, live)
    assert update is not None
    assert set(update) == {"displayName", "attributes"}
    assert update["attributes"]["frontendUrl"] == "https://op.example"
    assert update["attributes"]["tenant-id"] == TENANT
    converged = {**live, **update}
    assert realm_update(wanted, converged) is None


def test_partial_import_skips_existing_resources() -> None:
    """partialImport is SKIP (never OVERWRITE, which would recreate clients) with roles, groups and clients."""
    body = partial_import(rendered())
    assert body["ifResourceExists"] == "SKIP"
    assert {"roles", "groups", "clients"} <= body.keys()


def test_client_update_and_mapper_plan_touch_only_what_the_template_names() -> None:
    """Owned client fields and attributes converge; extra mappers stay; missing are created, wrong replaced."""
    wanted = next(c for c in rendered()["clients"] if c["clientId"] == "voting-portal")
    live = {**wanted, "id": "u1", "attributes": {"operator": "x"}, "redirectUris": ["https://evil.example/*"]}
    update = client_update(wanted, live)
    assert update is not None and set(update) == {"clientId", "redirectUris", "attributes"}
    assert update["attributes"]["operator"] == "x"
    mappers = [{**m, "id": f"m{i}"} for i, m in enumerate(wanted["protocolMappers"])]
    mappers[0] = {**mappers[0], "config": {**mappers[0]["config"], "claim.name": "other"}}
    del mappers[1]
    mappers.append({"name": "operator-mapper", "protocolMapper": "oidc-hardcoded-claim-mapper", "id": "extra"})
    create, replace = mapper_plan(wanted, mappers)
    assert [m["name"] for m in create] == [wanted["protocolMappers"][1]["name"]]
    assert [(i, m["name"]) for i, m in replace] == [("m0", wanted["protocolMappers"][0]["name"])]


def test_drift_lists_missing_mappers_roles_and_service_account_roles() -> None:
    """Drift names the missing mapper, the missing role and the service account's missing default role."""
    wanted = rendered()
    clients = [dict(c) for c in wanted["clients"]]
    clients[0] = {**clients[0], "protocolMappers": clients[0]["protocolMappers"][1:]}
    roles = [r["name"] for r in wanted["roles"]["realm"] if r["name"] != "tenant-read"]
    top = {k: v for k, v in wanted.items() if k not in ("clients", "roles", "groups")}
    live = LiveRealm(top, clients, roles, ["offline_access", "uma_authorization"], [])
    found = drift(wanted, live, "tenant")
    first = clients[0]["clientId"]
    assert f"client {first}: no mapper for {wanted['clients'][0]['protocolMappers'][0]['name']}" in found
    assert "realm roles missing: tenant-read" in found
    assert "client api-key-client: service account lacks realm roles: admin-user" in found
    assert service_account_roles(wanted) == ["admin-user"]
    healthy = LiveRealm(top, [dict(c) for c in wanted["clients"]], [r["name"] for r in wanted["roles"]["realm"]],
                        ["offline_access", "uma_authorization"], ["admin-user"])  # fmt: skip
    assert drift(wanted, healthy, "tenant") == []
