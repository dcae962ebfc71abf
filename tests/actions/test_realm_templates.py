"""The packaged realm templates and their rendering: valid for the hook, secrets and keys stripped."""

from __future__ import annotations

import json
from typing import Any

import pytest

from webhook.core.session import CLAIM_ALLOWED_ROLES, CLAIM_DEFAULT_ROLE, CLAIM_TENANT, HASURA_NAMESPACE
from webhook.provisioning.templates import (
    PLACEHOLDER_EVENT,
    PLACEHOLDER_TENANT,
    PortalUrls,
    hasura_claims,
    keycloak_claim,
    load_template,
    problems,
    render,
    strip_secrets,
)

T = "5b0c9d8e-7f6a-4b5c-8d9e-0f1a2b3c4d5e"
E = "6c1d0e9f-8a7b-4c6d-9e0f-1a2b3c4d5e6f"


@pytest.mark.parametrize("kind", ["tenant", "event"])
def test_templates_are_fit_for_the_hook(kind: Any) -> None:
    """Both templates define the three clients, the roles and every Hasura mapper, and hold no secret."""
    assert problems(load_template(kind), kind) == []


def test_claim_names_come_from_the_session_module() -> None:
    """Mappers write `https://hasura\\.io/jwt/claims.<claim>` (Keycloak escapes the namespace's dots)."""
    assert keycloak_claim(CLAIM_TENANT) == "https://hasura\\.io/jwt/claims.x-hasura-tenant-id"
    assert HASURA_NAMESPACE.replace(".", "\\.") in keycloak_claim(CLAIM_DEFAULT_ROLE)
    assert CLAIM_ALLOWED_ROLES in hasura_claims("tenant")


def test_event_render_fills_ids_and_urls() -> None:
    """Rendering names the realm, replaces the placeholder ids everywhere and sets the portals' URLs."""
    urls = PortalUrls(voting_portal="https://vote.example", admin_portal="https://admin.example")
    realm = render(load_template("event"), "event", tenant_id=T, event_id=E, urls=urls)
    text = json.dumps(realm)
    assert PLACEHOLDER_TENANT not in text and PLACEHOLDER_EVENT not in text
    assert realm["realm"] == f"tenant-{T}-event-{E}"
    assert realm["defaultRole"]["name"] == f"default-roles-tenant-{T}-event-{E}"
    clients = {c["clientId"]: c for c in realm["clients"]}
    assert clients["voting-portal"]["rootUrl"] == "https://vote.example"
    assert clients["admin-portal"]["rootUrl"] == "https://admin.example"
    assert problems(realm, "event") == []


def test_render_strips_what_keycloak_must_generate() -> None:
    """Ids, client secrets, credentials and key providers of a template never reach Keycloak."""
    template = load_template("tenant")
    template["id"] = "fixed-id"
    template["clients"][2]["secret"] = "leaked"
    template["clients"][2]["id"] = "client-uuid"
    template["users"] = [{"username": "admin", "credentials": [{"type": "password", "value": "admin"}]}]
    template["components"] = {"org.keycloak.keys.KeyProvider": [{"name": "rsa", "config": {"privateKey": ["x"]}}]}
    template["smtpServer"] = {"host": "smtp", "password": "p"}
    realm = render(template, "tenant", tenant_id=T)
    text = json.dumps(realm)
    for leaked in ('"fixed-id"', '"leaked"', "client-uuid", '"credentials"', "KeyProvider", '"password"'):
        assert leaked not in text
    assert problems(realm, "tenant") == []


def test_problems_finds_what_breaks_the_hook() -> None:
    """A missing mapper, a wrong claim name, a secret or a missing client are each reported."""
    realm = load_template("tenant")
    clients = {c["clientId"]: c for c in realm["clients"]}
    clients["admin-portal"]["protocolMappers"] = [
        m for m in clients["admin-portal"]["protocolMappers"] if m["name"] != CLAIM_TENANT
    ]
    clients["voting-portal"]["protocolMappers"][0]["config"]["claim.name"] = "x-hasura-default-role"
    clients["api-key-client"]["secret"] = "s"
    found = problems(realm, "tenant")
    assert "client admin-portal: no mapper for x-hasura-tenant-id" in found
    assert "client voting-portal: mapper x-hasura-default-role writes another claim" in found
    assert "client api-key-client carries a secret" in found
    del realm["clients"][0]
    assert "client admin-portal is missing" in problems(realm, "tenant")


def test_render_refuses_mismatched_kind() -> None:
    """An event realm needs an event id; a tenant realm takes none."""
    with pytest.raises(ValueError, match="event id"):
        render(load_template("event"), "event", tenant_id=T)
    with pytest.raises(ValueError, match="event id"):
        render(load_template("tenant"), "tenant", tenant_id=T, event_id=E)


def test_strip_secrets_in_place() -> None:
    """strip_secrets removes client secrets and identity provider secrets."""
    realm: dict[str, Any] = {
        "clients": [{"clientId": "c", "secret": "s"}],
        "identityProviders": [{"alias": "g", "config": {"clientSecret": "x", "clientId": "y"}}],
    }
    assert strip_secrets(realm) == {
        "clients": [{"clientId": "c"}],
        "identityProviders": [{"alias": "g", "config": {"clientId": "y"}}],
    }
