"""Scale bench (not in CI): provision N realms into a real Keycloak of its own and report per 100 realms.

Usage: .venv/bin/python bench/realms.py [--realms 1000] [--events-per-tenant 9] [--heap "-Xms512m -Xmx3g"]
                                        [--out bench/.data/realms.jsonl]

What it does: starts its own Keycloak (the pinned 26.x, `webhook/testing/realkeycloak.py`) with the
given heap, creates the service's admin client exactly as README "Admin client" says (master,
`create-realm` only, lightweight access tokens), and provisions tenant realms and event realms (one
tenant, then `--events-per-tenant` events of it, and so on) through the service's own reconciler
(`webhook/provisioning/reconciler.py`: create, converge, read back, drift check), one after another.
After every 100 realms it records:

- `prov_s`: mean provisioning time per realm over the last 100 (create + converge + read-back);
- `admin_token_b`: bytes of the service's admin access token (README setup);
- `full_token_b` / `full_get`: the same admin client's token with the lightweight attribute turned
  off for a moment (what the token of a README setup without step 2 would be after that many
  realms) and the HTTP status of one admin call made with it (431 once it outgrows the header limit);
- `admin_get_s`: one admin call (GET of the newest realm) with the service's token;
- `token_s`: median of 5 token-endpoint calls (client credentials of the newest realm's
  `api-key-client`, whose secret the bench reads like `webhook provisioning secret`);
- `hook_cold_s`: median of 5 cold verifications by the hook (a new JWKS cache each time: one
  certs fetch + signature + claims) of that realm's token;
- `kc_rss_mb`: Keycloak's resident memory.

It stops at N realms or at the first failure (printed with the realm count it happened at). The
table is printed as Markdown at the end; each row is also appended to `--out` as JSON. Run it
alone: it takes a core for the whole run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

# bench/keycloak.py (the fake's server) would shadow python-keycloak's package when run from here
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import httpx  # noqa: E402
from pydantic import SecretStr  # noqa: E402

from webhook.provisioning.keycloakadmin import AdminCredentials, KeycloakAdmin  # noqa: E402
from webhook.provisioning.reconciler import RealmReconciler  # noqa: E402
from webhook.provisioning.templates import RealmKind, load_template, render  # noqa: E402
from webhook.settings import Settings  # noqa: E402
from webhook.testing.adminsetup import LIGHTWEIGHT, client_token, create_admin_client  # noqa: E402
from webhook.testing.realkeycloak import RealKeycloak, start_keycloak  # noqa: E402
from webhook.wiring import Dependencies, build_runtime  # noqa: E402

SERVICE_CLIENT = "election-webhook-provisioner"
SERVICE_SECRET = "bench-provisioner-secret"
COLUMNS = (
    "realms",
    "prov_s",
    "admin_token_b",
    "full_token_b",
    "full_get",
    "admin_get_s",
    "token_s",
    "hook_cold_s",
    "kc_rss_mb",
)


async def hook_cold(server: RealKeycloak, realm: str, token: str) -> float:
    """Median seconds of 5 cold verifications (fresh JWKS cache each) of `token` by the hook's verifier."""
    settings = Settings.from_environ({"KEYCLOAK_URL": server.url, "TOKEN_CACHE_SIZE": "0"})
    samples = []
    for _ in range(5):
        async with httpx.AsyncClient(timeout=30) as client:
            runtime = build_runtime(settings, client, Dependencies(http_client=client))
            began = time.perf_counter()
            identity = await runtime.verifier.verify(token)
            samples.append(time.perf_counter() - began)
            await runtime.cache.close()
        if identity.realm.name != realm:
            raise RuntimeError(f"hook verified {identity.realm.name}, expected {realm}")
    return statistics.median(samples)


def full_token(server: RealKeycloak, realm: str) -> tuple[int, int]:
    """(bytes, status of GET realm) of the service client's token with lightweight tokens off for a moment."""
    with server.admin() as admin:
        client = admin.get("/master/clients", params={"clientId": SERVICE_CLIENT}).json()[0]
        client["attributes"][LIGHTWEIGHT] = "false"
        admin.put(f"/master/clients/{client['id']}", json=client).raise_for_status()
        try:
            token = client_token(server, SERVICE_CLIENT, SERVICE_SECRET)
        finally:
            client["attributes"][LIGHTWEIGHT] = "true"
            admin.put(f"/master/clients/{client['id']}", json=client).raise_for_status()
    status = httpx.get(
        f"{server.url}/admin/realms/{realm}", headers={"Authorization": f"Bearer {token}"}, timeout=60
    ).status_code
    return len(token), status


async def measure(
    server: RealKeycloak, admin: KeycloakAdmin, realm: str, count: int, prov: list[float]
) -> dict[str, Any]:
    """One row of the table after `count` realms."""
    began = time.perf_counter()
    await admin.get_realm(realm)
    admin_get = time.perf_counter() - began
    api = next(c for c in await admin.clients(realm) if c["clientId"] == "api-key-client")
    secret = await admin.client_secret(realm, str(api["id"]))
    token_times, token = [], ""
    for _ in range(5):
        began = time.perf_counter()
        token = client_token(server, "api-key-client", secret, realm)
        token_times.append(time.perf_counter() - began)
    full_bytes, full_status = full_token(server, realm)
    return {
        "realms": count,
        "prov_s": round(statistics.mean(prov), 3),
        "admin_token_b": admin.access_token_bytes(),
        "full_token_b": full_bytes,
        "full_get": full_status,
        "admin_get_s": round(admin_get, 3),
        "token_s": round(statistics.median(token_times), 3),
        "hook_cold_s": round(await hook_cold(server, realm, token), 4),
        "kc_rss_mb": server.rss_bytes() // 2**20,
    }


async def run(args: argparse.Namespace, server: RealKeycloak, out: Path) -> list[dict[str, Any]]:
    create_admin_client(server, SERVICE_CLIENT, SERVICE_SECRET)
    rows: list[dict[str, Any]] = []
    async with httpx.AsyncClient(timeout=120) as client:
        credentials = AdminCredentials(server.url, "master", SERVICE_CLIENT, SecretStr(SERVICE_SECRET), timeout=120)
        admin = KeycloakAdmin(client, credentials)
        reconciler = RealmReconciler(admin)
        templates = {"tenant": load_template("tenant"), "event": load_template("event")}
        tenant, prov = "", []
        for index in range(1, args.realms + 1):
            kind: RealmKind = "tenant" if (index - 1) % (args.events_per_tenant + 1) == 0 else "event"
            if kind == "tenant":
                tenant = str(uuid.uuid4())
            event = str(uuid.uuid4()) if kind == "event" else None
            rendered = render(templates[kind], kind, tenant_id=tenant, event_id=event)
            began = time.perf_counter()
            try:
                converged = await reconciler.converge(rendered, kind)
            except Exception as exc:
                print(f"FAILED at realm {index} ({rendered['realm']}): {type(exc).__name__}: {exc}", flush=True)
                break
            prov.append(time.perf_counter() - began)
            if converged.drift:
                print(f"DRIFT at realm {index}: {converged.drift}", flush=True)
                break
            if index % 100 == 0 or index == args.realms:
                row = await measure(server, admin, str(rendered["realm"]), index, prov)
                rows.append(row)
                prov = []
                print(json.dumps(row), flush=True)
                with out.open("a") as handle:
                    handle.write(json.dumps(row) + "\n")
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    """The rows as a Markdown table."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(str(row[c]) for c in COLUMNS) + " |" for row in rows]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--realms", type=int, default=1000)
    parser.add_argument("--events-per-tenant", type=int, default=9)
    parser.add_argument("--heap", default="-Xms512m -Xmx3g")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / ".data" / "realms.jsonl")
    args = parser.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="bench-realms-"))
    server = start_keycloak(workdir, heap=args.heap)
    print(f"keycloak at {server.url} (heap {args.heap}), ready in {server.started_in_seconds:.0f} s", flush=True)
    try:
        rows = asyncio.run(run(args, server, args.out))
    finally:
        server.stop()
    print(table(rows))
    return 0 if rows and rows[-1]["realms"] == args.realms else 1


if __name__ == "__main__":
    sys.exit(main())
