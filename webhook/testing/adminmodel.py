"""The fake Keycloak's admin model: the realms, clients, roles and users the admin REST API holds.

What it models (each point checked against the real server by tests/keycloak/test_provisioning_real.py;
the HTTP side, status codes and bodies, is ``webhook/testing/adminhttp.py`` and ``adminapi.py``):
- The admin client (``configure``) and the size of its client-credentials token: unless the client is
  configured `lightweight`, its token grows by `GRANT_BYTES` for every realm the client created (the real
  one lists the `<realm>-realm` management roles Keycloak grants the creator).
- Authorisation (``_may_manage``): the client may manage the realms it created (or all, when configured
  `admin`); `create-realm` is needed to create one.
- A realm created (``_create``) imports the full representation (clients with mappers, roles, groups,
  default role) and keeps its top level apart (what `GET` returns); ``_import`` is `partialImport`'s
  SKIP / OVERWRITE (clients recreated with new ids and secrets); a confidential client gets a generated
  secret and a service-account client its user (with the default roles only).
- ``service_credentials``: the client-credentials grant of a realm's confidential service-account client
  (an API key; checked by tests/keycloak/test_api_key_contract.py).
- No IO and no HTTP here: plain state the endpoints read and change.
"""

from __future__ import annotations

import copy
import hmac
import secrets
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

__all__ = [
    "BASE_TOKEN_BYTES",
    "GRANT_BYTES",
    "LIGHT_TOKEN_BYTES",
    "SUB_RESOURCES",
    "AdminCall",
    "AdminModel",
    "AdminRealm",
]

GRANT_BYTES: Final = 540  # measured: the real admin token grew ~540 bytes per realm its client created
BASE_TOKEN_BYTES: Final = 1262  # measured: a full-scope create-realm client's token with no realm yet
LIGHT_TOKEN_BYTES: Final = 767  # measured: the same client with lightweight access tokens
#: The parts of a realm representation that are not its top level (what `GET`/`PUT` of a realm skip).
SUB_RESOURCES: Final = frozenset({"clients", "roles", "groups", "users", "defaultRole", "components", "clientScopes"})


@dataclass(frozen=True, slots=True)
class AdminCall:
    """One request to the fake's admin API (``realm``: the realm it is about, None for the token and list)."""

    method: str
    path: str
    status: int
    realm: str | None


@dataclass
class AdminRealm:
    """One realm the admin API holds: its top level apart from its clients, roles, groups and users."""

    top: dict[str, Any]
    creator: str | None
    clients: dict[str, dict[str, Any]] = field(default_factory=dict)  # uuid -> representation (with mappers)
    roles: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> role (with id)
    groups: dict[str, dict[str, Any]] = field(default_factory=dict)
    users: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> {username, roles: set}
    default_composites: set[str] = field(default_factory=set)
    secrets: dict[str, str] = field(default_factory=dict)  # client uuid -> secret

    @property
    def default_role(self) -> str:
        return f"default-roles-{self.top['realm']}"


def _ids(mappers: Any) -> list[dict[str, Any]]:
    return [{**m, "id": str(uuid.uuid4())} for m in mappers or [] if isinstance(m, dict)]


class AdminModel:
    """What the admin API holds: its realms and the admin client (the base of ``AdminHttp``, so of ``FakeAdminApi``)."""

    def __init__(
        self, *, on_created: Callable[[str], None] | None = None, on_deleted: Callable[[str], None] | None = None
    ) -> None:
        self._on_created = on_created
        self._on_deleted = on_deleted
        self.realms: dict[str, AdminRealm] = {}
        self.token_lifetime = 60
        self._client: tuple[str, str, str] | None = None  # (realm, client id, secret)
        self._lightweight = False
        self._superuser = False
        self._can_create = True
        self._tokens: dict[str, float] = {}  # issued admin token -> its expiry

    # ---- configuration ----------------------------------------------------------------------

    def configure(
        self,
        client_id: str,
        client_secret: str,
        *,
        realm: str = "master",
        token_lifetime: int = 60,
        lightweight: bool = False,
        admin: bool = False,
        create_realm: bool = True,
    ) -> None:
        """Accept this admin client; `admin`: it manages every realm; `create_realm`: it may POST realms."""
        self._client = (realm, client_id, client_secret)
        self.token_lifetime = token_lifetime
        self._lightweight = lightweight
        self._superuser = admin
        self._can_create = create_realm

    @property
    def configured(self) -> bool:
        """Whether an admin client is configured."""
        return self._client is not None

    @property
    def admin_realm(self) -> str | None:
        """The realm whose token endpoint issues admin tokens."""
        return None if self._client is None else self._client[0]

    def revoke_tokens(self) -> None:
        """Invalidate every admin token issued so far."""
        self._tokens.clear()

    def import_realm(self, representation: Mapping[str, Any]) -> None:
        """Create a realm as `--import-realm` or another admin would: not created by our client."""
        self._create(copy.deepcopy(dict(representation)), creator=None)

    def export(self, name: str) -> dict[str, Any]:
        """Everything the fake holds for a realm, as one representation (clients, roles, groups)."""
        realm = self.realms[name]
        return {
            **realm.top,
            "clients": [copy.deepcopy(c) for c in realm.clients.values()],
            "roles": {"realm": [dict(r) for r in realm.roles.values()]},
            "groups": list(realm.groups.values()),
        }

    def token_bytes(self) -> int:
        """The size of the token the configured client would get now."""
        if self._lightweight:
            return LIGHT_TOKEN_BYTES
        own = sum(1 for r in self.realms.values() if self._client is not None and r.creator == self._client[1])
        return BASE_TOKEN_BYTES + GRANT_BYTES * own

    def _create(self, body: dict[str, Any], creator: str | None) -> AdminRealm:
        name = str(body["realm"])
        top = {k: v for k, v in body.items() if k not in SUB_RESOURCES}
        top.setdefault("enabled", True)
        top["id"] = str(uuid.uuid4())
        top.setdefault("attributes", {})
        realm = AdminRealm(top, creator)
        self.realms[name] = realm
        for role in ("offline_access", "uma_authorization", realm.default_role):
            realm.roles[role] = {"id": str(uuid.uuid4()), "name": role, "composite": role == realm.default_role}
        realm.default_composites = {"offline_access", "uma_authorization"}
        self._import(realm, body, overwrite=False)
        for role in (body.get("roles") or {}).get("realm", []):  # an import keeps the default role's composites
            if isinstance(role, dict) and role.get("name") == realm.default_role:
                realm.default_composites = {str(r) for r in (role.get("composites") or {}).get("realm", [])}
        if self._on_created is not None:
            self._on_created(name)
        return realm

    def _import(self, realm: AdminRealm, body: Mapping[str, Any], *, overwrite: bool) -> dict[str, int]:
        counts = {"added": 0, "skipped": 0, "overwritten": 0}
        for role in (body.get("roles") or {}).get("realm", []):
            name = str(role.get("name"))
            if name in realm.roles:
                counts["skipped"] += 1
                continue
            realm.roles[name] = {"id": str(uuid.uuid4()), "name": name, "composite": bool(role.get("composite"))}
            counts["added"] += 1
        for group in body.get("groups") or []:
            name = str(group.get("name"))
            if name in realm.groups:
                counts["skipped"] += 1
                continue
            realm.groups[name] = {**group, "id": str(uuid.uuid4())}
            counts["added"] += 1
        by_client_id = {str(c.get("clientId")): key for key, c in realm.clients.items()}
        for client in body.get("clients") or []:
            existing = by_client_id.get(str(client.get("clientId")))
            if existing is not None and not overwrite:
                counts["skipped"] += 1
                continue
            if existing is not None:
                del realm.clients[existing]
                realm.secrets.pop(existing, None)
                counts["overwritten"] += 1
            else:
                counts["added"] += 1
            self._add_client(realm, client)
        return counts

    def _add_client(self, realm: AdminRealm, client: Mapping[str, Any]) -> str:
        key = str(uuid.uuid4())
        stored = {k: copy.deepcopy(v) for k, v in client.items() if k not in ("id", "secret", "protocolMappers")}
        stored["id"] = key
        stored["protocolMappers"] = _ids(client.get("protocolMappers"))
        stored.setdefault("attributes", {})
        realm.clients[key] = stored
        if not client.get("publicClient"):
            realm.secrets[key] = secrets.token_urlsafe(24)
        if client.get("serviceAccountsEnabled"):
            user = str(uuid.uuid4())
            realm.users[user] = {
                "username": f"service-account-{client.get('clientId')}",
                "client": key,
                "roles": {realm.default_role},
            }
        return key

    def _may_manage(self, realm: AdminRealm) -> bool:
        return self._superuser or (self._client is not None and realm.creator == self._client[1])

    def service_credentials(self, realm: str, client_id: str, secret: str) -> tuple[dict[str, Any], str] | str:
        """The client-credentials grant of a realm's client: (the client, its service account's id), or the
        OAuth error Keycloak 26 answers (401): `invalid_client` for no such client, `unauthorized_client`
        for a wrong secret or a client without service accounts."""
        held = self.realms.get(realm)
        found = (
            None if held is None else next((c for c in held.clients.values() if c.get("clientId") == client_id), None)
        )
        if held is None or found is None:
            return "invalid_client"
        key = str(found["id"])
        expected = held.secrets.get(key)
        if expected is None or not hmac.compare_digest(secret.encode(), expected.encode()):
            return "unauthorized_client"
        account = next((uid for uid, u in held.users.items() if u.get("client") == key), None)
        if account is None or not found.get("serviceAccountsEnabled") or found.get("enabled") is False:
            return "unauthorized_client"
        return copy.deepcopy(found), account

    def service_account_roles(self, realm: str, client_id: str) -> set[str]:
        """Realm roles of a client's service-account user (tests read what provisioning assigned)."""
        held = self.realms[realm]
        key = next(k for k, c in held.clients.items() if c.get("clientId") == client_id)
        return next(set(u["roles"]) for u in held.users.values() if u.get("client") == key)

    def client_secret(self, realm: str, client_id: str) -> str:
        """A confidential client's generated secret."""
        held = self.realms[realm]
        key = next(k for k, c in held.clients.items() if c.get("clientId") == client_id)
        return held.secrets[key]
