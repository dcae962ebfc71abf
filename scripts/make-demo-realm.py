"""Write the compose stack's demo realm import (keycloak/import/tenant-<demo id>.json) from the tenant template.

The demo realm is what `insertTenant` would provision for the demo tenant (webhook.provisioning.templates
`render` of webhook/realm_templates/tenant.json, portal URLs at the service's defaults), plus the dev-only
material a realm import needs to be usable at once, all documented in the README "Deploy" section:

- a demo admin user `admin` / password `admin` in the `admin` group, with the super-admin tenant's extra
  roles (`tenant-create`, and `platform-operator` to read every tenant's audit rows);
- the `api-key-client` secret `dev-api-key-client-secret`, and its service-account user;
- fixed user ids, so tokens and logs of the demo are reproducible.

    .venv/bin/python scripts/make-demo-realm.py          # rewrite the file
    .venv/bin/python scripts/make-demo-realm.py --check  # exit 1 if the committed file is stale

tests/deploy/test_realm.py checks that the committed file equals this script's output.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Final

ROOT: Final = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from webhook.core.realms import tenant_realm_name  # noqa: E402
from webhook.provisioning.templates import PortalUrls, load_template, render  # noqa: E402

DEMO_TENANT_ID: Final = "90505c8a-23a9-4cdf-a26b-4e19f6a097d5"
DEMO_ADMIN: Final = {"id": "5d1f0a8e-3c4b-4f7a-9e2d-6b8c0a1f2e3d", "username": "admin", "password": "admin"}
DEMO_SERVICE_ACCOUNT_ID: Final = "8b2e4c6a-1d3f-4a5b-8c7d-9e0f1a2b3c4d"
DEV_CLIENT_SECRETS: Final = {"api-key-client": "dev-api-key-client-secret"}
#: Roles only the super-admin tenant (the demo tenant is one) gives its administrators.
SUPER_ADMIN_ROLES: Final = {
    "tenant-create": "Create tenants (effective only in the super-admin tenant)",
    "platform-operator": "Read the rejected-token audit rows of every tenant (super-admin tenant only)",
}
SERVICE_ACCOUNT_ROLES: Final = ("admin-user", "election-event-create", "election-event-read")
OUTPUT_DIR: Final = ROOT / "keycloak" / "import"


def build(template: dict[str, Any], tenant_id: str = DEMO_TENANT_ID) -> dict[str, Any]:
    """The demo realm representation for `tenant_id` from the tenant `template`."""
    realm = render(template, "tenant", tenant_id=tenant_id, urls=PortalUrls())
    if realm["realm"] != tenant_realm_name(tenant_id):
        raise ValueError(f"the template rendered realm {realm['realm']!r}")
    realm["displayName"] = "Demo tenant (dev only)"
    roles = realm.setdefault("roles", {}).setdefault("realm", [])
    known = {role["name"] for role in roles}
    for name, description in SUPER_ADMIN_ROLES.items():
        if name not in known:
            roles.append({"name": name, "description": description, "composite": False, "clientRole": False})
    for client in realm["clients"]:
        secret = DEV_CLIENT_SECRETS.get(client["clientId"])
        if secret is not None:
            client["secret"] = secret
    realm["users"] = [
        {
            "id": DEMO_ADMIN["id"],
            "username": DEMO_ADMIN["username"],
            "enabled": True,
            "email": "admin@demo.example",
            "emailVerified": True,
            "firstName": "Demo",
            "lastName": "Admin",
            "credentials": [{"type": "password", "value": DEMO_ADMIN["password"], "temporary": False}],
            "groups": ["/admin"],
            "realmRoles": sorted(SUPER_ADMIN_ROLES),
        },
        {
            "id": DEMO_SERVICE_ACCOUNT_ID,
            "username": "service-account-api-key-client",
            "enabled": True,
            "serviceAccountClientId": "api-key-client",
            "realmRoles": list(SERVICE_ACCOUNT_ROLES),
        },
    ]
    return realm


def render_text(template: dict[str, Any], tenant_id: str = DEMO_TENANT_ID) -> str:
    """The file content: the realm as indented JSON with a final newline."""
    return json.dumps(build(template, tenant_id), indent=2, ensure_ascii=False) + "\n"


def output_path(tenant_id: str = DEMO_TENANT_ID) -> Path:
    return OUTPUT_DIR / f"{tenant_realm_name(tenant_id)}.json"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="fail if the committed file differs")
    args = parser.parse_args()
    text = render_text(load_template("tenant"))
    path = output_path()
    if args.check:
        if not path.is_file() or path.read_text() != text:
            print(f"{path.relative_to(ROOT)} is stale: run scripts/make-demo-realm.py", file=sys.stderr)
            return 1
        return 0
    path.write_text(text)
    print(path.relative_to(ROOT))
    return 0


if __name__ == "__main__":
    sys.exit(main())
