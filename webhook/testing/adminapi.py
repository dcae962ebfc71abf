"""The fake Keycloak's admin REST API (``FakeAdminApi``): its endpoint table and one handler per endpoint.

What it answers (each point checked against the real 26.x by tests/keycloak/test_provisioning_real.py;
the checks every call passes first are ``webhook/testing/adminhttp.py``, the state ``adminmodel.py``):
- `POST /admin/realms` imports the full representation (409 for a taken name, 403 without
  `create-realm`); `GET` returns the top level only (no clients, roles, groups, users), just the name
  for a realm the client may not manage; `PUT` updates the top-level fields only: clients, roles, groups
  and users in its body are ignored, and realm `attributes` are replaced by the ones given.
- `partialImport` with `ifResourceExists` SKIP or OVERWRITE, clients and their mappers, client secrets,
  service-account users, realm roles, user role mappings, default-role composites (`roles-by-id`),
  realm DELETE.
- The API-key calls (`webhook/provisioning/apikeyclient.py`, checked by tests/keycloak/test_contract.py):
  `POST .../clients` (201 with the new id in `Location`; 409 for a taken clientId), `DELETE
  .../clients/{id}` (its secret and service-account user go with it), `POST .../client-secret` (a new
  secret; the old one stops working).
- The endpoint table is ``_routes``: a new endpoint is one row there and one handler below it.
"""

from __future__ import annotations

import copy
import functools
import secrets
import uuid

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from webhook.testing.adminhttp import AdminHttp
from webhook.testing.adminmodel import SUB_RESOURCES, AdminRealm

__all__ = ["FakeAdminApi"]


class FakeAdminApi(AdminHttp):
    """The admin API's ASGI routes over its state (mounted by FakeKeycloak at /admin)."""

    @functools.cached_property
    def app(self) -> Starlette:
        """The ASGI app of the endpoint table (mounted by FakeKeycloak at /admin)."""
        return Starlette(routes=self._routes())

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
            if key not in SUB_RESOURCES and key not in ("id", "realm"):
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

    async def _create_client(self, request: Request, realm: AdminRealm) -> Response:
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

    def _is_default_role(self, realm: AdminRealm, request: Request) -> bool:
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
