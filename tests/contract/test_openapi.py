"""webhook/observability/openapi.yaml against the running service: schemathesis generates requests for every
described operation and checks server errors and response conformance (status codes, content
types, headers, bodies against the schemas).

The service runs on loopback (uvicorn with the production protocol) with the fake Keycloak and the
SQLite audit, in a thread of its own; schemathesis calls it over HTTP. The default run is small;
the `slow` variant generates many more cases per operation.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
import schemathesis
import yaml
from hypothesis import HealthCheck, settings
from schemathesis import checks
from starlette.routing import Route

from tests.security.support import AdversarialStack, InThread, adversarial_stack, bearer, in_thread
from webhook.app import create_app
from webhook.observability.openapi import openapi_document
from webhook.settings import Settings

SPEC_PATH = Path(__file__).resolve().parents[2] / "webhook" / "observability" / "openapi.yaml"
SPEC: dict[str, Any] = yaml.safe_load(SPEC_PATH.read_text())
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_headers_conformance,
    checks.response_schema_conformance,
]
schema = schemathesis.openapi.from_dict(SPEC)
SETTINGS = {"deadline": None, "suppress_health_check": list(HealthCheck)}


def served_routes() -> set[tuple[str, str]]:
    """(path, method) the app routes, read from the app object (nothing started)."""
    app = create_app(Settings.from_environ({"KEYCLOAK_URL": "http://127.0.0.1:1"}))
    served = {("/hasura/auth", "GET"), ("/hasura/auth", "POST")}
    for route in app.router.routes:
        if isinstance(route, Route):
            served |= {(route.path, method) for method in (route.methods or {"GET"}) if method != "HEAD"}
    return served


def described() -> set[tuple[str, str]]:
    return {(path, method.upper()) for path, item in SPEC["paths"].items() for method in item}


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InThread]:
    with in_thread(adversarial_stack(tmp_path_factory.mktemp("contract"))) as running:
        yield running


def test_spec_describes_every_route_and_nothing_more() -> None:
    """The description and the app's routes are the same set of (path, method)."""
    assert described() == served_routes()


def test_served_document_is_the_yaml(live: InThread) -> None:
    """GET /openapi.json serves webhook/observability/openapi.yaml (package data) as JSON."""
    stack: AdversarialStack = live.value
    response = httpx.get(f"{stack.url}/openapi.json")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    served = response.json()
    assert served["info"].pop("version") == openapi_document()["info"]["version"]
    expected = dict(SPEC)
    expected["info"] = {k: v for k, v in SPEC["info"].items() if k != "version"}
    assert served == expected


def test_valid_and_anonymous_sessions_conform(live: InThread) -> None:
    """The 200 answers (which random headers never reach) conform too."""
    stack: AdversarialStack = live.value
    token = stack.keycloak.mint(stack.tenant.name)
    get = schema["/hasura/auth"]["GET"]
    post = schema["/hasura/auth"]["POST"]
    for case in (
        get.Case(headers=bearer(token)),
        get.Case(headers={**bearer(token), "X-Hasura-Role": "voter-read"}),
        post.Case(body=cast(Any, {"headers": bearer(token), "request": None})),
    ):
        response = case.call_and_validate(base_url=stack.url, checks=CHECKS)
        assert response.status_code == 200


@schema.parametrize()
@settings(max_examples=25, **SETTINGS)  # type: ignore[arg-type]
def test_api_conforms(case: schemathesis.Case[Any], live: InThread) -> None:
    case.call_and_validate(base_url=live.value.url, checks=CHECKS)


@pytest.mark.slow
@schema.parametrize()
@settings(max_examples=500, **SETTINGS)  # type: ignore[arg-type]
def test_api_conforms_long(case: schemathesis.Case[Any], live: InThread) -> None:
    case.call_and_validate(base_url=live.value.url, checks=CHECKS)
