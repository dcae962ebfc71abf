"""The README's Deploy section documents the stack as the files define it."""

from __future__ import annotations

from tests.deploy.support import README, demo_realm_path, env_example, resolved_environment


def _deploy_section() -> str:
    text = README.read_text()
    start = text.index("\n## Deploy\n")
    end = text.index("\n## ", start + 1)
    assert text.index("\n## Development\n") == end, "Deploy comes right before Development"
    return text[start:end]


def test_deploy_section_covers_quickstart_modes_and_kubernetes() -> None:
    """Deploy shows the compose quickstart, both Hasura modes (/jwks as jwk_url), probes and how to add a tenant."""
    deploy = _deploy_section()
    for needle in (
        "cp .env.example .env",
        "docker compose up",
        "HASURA_GRAPHQL_AUTH_HOOK",
        "HASURA_GRAPHQL_JWT_SECRET",
        '"jwk_url": "http://webhook:8080/jwks"',
        "Why webhook mode is stricter",
        "/readyz",
        "/healthz",
        "webhook db upgrade",
        "insertTenant",
        "#configuration",
    ):
        assert needle in deploy, needle


def test_deploy_section_names_the_stack_values() -> None:
    """The realm, ports and dev credentials the README quotes are the ones the files use."""
    deploy = _deploy_section()
    example = env_example()
    assert demo_realm_path().name in deploy
    assert f"realms/{demo_realm_path().stem}" in deploy
    assert example["KEYCLOAK_PUBLIC_URL"] in deploy
    assert f"http://localhost:{example['HASURA_PORT']}" in deploy
    assert f"http://localhost:{example['WEBHOOK_PORT']}" in deploy
    assert f"`{example['HASURA_GRAPHQL_ADMIN_SECRET']}`" in deploy
    assert resolved_environment("hasura")["HASURA_GRAPHQL_AUTH_HOOK"] in deploy
