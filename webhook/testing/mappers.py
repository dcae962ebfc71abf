"""Keycloak's OIDC protocol mappers, as far as the fake needs them: the claims a client's mappers add.

Rules of this module:
- Only the mapper types the API-key template uses: hardcoded claims (typed by ``jsonType.label``), the
  user's ``id`` property and audiences; a mapper not put in the access token adds nothing.
- A claim name is nested on dots (``\\.`` is a literal dot), as Keycloak does.
- Pure computation on representations: no IO, no HTTP.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["mapped_claims"]


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
