"""deploy/grafana/webhook.json: well formed, with tenant and realm variables, and every query
returning series from a real Prometheus scraping the running service.

Queries are run as Grafana would send them: `$__rate_interval` as 1m (Prometheus scrapes every
second here), `${tenant}` and `${realm}` as "All" (`.*`) and then as one tenant and its realm.
Queries that read only metrics other issues add (`PENDING_METRICS`) must return nothing yet.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from tests.ops.promserver import RunningPrometheus, rules_for_tests, run_prometheus
from tests.ops.rules import DASHBOARD, PENDING_METRICS, metric_families
from tests.ops.stack import GOOD_TENANT, OpsStack, ops_stack
from tests.ops.test_rules import exported_families

BOARD: dict[str, Any] = json.loads(DASHBOARD.read_text())
PANELS = [panel for panel in BOARD["panels"] if panel["type"] != "row"]
EXPRESSIONS = [target["expr"] for panel in PANELS for target in panel["targets"]]


def variables() -> dict[str, dict[str, Any]]:
    return {variable["name"]: variable for variable in BOARD["templating"]["list"]}


def test_dashboard_has_tenant_and_realm_variables_feeding_every_per_realm_query() -> None:
    """`tenant` and `realm` are multi-value variables with All; every query of a per-realm metric filters on both."""
    found = variables()
    for name in ("tenant", "realm"):
        assert found[name]["type"] == "query" and found[name]["multi"] and found[name]["includeAll"]
        assert found[name]["allValue"] == ".*"
    assert "${tenant}" in found["realm"]["query"]["query"]  # realms narrow to the chosen tenants
    per_realm = [expr for expr in EXPRESSIONS if "webhook_rejections_total" in expr or "webhook_jwks_realm_" in expr]
    assert len(per_realm) >= 6
    for expr in per_realm:
        assert 'realm=~"${realm}"' in expr and 'realm=~".*(${tenant}).*"' in expr, expr


def test_panels_are_well_formed_and_cover_what_on_call_looks_at_first() -> None:
    """Unique ids, inside the 24-column grid, the datasource variable on every query, and the panels
    the issue asks for."""
    ids = [panel["id"] for panel in BOARD["panels"]]
    assert len(ids) == len(set(ids))
    for panel in PANELS:
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
    titles = " | ".join(panel["title"].lower() for panel in PANELS)
    for wanted in (
        "decisions by result",
        "rejections by reason",
        "latency",
        "token-cache hit ratio",
        "jwks fetches by prefetched realm",
        "audit queue",
        "audit lag",
        "provisioning jobs",
        "revocations",
        "api keys in use expiring soonest",
    ):
        assert wanted in titles, wanted


def test_dashboard_reads_only_exported_or_pending_metrics() -> None:
    """Every metric a panel reads is exported by the service today or listed in PENDING_METRICS."""
    used = set().union(*(metric_families(expr) for expr in EXPRESSIONS))
    assert used - exported_families() - set(PENDING_METRICS) == set()


def as_grafana_sends(expr: str, tenant: str, realm: str) -> str:
    return expr.replace("$__rate_interval", "1m").replace("${tenant}", tenant).replace("${realm}", realm)


def pending_only(expr: str) -> bool:
    return metric_families(expr) <= set(PENDING_METRICS) and bool(metric_families(expr))


async def empty_queries(prom: RunningPrometheus, tenant: str, realm: str) -> list[str]:
    """The dashboard queries (pending ones excluded) that return no series."""
    empty = []
    for expr in EXPRESSIONS:
        if not pending_only(expr):
            query = as_grafana_sends(expr, tenant, realm)
            if not await prom.query(query):
                empty.append(query)
    return empty


async def traffic(stack: OpsStack, honest: str) -> None:
    """Some of everything the panels show: cache hits, forged tokens, a missing token, an action call,
    an API key's token (its expiry)."""
    for _ in range(3):
        assert await stack.hook(honest) == 200
    api_key = {"api_key": {"name": "erp-sync", "exp": int(time.time()) + 86400}}
    assert await stack.hook(stack.keycloak.mint(stack.good.name, claims=api_key, grant="client_credentials")) == 200
    assert await stack.hook(stack.forged()) == 401
    assert await stack.hook(None) == 401
    response = await stack.client.post(f"{stack.url}/actions/insertTenant", json={})
    assert response.status_code == 401


@pytest.mark.anyio
async def test_every_dashboard_query_returns_series_from_prometheus(tmp_path: Path) -> None:
    """Against a real Prometheus scraping the service under traffic, every query of the dashboard
    returns series, for all tenants and for one tenant and realm; pending-metric queries return none."""
    async with (
        ops_stack(tmp_path, REVOCATIONS="true") as stack,  # the revocation panels need its metrics
        run_prometheus(tmp_path / "prometheus", [stack.target], rules_for_tests(tmp_path)) as prom,
    ):
        honest = stack.keycloak.mint(stack.good.name)

        async def flowing() -> None:
            await traffic(stack, honest)

        for tenant, realm in ((".*", ".*"), (GOOD_TENANT, stack.good.name)):

            async def all_answer(tenant: str = tenant, realm: str = realm) -> bool:
                return not await empty_queries(prom, tenant, realm)

            try:
                await prom.wait_for(f"every query for tenant {tenant}", all_answer, between=flowing)
            except AssertionError as error:
                raise AssertionError(f"{error}\nempty: {await empty_queries(prom, tenant, realm)}") from None
        for expr in [expr for expr in EXPRESSIONS if pending_only(expr)]:  # none while PENDING_METRICS is empty
            assert await prom.query(as_grafana_sends(expr, ".*", ".*")) == [], expr
