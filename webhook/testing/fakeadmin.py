"""The fake Keycloak's admin REST API: what provisioning uses, modelled on what the real 26.x did in tests.

What it models (each point checked against the real server by tests/keycloak/test_provisioning_real.py):
- The client-credentials token of the configured admin client. Unless the client is configured
  `lightweight`, its token grows by `GRANT_BYTES` for every realm the client created (the real one
  lists the `<realm>-realm` management roles Keycloak grants the creator), and a request whose
  headers exceed `header_limit` bytes is answered 431 before anything else.
- Authorisation: the client may manage the realms it created (or all, when configured `admin`);
  `create-realm` is needed to POST. For any other realm GET answers 200 with the name only (no
  `id`), and every other call answers 403.
- `POST /admin/realms` imports the full representation (clients with mappers, roles, groups, default
  role); `GET` returns the top level only (no clients, roles, groups, users); `PUT` updates the
  top-level fields only: clients, roles, groups and users in its body are ignored, and realm
  `attributes` are replaced by the ones given.
- `partialImport` with `ifResourceExists` SKIP (existing ones skipped) or OVERWRITE (clients
  recreated with new ids and secrets), clients and their mappers, client secrets, service-account
  users (created with the default roles only), realm roles, user role mappings, default-role
  composites (`roles-by-id`), realm DELETE.
- The API-key calls (`webhook/provisioning/apikeyclient.py`, checked by tests/keycloak/test_contract.py):
  `POST .../clients` (201 with the new id in `Location`; 409 for a taken clientId), `DELETE
  .../clients/{id}` (its secret and service-account user go with it), `POST .../client-secret` (a new
  secret; the old one stops working), and `service_credentials` for the realm's token endpoint: the
  client-credentials grant of a confidential service-account client, whose token carries what the
  client's protocol mappers say (`mapped_claims`).
- Every call is recorded in `calls`; "down" answers 503; "slow" holds calls until released.
"""

from __future__ import annotations

import asyncio
import copy
import hmac
import json
import secrets
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

GRANT_BYTES: Final = 540  # measured: the real admin token grew ~540 bytes per realm its client created
BASE_TOKEN_BYTES: Final = 1262  # measured: a full-scope create-realm client's token with no realm yet
LIGHT_TOKEN_BYTES: Final = 767  # measured: the same client with lightweight access tokens
DEFAULT_HEADER_LIMIT: Final = 65536
_SUB: Final = frozenset({"clients", "roles", "groups", "users", "defaultRole", "components", "clientScopes"})
Mode = Literal["ok", "down", "slow"]


@dataclass(frozen=True, slots=True)
class AdminCall:
    """One request to the fake's admin API (``realm``: the realm it is about, None for the token and list)."""

    method: str
    path: str
    status: int
    realm: str | None


@dataclass
class _Realm:
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


class FakeAdminApi:
    """The admin API's state and ASGI routes (mounted by FakeKeycloak at /admin)."""

    def __init__(
        self, *, on_created: Callable[[str], None] | None = None, on_deleted: Callable[[str], None] | None = None
    ) -> None:
        self._on_created = on_created
        self._on_deleted = on_deleted
        self.realms: dict[str, _Realm] = {}
        self.calls: list[AdminCall] = []
        self.token_lifetime = 60
        self.header_limit = DEFAULT_HEADER_LIMIT
        self._client: tuple[str, str, str] | None = None  # (realm, client id, secret)
        self._lightweight = False
        self._superuser = False
        self._can_create = True
        self._tokens: dict[str, float] = {}
        self._mode: Mode = "ok"
        self._gate = asyncio.Event()
        self._gate.set()
        self.app = Starlette(routes=self._routes())

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

    def set_mode(self, mode: Mode) -> None:
        """ "down": 503 everywhere (token included); "slow": calls wait for `release()`."""
        self._mode = mode
        if mode == "slow":
            self._gate.clear()
        else:
            self._gate.set()

    def release(self) -> None:
        """Let calls held by "slow" proceed."""
        self._gate.set()

    def reset_loop_state(self) -> None:
        """A new event loop serves the fake (serve_in_thread)."""
        self._gate = asyncio.Event()
        self._gate.set()

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

    # ---- helpers ----------------------------------------------------------------------------

    def _record(self, request: Request, status: int, realm: str | None) -> None:
        self.calls.append(AdminCall(request.method, request.url.path, status, realm))

    def _create(self, body: dict[str, Any], creator: str | None) -> _Realm:
        name = str(body["realm"])
        top = {k: v for k, v in body.items() if k not in _SUB}
        top.setdefault("enabled", True)
        top["id"] = str(uuid.uuid4())
        top.setdefault("attributes", {})
        realm = _Realm(top, creator)
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

    def _import(self, realm: _Realm, body: Mapping[str, Any], *, overwrite: bool) -> dict[str, int]:
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

    def _add_client(self, realm: _Realm, client: Mapping[str, Any]) -> str:
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

    def _may_manage(self, realm: _Realm) -> bool:
        return self._superuser or (self._client is not None and realm.creator == self._client[1])

    async def _gatekeep(self, request: Request, realm: str | None) -> Response | None:
        """503/held, 431, 401 checks shared by every admin route."""
        if self._client is None:
            return PlainTextResponse("Not Found", status_code=404)
        if self._mode == "down":
            self._record(request, 503, realm)
            return PlainTextResponse("Service Unavailable", status_code=503)
        await self._gate.wait()
        size = sum(len(k) + len(v) + 4 for k, v in request.headers.items())
        if size > self.header_limit:
            self._record(request, 431, realm)
            return PlainTextResponse("Request Header Fields Too Large", status_code=431)
        header = request.headers.get("authorization", "")
        expiry = self._tokens.get(header[7:].strip()) if header[:7].lower() == "bearer " else None
        if expiry is None or expiry <= time.time():
            return self._refuse(request, realm, 401, {"error": "HTTP 401 Unauthorized"})
        return None

    async def _realm_for(self, request: Request, *, read_only: bool = False) -> tuple[_Realm | None, Response | None]:
        name = str(request.path_params["name"])
        refused = await self._gatekeep(request, name)
        if refused is not None:
            return None, refused
        realm = self.realms.get(name)
        if realm is None:
            self._record(request, 404, name)
            return None, JSONResponse({"error": "Realm not found."}, 404)
        if not self._may_manage(realm) and not read_only:
            self._record(request, 403, name)
            return None, JSONResponse({"error": "HTTP 403 Forbidden"}, 403)
        return realm, None

    def _refuse(self, request: Request, realm: str | None, status: int, body: Any) -> Response:
        self._record(request, status, realm)
        return JSONResponse(body, status)

    async def _client_for(self, request: Request) -> tuple[_Realm, str, dict[str, Any]] | Response:
        """(realm, its name, the client in the path), or the refusal (403/404...)."""
        realm, refused = await self._realm_for(request)
        if realm is None:
            return refused  # type: ignore[return-value]
        name = str(realm.top["realm"])
        client = realm.clients.get(str(request.path_params["client"]))
        if client is None:
            return self._refuse(request, name, 404, {"error": "Could not find client"})
        return realm, name, client

    def _ok(self, request: Request, realm: str | None, body: Any = None, status: int = 200) -> Response:
        self._record(request, status, realm)
        if status == 204:
            return Response(status_code=204)
        if status == 201:
            return Response(status_code=201)
        return JSONResponse(body, status)

    @staticmethod
    async def _json(request: Request) -> Any:
        try:
            return json.loads(await request.body())
        except ValueError:
            return None

    # ---- token (called by FakeKeycloak's token endpoint for the admin realm) -------------

    async def token(self, request: Request, client_id: str, secret: str, grant: str) -> Response:
        """The client-credentials grant of the admin client."""
        assert self._client is not None  # noqa: S101 - FakeKeycloak routes here only when configured
        if self._mode == "down":
            self._record(request, 503, None)
            return PlainTextResponse("Service Unavailable", status_code=503)
        await self._gate.wait()
        if grant != "client_credentials":
            return self._refuse(request, None, 400, {"error": "unsupported_grant_type"})
        if client_id != self._client[1] or not hmac.compare_digest(secret.encode(), self._client[2].encode()):
            self._record(request, 401, None)
            return JSONResponse(
                {"error": "unauthorized_client", "error_description": "Invalid client or Invalid client credentials"},
                401,
            )
        head = secrets.token_urlsafe(32)
        token = head + "." + "r" * max(0, self.token_bytes() - len(head) - 1)
        self._tokens[token] = time.time() + self.token_lifetime
        self._record(request, 200, None)
        return JSONResponse(
            {
                "access_token": token,
                "expires_in": self.token_lifetime,
                "refresh_expires_in": 0,
                "token_type": "Bearer",
                "not-before-policy": 0,
                "scope": "profile email",
            }
        )

    # ---- routes -----------------------------------------------------------------------------

    def _routes(self) -> list[Route]:
        base = "/realms/{name}"
        client = base + "/clients/{client}"
        return [
            Route("/realms", self._realms, methods=["GET", "POST"]),
            Route("/realms/", self._realms, methods=["GET", "POST"]),  # Keycloak takes the slash too
            Route(base, self._realm, methods=["GET", "PUT", "DELETE"]),
            Route(base + "/partialImport", self._partial_import, methods=["POST"]),
            Route(base + "/clients", self._clients, methods=["GET", "POST"]),
            Route(client, self._client_endpoint, methods=["GET", "PUT", "DELETE"]),
            Route(client + "/protocol-mappers/models", self._mappers, methods=["GET", "POST"]),
            Route(client + "/protocol-mappers/models/{mapper}", self._mapper, methods=["PUT", "DELETE"]),
            Route(client + "/client-secret", self._secret, methods=["GET", "POST"]),
            Route(client + "/service-account-user", self._service_account, methods=["GET"]),
            Route(base + "/roles", self._roles, methods=["GET"]),
            Route(base + "/roles/{role}", self._role, methods=["GET"]),
            Route(base + "/roles-by-id/{role}/composites/realm", self._composites, methods=["GET"]),
            Route(base + "/roles-by-id/{role}/composites", self._add_composites, methods=["POST"]),
            Route(base + "/users/{user}/role-mappings/realm", self._user_roles, methods=["GET", "POST"]),
        ]

    async def _realms(self, request: Request) -> Response:
        refused = await self._gatekeep(request, None)
        if refused is not None:
            return refused
        if request.method == "GET":
            visible = [r.top for r in self.realms.values() if self._may_manage(r)]
            return self._ok(request, None, visible)
        body = await self._json(request)
        name = body.get("realm") if isinstance(body, dict) else None
        if not isinstance(body, dict) or not isinstance(name, str) or not name:
            return self._refuse(request, None, 400, {"errorMessage": "Realm name cannot be empty"})
        if not self._can_create and not self._superuser:
            return self._refuse(request, name, 403, {"error": "HTTP 403 Forbidden"})
        if name in self.realms:
            return self._refuse(request, name, 409, {"errorMessage": "Conflict detected. See logs for details"})
        self._create(copy.deepcopy(body), creator=None if self._client is None else self._client[1])
        self._record(request, 201, name)
        return Response(status_code=201, headers={"Location": f"{str(request.url).rstrip('/')}/{name}"})

    async def _realm(self, request: Request) -> Response:
        realm, refused = await self._realm_for(request, read_only=request.method == "GET")
        if realm is None:
            return refused  # type: ignore[return-value]
        name = str(realm.top["realm"])
        if request.method == "GET":
            if not self._may_manage(realm):  # Keycloak's answer without view-realm: the name only
                return self._ok(request, name, {"realm": name})
            return self._ok(request, name, copy.deepcopy(realm.top))
        if request.method == "DELETE":
            del self.realms[name]
            if self._on_deleted is not None:
                self._on_deleted(name)
            return self._ok(request, name, status=204)
        body = await self._json(request)
        if not isinstance(body, dict):
            return self._refuse(request, name, 400, {"errorMessage": "invalid representation"})
        for key, value in body.items():
            if key not in _SUB and key not in ("id", "realm"):
                realm.top[key] = copy.deepcopy(value)  # attributes: replaced, like Keycloak's updateRealm
        return self._ok(request, name, status=204)

    async def _partial_import(self, request: Request) -> Response:
        realm, refused = await self._realm_for(request)
        if realm is None:
            return refused  # type: ignore[return-value]
        body = await self._json(request)
        if not isinstance(body, dict) or body.get("ifResourceExists") not in ("SKIP", "OVERWRITE", "FAIL"):
            self._record(request, 400, str(realm.top["realm"]))
            return JSONResponse({"errorMessage": "invalid partial import"}, 400)
        counts = self._import(realm, body, overwrite=body["ifResourceExists"] == "OVERWRITE")
        return self._ok(request, str(realm.top["realm"]), {**counts, "results": []})

    async def _clients(self, request: Request) -> Response:
        realm, refused = await self._realm_for(request)
        if realm is None:
            return refused  # type: ignore[return-value]
        if request.method == "POST":
            return await self._create_client(request, realm)
        wanted = request.query_params.get("clientId")
        found = [
            {**copy.deepcopy(c), **({"secret": realm.secrets[k]} if k in realm.secrets else {})}
            for k, c in realm.clients.items()
            if wanted is None or c.get("clientId") == wanted
        ]
        return self._ok(request, str(realm.top["realm"]), found)

    async def _create_client(self, request: Request, realm: _Realm) -> Response:
        name = str(realm.top["realm"])
        body = await self._json(request)
        client_id = body.get("clientId") if isinstance(body, dict) else None
        if not isinstance(body, dict) or not isinstance(client_id, str) or not client_id:
            return self._refuse(request, name, 400, {"errorMessage": "invalid representation"})
        if any(c.get("clientId") == client_id for c in realm.clients.values()):
            return self._refuse(request, name, 409, {"errorMessage": f"Client {client_id} already exists"})
        key = self._add_client(realm, body)
        self._record(request, 201, name)
        return Response(status_code=201, headers={"Location": f"{str(request.url).rstrip('/')}/{key}"})

    async def _client_endpoint(self, request: Request) -> Response:
        found = await self._client_for(request)
        if isinstance(found, Response):
            return found
        realm, name, client = found
        if request.method == "GET":
            return self._ok(request, name, copy.deepcopy(client))
        if request.method == "DELETE":
            key = str(client["id"])
            del realm.clients[key]
            realm.secrets.pop(key, None)
            for user in [uid for uid, u in realm.users.items() if u.get("client") == key]:
                del realm.users[user]  # Keycloak deletes the service-account user with its client
            return self._ok(request, name, status=204)
        body = await self._json(request)
        if not isinstance(body, dict):
            return self._refuse(request, name, 400, {"errorMessage": "invalid representation"})
        for key, value in body.items():
            if key == "attributes" and isinstance(value, dict):
                client["attributes"] = {**client.get("attributes", {}), **value}
            elif key not in ("id", "protocolMappers", "secret"):
                client[key] = copy.deepcopy(value)
        return self._ok(request, name, status=204)

    async def _mappers(self, request: Request) -> Response:
        found = await self._client_for(request)
        if isinstance(found, Response):
            return found
        _, name, client = found
        if request.method == "GET":
            return self._ok(request, name, copy.deepcopy(client["protocolMappers"]))
        body = await self._json(request)
        if not isinstance(body, dict) or any(m.get("name") == body.get("name") for m in client["protocolMappers"]):
            return self._refuse(request, name, 409, {"errorMessage": "Protocol mapper exists with same name"})
        client["protocolMappers"].append({**body, "id": str(uuid.uuid4())})
        return self._ok(request, name, status=201)

    async def _mapper(self, request: Request) -> Response:
        found = await self._client_for(request)
        if isinstance(found, Response):
            return found
        _, name, client = found
        mapper_id = str(request.path_params["mapper"])
        index = next((i for i, m in enumerate(client["protocolMappers"]) if m["id"] == mapper_id), None)
        if index is None:
            return self._refuse(request, name, 404, {"error": "Model not found"})
        if request.method == "DELETE":
            del client["protocolMappers"][index]
            return self._ok(request, name, status=204)
        body = await self._json(request)
        if not isinstance(body, dict):
            return self._refuse(request, name, 400, {"errorMessage": "invalid representation"})
        client["protocolMappers"][index] = {**body, "id": mapper_id}
        return self._ok(request, name, status=204)

    async def _secret(self, request: Request) -> Response:
        realm, refused = await self._realm_for(request)
        if realm is None:
            return refused  # type: ignore[return-value]
        key = str(request.path_params["client"])
        if key not in realm.secrets:
            self._record(request, 404, str(realm.top["realm"]))
            return JSONResponse({"error": "Could not find client"}, 404)
        if request.method == "POST":
            realm.secrets[key] = secrets.token_urlsafe(24)
        return self._ok(request, str(realm.top["realm"]), {"type": "secret", "value": realm.secrets[key]})

    async def _service_account(self, request: Request) -> Response:
        realm, refused = await self._realm_for(request)
        if realm is None:
            return refused  # type: ignore[return-value]
        key = str(request.path_params["client"])
        if key not in realm.clients:
            return self._refuse(request, str(realm.top["realm"]), 404, {"error": "Could not find client"})
        user = next((uid for uid, u in realm.users.items() if u.get("client") == key), None)
        if user is None:
            self._record(request, 400, str(realm.top["realm"]))
            return JSONResponse({"error": "Service account not enabled for the client"}, 400)
        found = {"id": user, "username": realm.users[user]["username"], "enabled": True}
        return self._ok(request, str(realm.top["realm"]), found)

    async def _roles(self, request: Request) -> Response:
        realm, refused = await self._realm_for(request)
        if realm is None:
            return refused  # type: ignore[return-value]
        return self._ok(request, str(realm.top["realm"]), [dict(r) for r in realm.roles.values()])

    async def _role(self, request: Request) -> Response:
        realm, refused = await self._realm_for(request)
        if realm is None:
            return refused  # type: ignore[return-value]
        role = realm.roles.get(str(request.path_params["role"]))
        if role is None:
            self._record(request, 404, str(realm.top["realm"]))
            return JSONResponse({"error": "Could not find role"}, 404)
        return self._ok(request, str(realm.top["realm"]), dict(role))

    def _is_default_role(self, realm: _Realm, request: Request) -> bool:
        return realm.roles.get(realm.default_role, {}).get("id") == str(request.path_params["role"])

    async def _composites(self, request: Request) -> Response:
        realm, refused = await self._realm_for(request)
        if realm is None:
            return refused  # type: ignore[return-value]
        names = realm.default_composites if self._is_default_role(realm, request) else set()
        found = [dict(realm.roles[n]) for n in sorted(names) if n in realm.roles]
        return self._ok(request, str(realm.top["realm"]), found)

    async def _add_composites(self, request: Request) -> Response:
        realm, refused = await self._realm_for(request)
        if realm is None:
            return refused  # type: ignore[return-value]
        body = await self._json(request)
        if self._is_default_role(realm, request) and isinstance(body, list):
            realm.default_composites |= {str(r.get("name")) for r in body if isinstance(r, dict)}
        return self._ok(request, str(realm.top["realm"]), status=204)

    async def _user_roles(self, request: Request) -> Response:
        realm, refused = await self._realm_for(request)
        if realm is None:
            return refused  # type: ignore[return-value]
        name = str(realm.top["realm"])
        user = realm.users.get(str(request.path_params["user"]))
        if user is None:
            return self._refuse(request, name, 404, {"error": "User not found"})
        if request.method == "GET":
            return self._ok(request, name, [dict(realm.roles[n]) for n in sorted(user["roles"]) if n in realm.roles])
        body = await self._json(request)
        if not isinstance(body, list) or any(str(r.get("name")) not in realm.roles for r in body):
            return self._refuse(request, name, 404, {"error": "Role not found"})
        user["roles"] |= {str(r.get("name")) for r in body}
        return self._ok(request, name, status=204)

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


def _claim_path(name: str) -> list[str]:
    """Keycloak's nested claim name: split on dots, `\\.` is a literal dot."""
    parts, current, escaped = [], "", False
    for char in name:
        if escaped:
            current, escaped = current + char, False
        elif char == "\\":
            escaped = True
        elif char == ".":
            parts.append(current)
            current = ""
        else:
            current += char
    return [*parts, current]


def _typed(value: str, json_type: str) -> Any:
    if json_type == "JSON":
        return json.loads(value)
    if json_type in ("long", "int"):
        return int(value)
    if json_type == "boolean":
        return value == "true"
    return value


def mapped_claims(mappers: Any, user_id: str) -> tuple[dict[str, Any], list[str]]:
    """What a client's access-token mappers add (hardcoded claims, the user's `id` property) and the
    audiences its audience mappers add: the mapper types the API-key template uses."""
    claims: dict[str, Any] = {}
    audiences: list[str] = []
    for mapper in mappers or []:
        config = mapper.get("config") or {}
        kind = mapper.get("protocolMapper")
        if kind == "oidc-audience-mapper":
            audiences.append(str(config.get("included.custom.audience")))
            continue
        if config.get("access.token.claim") != "true":
            continue
        if kind == "oidc-hardcoded-claim-mapper":
            value = _typed(str(config.get("claim.value")), str(config.get("jsonType.label")))
        elif kind == "oidc-usermodel-property-mapper" and config.get("user.attribute") == "id":
            value = user_id
        else:
            continue
        *parents, leaf = _claim_path(str(config.get("claim.name")))
        target = claims
        for part in parents:
            target = target.setdefault(part, {})
        target[leaf] = value
    return claims, audiences


__all__ = ["GRANT_BYTES", "AdminCall", "FakeAdminApi", "mapped_claims"]
