"""Readers for the deployment files (compose, .env, Hasura metadata, Keycloak realm JSON, Dockerfile).

Each reader is strict: an unexpected shape fails the test that uses it rather than being skipped.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Final

import yaml

ROOT: Final = Path(__file__).resolve().parents[2]
COMPOSE_FILE: Final = ROOT / "docker-compose.yml"
ENV_EXAMPLE: Final = ROOT / ".env.example"
DOCKERFILE: Final = ROOT / "Dockerfile"
DOCKERIGNORE: Final = ROOT / ".dockerignore"
METADATA_DIR: Final = ROOT / "hasura_metadata"
REALM_IMPORT_DIR: Final = ROOT / "keycloak" / "import"
REALM_TEMPLATES_DIR: Final = ROOT / "webhook" / "realm_templates"
README: Final = ROOT / "README.md"

# ------------------------------------------------------------------------------------ compose + .env

# Compose interpolation: ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?err}, ${NAME?err},
# ${NAME:+alt}, ${NAME+alt}; `$$` is a literal `$`; a bare `$NAME` is also interpolated.
_REFERENCE: Final = re.compile(
    r"\$\$|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:-|-|:\?|\?|:\+|\+)(?P<arg>[^}]*))?\}"
    r"|\$(?P<bare>[A-Za-z_][A-Za-z0-9_]*)"
)


@dataclass(frozen=True, slots=True)
class Reference:
    """One `${...}` in the compose file."""

    name: str
    op: str | None  # ":-", "-", ":?"... or None for a plain ${NAME} / $NAME
    arg: str | None
    braced: bool


def references(text: str) -> list[Reference]:
    """Every variable reference in `text` (escaped `$$` excluded)."""
    found = []
    for match in _REFERENCE.finditer(text):
        if match.group(0) == "$$":
            continue
        if match["bare"]:
            found.append(Reference(match["bare"], None, None, braced=False))
        else:
            found.append(Reference(match["name"], match["op"], match["arg"], braced=True))
    return found


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """`text` as Compose interpolates it with the variables `env` (errors for ${X:?} on unset X)."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match["name"] or match["bare"]
        op, arg = match["op"], match["arg"] or ""
        value = env.get(name)
        if op == ":-":
            return value if value else arg
        if op == "-":
            return value if value is not None else arg
        if op in (":?", "?") and (value is None or (op == ":?" and not value)):
            raise KeyError(f"{name}: {arg or 'required'}")
        if op == ":+":
            return arg if value else ""
        if op == "+":
            return arg if value is not None else ""
        return value or ""

    return _REFERENCE.sub(replace, text)


def interpolate_tree(data: Any, env: Mapping[str, str]) -> Any:
    """A loaded compose document with every string value interpolated (keys are left alone)."""
    if isinstance(data, str):
        return interpolate(data, env)
    if isinstance(data, list):
        return [interpolate_tree(item, env) for item in data]
    if isinstance(data, dict):
        return {key: interpolate_tree(value, env) for key, value in data.items()}
    return data


def strings(data: Any) -> Iterator[str]:
    """Every string value in a loaded YAML/JSON document."""
    if isinstance(data, str):
        yield data
    elif isinstance(data, list):
        for item in data:
            yield from strings(item)
    elif isinstance(data, dict):
        for value in data.values():
            yield from strings(value)


@cache
def compose() -> dict[str, Any]:
    """docker-compose.yml as loaded (YAML anchors and merge keys resolved, not interpolated)."""
    loaded = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(loaded, dict)
    return loaded


def service(name: str) -> dict[str, Any]:
    services = compose()["services"]
    assert name in services, f"docker-compose.yml has no service {name!r}"
    value = services[name]
    assert isinstance(value, dict)
    return value


def environment(name: str) -> dict[str, str]:
    """A service's `environment` as a mapping of strings (the list form `NAME=value` is accepted)."""
    raw = service(name).get("environment", {})
    if isinstance(raw, list):
        pairs = [item.partition("=") for item in raw]
        return {key: value for key, _, value in pairs}
    assert isinstance(raw, dict)
    for key, value in raw.items():
        assert isinstance(value, str), f"{name}.environment.{key} must be a quoted string, not {value!r}"
    return dict(raw)


_ENV_LINE: Final = re.compile(r"(?P<name>[A-Za-z_][A-Za-z0-9_]*)=(?P<value>[^\s\"'#$]*)")


@cache
def env_example() -> dict[str, str]:
    """.env.example as NAME -> value. Only comments, blank lines and plain `NAME=value` lines are allowed."""
    values: dict[str, str] = {}
    for number, line in enumerate(ENV_EXAMPLE.read_text().splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = _ENV_LINE.fullmatch(line)
        assert match, f".env.example:{number}: not a plain NAME=value line: {line!r}"
        assert match["name"] not in values, f".env.example:{number}: {match['name']} defined twice"
        values[match["name"]] = match["value"]
    return values


def resolved_environment(name: str) -> dict[str, str]:
    """A service's environment as the container gets it with `cp .env.example .env`."""
    return {key: interpolate(value, env_example()) for key, value in environment(name).items()}


# ------------------------------------------------------------------------------------ Hasura metadata


class _MetadataLoader(yaml.SafeLoader):
    """SafeLoader that also accepts the unquoted `!include <file>` tag form."""


def _include_tag(loader: yaml.SafeLoader, node: yaml.Node) -> str:
    value = loader.construct_scalar(node)  # type: ignore[arg-type]
    return f"!include {value}"


_MetadataLoader.add_constructor("!include", _include_tag)


def load_metadata(path: Path) -> Any:
    """A Hasura metadata YAML file with every `!include <file>` (quoted or tag) replaced by that file."""
    return _resolve_includes(yaml.load(path.read_text(), Loader=_MetadataLoader), path.parent)  # noqa: S506


def _resolve_includes(data: Any, base: Path) -> Any:
    if isinstance(data, str) and data.startswith("!include "):
        target = base / data.removeprefix("!include ").strip()
        assert target.is_file(), f"!include of a missing file: {target}"
        return load_metadata(target)
    if isinstance(data, list):
        return [_resolve_includes(item, base) for item in data]
    if isinstance(data, dict):
        return {key: _resolve_includes(value, base) for key, value in data.items()}
    return data


# ------------------------------------------------------------------------------------ Keycloak realms

HASURA_MAPPERS: Final = frozenset(
    {
        "oidc-hardcoded-claim-mapper",
        "oidc-usermodel-property-mapper",
        "oidc-usermodel-attribute-mapper",
        "oidc-usermodel-realm-role-mapper",
    }
)


def demo_realm_path() -> Path:
    """The one realm import file of the compose stack."""
    files = sorted(REALM_IMPORT_DIR.glob("*.json"))
    assert len(files) == 1, f"expected exactly one realm in {REALM_IMPORT_DIR}, found {files}"
    return files[0]


def load_json(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text())
    assert isinstance(data, dict)
    return data


def claim_path(claim_name: str) -> tuple[str, ...]:
    """Keycloak's token claim name syntax: `.` nests, `\\.` is a literal dot."""
    parts: list[str] = []
    current = ""
    index = 0
    while index < len(claim_name):
        char = claim_name[index]
        if char == "\\" and index + 1 < len(claim_name) and claim_name[index + 1] == ".":
            current += "."
            index += 2
            continue
        if char == ".":
            parts.append(current)
            current = ""
        else:
            current += char
        index += 1
    parts.append(current)
    return tuple(parts)


def client(realm: Mapping[str, Any], client_id: str) -> dict[str, Any]:
    matches = [c for c in realm.get("clients", []) if c.get("clientId") == client_id]
    assert len(matches) == 1, f"realm {realm.get('realm')!r} has {len(matches)} clients named {client_id!r}"
    found: dict[str, Any] = matches[0]
    return found


def effective_mappers(realm: Mapping[str, Any], client_rep: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The client's own protocol mappers plus those of its default client scopes that the realm defines."""
    mappers: list[dict[str, Any]] = list(client_rep.get("protocolMappers", []))
    scope_names = client_rep.get("defaultClientScopes", realm.get("defaultDefaultClientScopes", []))
    scopes = {scope["name"]: scope for scope in realm.get("clientScopes", [])}
    for name in scope_names:
        mappers.extend(scopes.get(name, {}).get("protocolMappers", []))
    return mappers


def hasura_mappers(realm: Mapping[str, Any], client_rep: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Claim name under the Hasura namespace -> the mapper that writes it into access tokens."""
    from webhook.core.session import HASURA_NAMESPACE

    found: dict[str, dict[str, Any]] = {}
    for mapper in effective_mappers(realm, client_rep):
        config = mapper.get("config", {})
        path = claim_path(config.get("claim.name", ""))
        if path[0] != HASURA_NAMESPACE or config.get("access.token.claim") != "true":
            continue
        assert len(path) == 2, f"mapper {mapper.get('name')!r} nests deeper than the namespace: {path}"
        assert path[1] not in found, f"two mappers write {path[1]} for client {client_rep.get('clientId')!r}"
        found[path[1]] = mapper
    return found


@dataclass
class RealmModel:
    """The parts of a realm representation that decide a user's effective realm roles."""

    realm: Mapping[str, Any]
    composites: dict[str, list[str]] = field(init=False)
    groups: dict[str, Mapping[str, Any]] = field(init=False)

    def __post_init__(self) -> None:
        self.composites = {
            role["name"]: list(role.get("composites", {}).get("realm", []))
            for role in self.realm.get("roles", {}).get("realm", [])
        }
        self.groups = {}

        def walk(groups: list[Mapping[str, Any]], parent: str) -> None:
            for group in groups:
                path = f"{parent}/{group['name']}"
                self.groups[path] = group
                walk(group.get("subGroups", []), path)

        walk(self.realm.get("groups", []), "")

    def default_roles(self) -> list[str]:
        """Keycloak's `default-roles-<realm>` composite: the import's, or what Keycloak creates."""
        default = self.realm.get("defaultRole")
        if default is not None:
            return [default["name"], *default.get("composites", {}).get("realm", [])]
        return [f"default-roles-{str(self.realm['realm']).lower()}", "offline_access", "uma_authorization"]

    def user(self, username: str) -> dict[str, Any]:
        matches = [u for u in self.realm.get("users", []) if u.get("username") == username]
        assert len(matches) == 1, f"no single user {username!r}"
        found: dict[str, Any] = matches[0]
        return found

    def effective_realm_roles(self, user: Mapping[str, Any], *, created_at_run_time: bool = False) -> set[str]:
        """Direct roles, group roles (parent groups included), composites expanded; the default roles only for a
        user created at run time (admin API, registration): Keycloak imports the users of a realm JSON without
        them (``DefaultExportImportManager.createUser``: ``addDefaultRoles=false``; tests/keycloak proves it)."""
        pending = list(user.get("realmRoles", []))
        for path in user.get("groups", []):
            assert path in self.groups, f"user {user.get('username')!r} is in an unknown group {path!r}"
            prefix = ""
            for part in path.strip("/").split("/"):
                prefix = f"{prefix}/{part}"
                pending.extend(self.groups[prefix].get("realmRoles", []))
        if created_at_run_time:
            pending.extend(self.default_roles())
        roles: set[str] = set()
        while pending:
            role = pending.pop()
            if role not in roles:
                roles.add(role)
                pending.extend(self.composites.get(role, []))
        return roles

    def hasura_claims(self, client_id: str, username: str) -> dict[str, Any]:
        """The Hasura claims Keycloak's mappers would put in this user's access token for this client."""
        user = self.user(username)
        claims: dict[str, Any] = {}
        for claim, mapper in hasura_mappers(self.realm, client(self.realm, client_id)).items():
            kind, config = mapper["protocolMapper"], mapper["config"]
            value: Any
            if kind == "oidc-hardcoded-claim-mapper":
                value = config["claim.value"]
                if config.get("jsonType.label") == "JSON":
                    value = json.loads(value)
            elif kind == "oidc-usermodel-property-mapper":
                value = user[config["user.attribute"]]
            elif kind == "oidc-usermodel-attribute-mapper":
                values = user.get("attributes", {}).get(config["user.attribute"], [])
                value = list(values) if config.get("multivalued") == "true" else values[0]
            elif kind == "oidc-usermodel-realm-role-mapper":
                prefix = config.get("usermodel.realmRoleMapping.rolePrefix", "")
                value = sorted(prefix + role for role in self.effective_realm_roles(user))
            else:
                raise AssertionError(f"mapper type {kind!r} is not modelled here")
            claims[claim] = value
        return claims


# ------------------------------------------------------------------------------------ Dockerfile


@dataclass
class Instruction:
    keyword: str
    arguments: str
    flags: dict[str, str]
    operands: list[str]


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction]

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]


def _logical_lines(text: str) -> Iterator[str]:
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):  # comment inside a continued instruction
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        yield current + line
        current = ""
    if current:
        yield current


def parse_dockerfile(text: str) -> tuple[dict[str, str], list[Stage]]:
    """Global ARGs (name -> default) and the stages of a Dockerfile, with `${ARG}` in FROM resolved."""
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in _logical_lines(text):
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        rest = rest.strip()
        if keyword == "FROM":
            parts = rest.split()
            base = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args[m[1] or m[2]], parts[0])
            name = parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else None
            stages.append(Stage(base, name, []))
            continue
        if keyword == "ARG" and not stages:
            name, _, default = rest.partition("=")
            args[name] = default
            continue
        assert stages, f"instruction before FROM: {line}"
        flags: dict[str, str] = {}
        operands: list[str] = []
        if rest.startswith("["):
            operands = json.loads(rest)
        else:
            for token in shlex.split(rest, posix=True) if keyword in ("COPY", "ADD") else rest.split():
                if token.startswith("--") and not operands:
                    flag, _, value = token[2:].partition("=")
                    flags[flag] = value
                else:
                    operands.append(token)
        stages[-1].instructions.append(Instruction(keyword, rest, flags, operands))
    return args, stages


def dockerignore_patterns() -> list[tuple[bool, re.Pattern[str]]]:
    """(.dockerignore) patterns in order as (is_exception, regex on the context-relative path)."""
    patterns = []
    for raw in DOCKERIGNORE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        exception = line.startswith("!")
        pattern = line.lstrip("!").strip().strip("/")
        regex = ""
        index = 0
        while index < len(pattern):
            if pattern.startswith("**/", index):
                regex += "(?:.*/)?"
                index += 3
            elif pattern.startswith("**", index):
                regex += ".*"
                index += 2
            elif pattern[index] == "*":
                regex += "[^/]*"
                index += 1
            elif pattern[index] == "?":
                regex += "[^/]"
                index += 1
            elif pattern[index] == "[":
                end = pattern.index("]", index)
                regex += pattern[index : end + 1]
                index = end + 1
            else:
                regex += re.escape(pattern[index])
                index += 1
        patterns.append((exception, re.compile(regex)))
    return patterns


def in_build_context(relative: str) -> bool:
    """Whether Docker sends this context-relative path (moby/patternmatcher: last matching pattern wins,
    a pattern matching a parent directory matches its contents)."""
    parts = relative.strip("/").split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    included = True
    for exception, regex in dockerignore_patterns():
        if any(regex.fullmatch(candidate) for candidate in candidates):
            included = exception
    return included
