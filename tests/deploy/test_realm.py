"""Keycloak realm JSON: the compose demo realm (derived from the tenant template) and the event template.

Claim names are compared with webhook.core.session's constants, parsed from Keycloak's own claim-name
syntax (`.` nests, `\\.` is a dot), so the realms and the service share one source of truth.
"""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType
from typing import Any, Final

import pytest

from tests.deploy.support import (
    METADATA_DIR,
    README,
    REALM_TEMPLATES_DIR,
    ROOT,
    RealmModel,
    client,
    demo_realm_path,
    hasura_mappers,
    load_json,
    load_metadata,
    resolved_environment,
    strings,
)
from webhook.actions.registry import default_registry
from webhook.core.realms import parse_realm_name
from webhook.core.session import (
    CLAIM_ALLOWED_ROLES,
    CLAIM_DEFAULT_ROLE,
    CLAIM_EVENT,
    CLAIM_TENANT,
    CLAIM_USER,
)
from webhook.provisioning.templates import (
    PLACEHOLDER_EVENT,
    PLACEHOLDER_TENANT,
    REQUIRED_ROLES,
    load_template,
    problems,
    render,
)

CLIENTS: Final = ("admin-portal", "voting-portal", "api-key-client")
PUBLIC_CLIENTS: Final = ("admin-portal", "voting-portal")
TENANT_CLAIMS: Final = frozenset({CLAIM_TENANT, CLAIM_USER, CLAIM_DEFAULT_ROLE, CLAIM_ALLOWED_ROLES})
#: Permission roles the actions and the metadata rely on (besides every role named in hasura_metadata).
PERMISSION_ROLES: Final = frozenset(
    {
        "admin-user",
        "user",
        "election-event-create",
        "election-event-read",
        "tenant-create",
        "tenant-read",
        "audit-reader",
    }
)
#: The only secrets a realm file of this repository may hold: dev values, documented in the README.
DEV_SECRETS: Final = {"api-key-client": "dev-api-key-client-secret", "admin": "admin"}
SECRET_FIELDS: Final = frozenset({"secret", "clientSecret", "privateKey", "certificate", "password", "credentials"})


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_demo_realm", ROOT / "scripts" / "make-demo-realm.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _action_permissions() -> set[str]:
    """The permission role each registered action's handler module requires (its PERMISSION)."""
    registry = default_registry()
    modules = {sys.modules[action.handler.__module__] for name in registry if (action := registry.get(name))}
    return {str(module.PERMISSION) for module in modules}


def _demo() -> dict[str, Any]:
    return load_json(demo_realm_path())


def _metadata_roles() -> set[str]:
    """Every role a permission in hasura_metadata names (tables and actions)."""
    roles: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key.endswith("permissions") and isinstance(value, list):
                    roles.update(str(entry["role"]) for entry in value if isinstance(entry, dict) and "role" in entry)
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    for path in METADATA_DIR.rglob("*.yaml"):
        walk(load_metadata(path))
    return roles


def _secret_values(realm: dict[str, Any]) -> dict[str, str]:
    """owner -> secret value, for every client secret and user credential in the representation."""
    found: dict[str, str] = {}
    for rep in realm.get("clients", []):
        if "secret" in rep:
            found[rep["clientId"]] = rep["secret"]
    for user in realm.get("users", []):
        for credential in user.get("credentials", []):
            found[user["username"]] = credential.get("value", credential.get("secretData", ""))
    return found


def _keys_named(node: Any, names: frozenset[str]) -> set[str]:
    if isinstance(node, dict):
        hits = {key for key in node if key in names}
        for key, value in node.items():
            if key not in ("config", "attributes"):  # string maps (mapper settings), not representation fields
                hits |= _keys_named(value, names)
        return hits
    if isinstance(node, list):
        return set().union(*(_keys_named(item, names) for item in node)) if node else set()
    return set()


# ------------------------------------------------------------------------------------------ demo realm


def test_demo_realm_is_derived_from_the_tenant_template() -> None:
    """keycloak/import/ holds exactly what scripts/make-demo-realm.py makes from webhook/realm_templates/tenant.json."""
    script = _script()
    assert demo_realm_path() == script.output_path()
    assert demo_realm_path().read_text() == script.render_text(load_template("tenant")), (
        "stale demo realm: run .venv/bin/python scripts/make-demo-realm.py"
    )


def test_demo_realm_is_a_tenant_realm_the_stack_prefetches() -> None:
    """The demo realm is `tenant-<uuid>` (file named after it), prefetched by the webhook and its super-admin tenant."""
    realm = _demo()
    parsed = parse_realm_name(realm["realm"])
    assert parsed is not None and parsed.event_id is None
    assert demo_realm_path().stem == realm["realm"]
    env = resolved_environment("webhook")
    assert env["PREFETCH_REALMS"] == realm["realm"]
    assert env["SUPER_ADMIN_TENANT_ID"] == parsed.tenant_id
    assert realm["enabled"] is True
    assert problems(realm, "tenant") == [f"client {c} carries a secret" for c in ("api-key-client",)]


def test_demo_realm_clients() -> None:
    """admin-portal and voting-portal are public PKCE clients (admin-portal also takes the platform tutorial's
    password grant, voting-portal only the browser flow); api-key-client is confidential with a service account."""
    realm = _demo()
    assert {c["clientId"] for c in realm["clients"]} == set(CLIENTS)
    env = resolved_environment("webhook")
    roots = {"admin-portal": env["ADMIN_PORTAL_URL"], "voting-portal": env["VOTING_PORTAL_URL"]}
    for client_id in PUBLIC_CLIENTS:
        rep = client(realm, client_id)
        assert rep["publicClient"] is True and "secret" not in rep
        assert rep["standardFlowEnabled"] is True
        assert rep["implicitFlowEnabled"] is False
        assert rep["directAccessGrantsEnabled"] is (client_id == "admin-portal")
        assert rep["attributes"]["pkce.code.challenge.method"] == "S256"
        assert rep["rootUrl"] == roots[client_id]
    api = client(realm, "api-key-client")
    assert api["publicClient"] is False and api["clientAuthenticatorType"] == "client-secret"
    assert api["serviceAccountsEnabled"] is True and api["directAccessGrantsEnabled"] is True
    assert [u["username"] for u in realm["users"] if u.get("serviceAccountClientId") == "api-key-client"] == [
        "service-account-api-key-client"
    ]


def test_demo_realm_mappers_write_the_claims_the_service_reads() -> None:
    """Every client maps tenant, user, default and allowed roles under HASURA_NAMESPACE, named as core.session."""
    realm = _demo()
    tenant_id = realm["realm"].removeprefix("tenant-")
    role_names = {role["name"] for role in realm["roles"]["realm"]}
    for client_id in CLIENTS:
        mappers = hasura_mappers(realm, client(realm, client_id))
        assert set(mappers) == TENANT_CLAIMS, client_id
        assert mappers[CLAIM_TENANT]["protocolMapper"] == "oidc-hardcoded-claim-mapper"
        assert mappers[CLAIM_TENANT]["config"]["claim.value"] == tenant_id
        assert mappers[CLAIM_USER]["protocolMapper"] == "oidc-usermodel-property-mapper"
        assert mappers[CLAIM_USER]["config"]["user.attribute"] == "id"
        assert mappers[CLAIM_ALLOWED_ROLES]["protocolMapper"] == "oidc-usermodel-realm-role-mapper"
        assert mappers[CLAIM_ALLOWED_ROLES]["config"]["multivalued"] == "true"
        assert mappers[CLAIM_DEFAULT_ROLE]["config"]["claim.value"] in role_names
    voting = hasura_mappers(realm, client(realm, "voting-portal"))
    assert voting[CLAIM_DEFAULT_ROLE]["config"]["claim.value"] == "user"


def test_demo_realm_roles_cover_every_permission() -> None:
    """The realm defines the roles the actions check, the templates require and hasura_metadata permissions name."""
    defined = {role["name"] for role in _demo()["roles"]["realm"]}
    assert {"election-event-create", "tenant-create"} <= _action_permissions()
    needed = PERMISSION_ROLES | REQUIRED_ROLES | _metadata_roles() | _action_permissions()
    assert sorted(needed - defined) == []


def test_demo_admin_can_administer_and_create_tenants() -> None:
    """The demo admin's admin-portal token carries admin-user (default) and the permission roles, tenant-create too."""
    model = RealmModel(_demo())
    claims = model.hasura_claims("admin-portal", "admin")
    assert claims[CLAIM_DEFAULT_ROLE] == "admin-user"
    assert PERMISSION_ROLES - {"user"} <= set(claims[CLAIM_ALLOWED_ROLES])
    assert "user" not in claims[CLAIM_ALLOWED_ROLES]
    assert claims[CLAIM_USER] == model.user("admin")["id"]
    service_account = model.hasura_claims("api-key-client", "service-account-api-key-client")
    assert service_account[CLAIM_DEFAULT_ROLE] in service_account[CLAIM_ALLOWED_ROLES]


def test_demo_realm_holds_only_documented_dev_secrets() -> None:
    """No key material; the only secrets are the dev client secret and dev password, both named in the README."""
    realm = _demo()
    assert _secret_values(realm) == DEV_SECRETS
    assert "org.keycloak.keys.KeyProvider" not in realm.get("components", {})
    assert not _keys_named(realm, frozenset({"privateKey", "certificate", "clientSecret", "codeSecret"}))
    readme = README.read_text()
    deploy = readme[readme.index("## Deploy") :]
    for owner, value in DEV_SECRETS.items():
        assert f"`{value}`" in deploy and owner in deploy


# ------------------------------------------------------------------------------------------ templates


@pytest.mark.parametrize("kind", ["tenant", "event"])
def test_templates_hold_no_secret_or_key(kind: str) -> None:
    """The realm templates (package data used to provision realms) carry no secret, credential, user or key."""
    template = load_json(REALM_TEMPLATES_DIR / f"{kind}.json")
    assert _keys_named(template, SECRET_FIELDS) == set()
    assert template.get("users", []) == []
    assert "components" not in template or "org.keycloak.keys.KeyProvider" not in template["components"]
    assert not any(value.startswith("-----BEGIN") for value in strings(template))


def test_event_template_maps_the_event_claim() -> None:
    """Each client of the event template also maps x-hasura-event-id, to the placeholder the renderer replaces."""
    template = load_json(REALM_TEMPLATES_DIR / "event.json")
    parsed = parse_realm_name(template["realm"])
    assert parsed is not None and (parsed.tenant_id, parsed.event_id) == (PLACEHOLDER_TENANT, PLACEHOLDER_EVENT)
    assert {c["clientId"] for c in template["clients"]} == set(CLIENTS)
    for client_id in CLIENTS:
        mappers = hasura_mappers(template, client(template, client_id))
        assert set(mappers) == TENANT_CLAIMS | {CLAIM_EVENT}, client_id
        assert mappers[CLAIM_EVENT]["config"]["claim.value"] == PLACEHOLDER_EVENT
        assert mappers[CLAIM_TENANT]["config"]["claim.value"] == PLACEHOLDER_TENANT
    assert client(template, "api-key-client")["serviceAccountsEnabled"] is True
    assert all(client(template, c)["publicClient"] is True for c in PUBLIC_CLIENTS)


def test_rendered_event_realm_binds_its_own_tenant_and_event() -> None:
    """Rendering the event template for real ids names the realm after them and puts them in the claims."""
    tenant, event = "11111111-2222-4333-8444-555555555555", "66666666-7777-4888-9999-000000000000"
    realm = render(load_template("event"), "event", tenant_id=tenant, event_id=event)
    assert realm["realm"] == f"tenant-{tenant}-event-{event}"
    assert problems(realm, "event") == []
    model = RealmModel(realm)
    for client_id in CLIENTS:
        mappers = hasura_mappers(realm, client(realm, client_id))
        assert mappers[CLAIM_TENANT]["config"]["claim.value"] == tenant
        assert mappers[CLAIM_EVENT]["config"]["claim.value"] == event
    assert PLACEHOLDER_TENANT not in str(realm) and PLACEHOLDER_EVENT not in str(realm)
    assert model.default_roles()[0] == f"default-roles-tenant-{tenant}-event-{event}"
