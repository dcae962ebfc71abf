"""docker-compose.yml and .env.example: schema, the environment contract with the service, wiring.

The environment contract (S = names in webhook.settings.VARIABLES, W = keys of the `webhook`
service's `environment`, E = .env.example):

1. W == S. The compose file sets every variable the service reads, and nothing else: a typo or a
   stale name fails here, and so does a new service variable nobody wired into the stack.
2. A variable not in DEPLOYMENT_VALUES is passed through as exactly `${WEBHOOK_<NAME>:-<default>}`
   where <default> is the service's own default (VARIABLES): the stack changes nothing unless
   .env says so. DEPLOYMENT_VALUES are the ones the stack itself decides (URLs, bind address,
   database, the demo realm, shared secrets).
3. Every `${VAR...}` anywhere in the compose file has a `:-` dev default, the same default at every
   use, and VAR is a key of E with that same value (so `cp .env.example .env` changes nothing and
   every knob of the stack is listed in one place); E holds no key the compose file does not use.
4. With E's values, W is a valid configuration: `Settings.from_environ` accepts it.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

from tests.deploy.support import (
    COMPOSE_FILE,
    ROOT,
    compose,
    demo_realm_path,
    env_example,
    environment,
    interpolate,
    references,
    resolved_environment,
    service,
    strings,
)
from webhook.app import HOOK_PATH
from webhook.settings import VARIABLES, Settings
from webhook.testing.realkeycloak import KEYCLOAK_VERSION

#: Service variables whose compose value the stack decides (rule 2 does not apply), and why.
DEPLOYMENT_VALUES: Final = {
    "KEYCLOAK_URL": "the internal URL of the keycloak service",
    "KEYCLOAK_ISSUER_URL": "KEYCLOAK_PUBLIC_URL, which is also Keycloak's KC_HOSTNAME",
    "PREFETCH_REALMS": "the demo realm of keycloak/import, so /readyz waits for its keys",
    "HOST": "0.0.0.0 inside a container",
    "PORT": "the port Hasura's hook and action URLs name",
    "DATABASE_URL": "the postgres service's application database",
    "DATABASE_SCHEMA": "public, where hasura_metadata tracks the tables",
    "DATABASE_AUTO_MIGRATE": "false: the webhook-migrate job migrates before the service starts",
    "ACTIONS_SECRET": "shared with the hasura service (one ${ACTIONS_SECRET})",
    "SUPER_ADMIN_TENANT_ID": "the demo tenant, so its admin may create tenants",
    "KEYCLOAK_ADMIN_CLIENT_ID": "Keycloak's bootstrap admin client (KC_BOOTSTRAP_ADMIN_CLIENT_ID)",
    "KEYCLOAK_ADMIN_CLIENT_SECRET": "Keycloak's bootstrap admin client (KC_BOOTSTRAP_ADMIN_CLIENT_SECRET)",
}
SERVICES: Final = {"postgres", "keycloak", "hasura", "webhook", "webhook-migrate"}
ONE_SHOT: Final = {"webhook-migrate"}
SECRET_NAME: Final = re.compile(r"PASSWORD|SECRET", re.IGNORECASE)


def _service_variables() -> dict[str, str]:
    return {v.name: v.default for v in VARIABLES}


def test_compose_file_matches_the_compose_spec_schema(tmp_path: Path) -> None:
    """check-jsonschema's vendored compose-spec accepts docker-compose.yml (and rejects a misspelt key)."""
    control = tmp_path / "misspelt-compose.yml"
    control.write_text("services:\n  app:\n    image: busybox\n    healtcheck: {}\n")
    done = subprocess.run(  # noqa: S603 - fixed argv: this interpreter, the package's CLI, two paths
        [
            sys.executable,
            "-m",
            "check_jsonschema",
            "--builtin-schema",
            "vendor.compose-spec",
            "--output-format",
            "JSON",
            str(COMPOSE_FILE),
            str(control),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    report = json.loads(done.stdout)
    assert report["parse_errors"] == []
    by_file: dict[str, list[str]] = {}
    for error in report["errors"]:
        by_file.setdefault(error["filename"], []).append(f"{error['path']}: {error['message']}")
    assert by_file.pop(str(COMPOSE_FILE), []) == []
    rejected = by_file.pop(str(control), [])
    assert any("healtcheck" in error for error in rejected), "the schema check must reject a misspelt key"
    assert by_file == {}


def test_services_and_no_version_key() -> None:
    """The file follows the compose spec (no obsolete `version:`) and defines exactly the stack's services."""
    assert "version" not in compose()
    assert set(compose()["services"]) == SERVICES


def test_webhook_environment_is_exactly_the_service_variables() -> None:
    """Rule 1: the webhook service gets every variable webhook.settings.VARIABLES declares, and no other."""
    declared = _service_variables()
    passed = environment("webhook")
    missing = [name for name in declared if name not in passed]
    unknown = sorted(set(passed) - set(declared))
    hint = "\n".join(
        f"  docker-compose.yml: {name}: ${{WEBHOOK_{name}:-{declared[name]}}}\n"
        f"  .env.example:       WEBHOOK_{name}={declared[name]}"
        for name in missing
    )
    assert missing == [], f"service variables not set by docker-compose.yml; add:\n{hint}"
    assert unknown == [], f"docker-compose.yml passes variables the service does not read: {unknown}"


def test_pass_through_values_keep_the_service_defaults() -> None:
    """Rule 2: outside DEPLOYMENT_VALUES each variable is `${WEBHOOK_<NAME>:-<the service's default>}`."""
    declared = _service_variables()
    wrong = {
        name: value
        for name, value in environment("webhook").items()
        if name not in DEPLOYMENT_VALUES and value != f"${{WEBHOOK_{name}:-{declared.get(name, '?')}}}"
    }
    assert wrong == {}
    assert set(DEPLOYMENT_VALUES) <= set(declared)


def test_every_interpolated_variable_is_in_env_example_with_the_same_default() -> None:
    """Rule 3: each ${VAR} has one `:-` dev default, equal to VAR's value in .env.example; no unused keys."""
    found = [reference for value in strings(compose()) for reference in references(value)]
    assert [r.name for r in found if not r.braced or r.op != ":-"] == [], "use ${VAR:-dev-default} only"
    defaults: dict[str, set[str]] = {}
    for reference in found:
        defaults.setdefault(reference.name, set()).add(reference.arg or "")
    assert {name: values for name, values in defaults.items() if len(values) > 1} == {}
    example = env_example()
    assert sorted(set(defaults) - set(example)) == [], "add these to .env.example"
    assert sorted(set(example) - set(defaults)) == [], ".env.example keys docker-compose.yml never uses"
    assert {name: example[name] for name in defaults if {example[name]} != defaults[name]} == {}


def test_resolved_webhook_environment_is_a_valid_configuration() -> None:
    """Rule 4: with .env.example's values the service accepts its environment, pointed at the stack."""
    env = resolved_environment("webhook")
    settings = Settings.from_environ(env)
    assert settings.keycloak_url == "http://keycloak:8080"
    assert settings.issuer_urls == (env_example()["KEYCLOAK_PUBLIC_URL"],)
    assert settings.prefetch_realms == (demo_realm_path().stem,)
    url = urlsplit(settings.database_url.get_secret_value())
    assert (url.scheme, url.hostname, url.port, url.path) == ("postgresql+asyncpg", "postgres", 5432, "/election")
    assert settings.database_schema is None
    assert settings.database_auto_migrate is False
    assert (settings.host, settings.port) == ("0.0.0.0", 8080)
    assert settings.super_admin_tenant_id == demo_realm_path().stem.removeprefix("tenant-")


def test_webhook_service_is_built_hardened_and_ready_checked() -> None:
    """The webhook runs the Dockerfile's image read-only without capabilities, healthy only when /readyz is."""
    webhook = service("webhook")
    assert webhook["build"]["dockerfile"] == "Dockerfile"
    assert (ROOT / webhook["build"]["context"] / "Dockerfile").is_file()
    assert webhook["command"] == ["webhook", "serve", "--host", "0.0.0.0"]
    assert webhook["read_only"] is True
    assert webhook["cap_drop"] == ["ALL"]
    assert "/readyz" in " ".join(webhook["healthcheck"]["test"])
    published = [interpolate(p, env_example()) for p in webhook["ports"]]
    assert all(p.startswith("127.0.0.1:") for p in published)


def test_migration_job_runs_first_on_the_same_database() -> None:
    """webhook-migrate runs `webhook db upgrade` on the webhook's database; the webhook and Hasura wait for it."""
    job, webhook = service("webhook-migrate"), service("webhook")
    assert job["command"] == ["webhook", "db", "upgrade"]
    assert job["image"] == webhook["image"]
    assert job.get("restart") == "no"
    job_env = environment("webhook-migrate")
    assert set(job_env) <= set(_service_variables())
    for name in ("DATABASE_URL", "DATABASE_SCHEMA"):
        assert job_env[name] == environment("webhook")[name]
    for waiting in ("webhook", "hasura"):
        assert service(waiting)["depends_on"]["webhook-migrate"] == {"condition": "service_completed_successfully"}


def test_depends_on_waits_for_health() -> None:
    """Every dependency has a condition; every long-running service has a healthcheck to be waited on."""
    for name in SERVICES - ONE_SHOT:
        assert "test" in service(name).get("healthcheck", {}), f"{name} has no healthcheck"
    for name in SERVICES:
        for target, rule in service(name).get("depends_on", {}).items():
            expected = "service_completed_successfully" if target in ONE_SHOT else "service_healthy"
            assert rule == {"condition": expected}, f"{name} -> {target}"
    assert set(service("webhook")["depends_on"]) == {"webhook-migrate", "keycloak"}
    assert set(service("hasura")["depends_on"]) == {"postgres", "webhook-migrate", "webhook"}
    assert set(service("keycloak")["depends_on"]) == {"postgres"}


def test_hasura_calls_the_hook_in_webhook_mode() -> None:
    """Hasura v2 calls the webhook's hook path with an admin secret, no UNAUTHORIZED_ROLE and no JWT secret."""
    hasura = service("hasura")
    assert re.fullmatch(r"hasura/graphql-engine:v2\.\d+\.\d+\.cli-migrations-v3", hasura["image"])
    env, resolved = environment("hasura"), resolved_environment("hasura")
    port = resolved_environment("webhook")["PORT"]
    assert env["HASURA_GRAPHQL_AUTH_HOOK"] == f"http://webhook:{port}{HOOK_PATH}"
    assert resolved["HASURA_GRAPHQL_AUTH_HOOK_MODE"] in ("GET", "POST")
    assert resolved["HASURA_GRAPHQL_ADMIN_SECRET"]
    forbidden = {"HASURA_GRAPHQL_UNAUTHORIZED_ROLE", "HASURA_GRAPHQL_JWT_SECRET", "HASURA_GRAPHQL_JWT_SECRETS"}
    assert not forbidden & set(env)
    assert env["ACTIONS_BASE_URL"] == f"http://webhook:{port}"
    assert env["ACTIONS_SECRET"] == environment("webhook")["ACTIONS_SECRET"]
    mounts = {m.split(":")[1]: m.split(":")[0] for m in hasura["volumes"]}
    assert mounts[env["HASURA_GRAPHQL_METADATA_DIR"]] == "./hasura_metadata"


def test_hasura_is_healthy_only_with_consistent_metadata() -> None:
    """Hasura's healthcheck asks /healthz?strict=true: plain /healthz answers 200 ("WARN: inconsistent
    objects") even when the metadata does not match the database, which is not healthy."""
    probe = " ".join(service("hasura")["healthcheck"]["test"])
    assert "GET /healthz?strict=true HTTP/1.1" in probe
    assert 'grep -q " 200"' in probe


def test_hasura_tracks_the_database_the_webhook_migrates() -> None:
    """Hasura's `default` source (PG_DATABASE_URL) is the webhook's DATABASE_URL; its catalog is another database."""
    app = urlsplit(resolved_environment("webhook")["DATABASE_URL"])
    source = urlsplit(resolved_environment("hasura")["PG_DATABASE_URL"])
    catalog = urlsplit(resolved_environment("hasura")["HASURA_GRAPHQL_METADATA_DATABASE_URL"])
    assert (source.hostname, source.port, source.path, source.username) == (
        app.hostname,
        app.port,
        app.path,
        app.username,
    )
    assert catalog.path != source.path
    postgres = resolved_environment("postgres")
    created = {postgres["POSTGRES_DB"], *postgres["EXTRA_DATABASES"].split()}
    keycloak_db = resolved_environment("keycloak")["KC_DB_URL"].rsplit("/", 1)[1]
    assert {source.path.strip("/"), catalog.path.strip("/"), keycloak_db} == created


def test_keycloak_imports_the_demo_realm_and_issues_the_public_url() -> None:
    """Keycloak imports keycloak/import at start; its public URL is the webhook's issuer and its published port."""
    keycloak = service("keycloak")
    assert keycloak["image"] == f"quay.io/keycloak/keycloak:{KEYCLOAK_VERSION}"  # the version the tests ran
    assert re.fullmatch(r"26\.\d+\.\d+", KEYCLOAK_VERSION)
    assert keycloak["command"][:1] == ["start-dev"] and "--import-realm" in keycloak["command"]
    assert "./keycloak/import:/opt/keycloak/data/import:ro" in keycloak["volumes"]
    env = environment("keycloak")
    assert env["KC_HOSTNAME"] == environment("webhook")["KEYCLOAK_ISSUER_URL"]
    public = urlsplit(resolved_environment("keycloak")["KC_HOSTNAME"])
    (published,) = [interpolate(p, env_example()) for p in keycloak["ports"]]
    assert published == f"127.0.0.1:{public.port}:8080"
    assert {"KC_BOOTSTRAP_ADMIN_USERNAME", "KC_BOOTSTRAP_ADMIN_PASSWORD"} <= set(env)
    webhook = environment("webhook")
    assert env["KC_BOOTSTRAP_ADMIN_CLIENT_ID"] == webhook["KEYCLOAK_ADMIN_CLIENT_ID"]
    assert env["KC_BOOTSTRAP_ADMIN_CLIENT_SECRET"] == webhook["KEYCLOAK_ADMIN_CLIENT_SECRET"]
    assert resolved_environment("webhook")["KEYCLOAK_ADMIN_REALM"] == "master"


def test_bind_mounts_exist_in_the_repository() -> None:
    """Every host path the stack mounts exists, so a rename cannot silently mount an empty directory."""
    for name in SERVICES:
        for volume in service(name).get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (ROOT / source).exists(), f"{name}: {source} does not exist"


def test_no_secret_is_hard_coded() -> None:
    """Passwords and secrets come from ${VAR:-dev-default}; URLs carry credentials only through variables."""
    for name in SERVICES:
        for key, value in environment(name).items():
            if SECRET_NAME.search(key):
                assert re.fullmatch(r"\$\{[A-Z_]+:-[^}]*\}", value), f"{name}.{key} is hard-coded"
    for value in strings(compose()):
        for match in re.finditer(r"://([^/@\s]+)@", value):
            userinfo = re.sub(r"\$\{[^}]*\}", "${}", match[1])
            assert userinfo.partition(":")[2] in ("", "${}"), f"a password is written out in {value}"
