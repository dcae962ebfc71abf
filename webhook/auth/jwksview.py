"""The aggregated JWKS (`GET /jwks`) for deployments that run Hasura in JWT mode. Pure.

Rules of this module:
- Only public signing keys: the `public_jwk` kept by `keys.parse_jwks` (no `d`/`p`/`q`..., no
  `enc` keys), each `kid` once. A `kid` published by two realms is ambiguous and left out of the
  union (Hasura would pick either key for either realm's tokens).
- The answer carries `Cache-Control: max-age=N`, never `no-cache`/`no-store`: with those Hasura
  refetches every second (it polls the endpoint once a second and refetches when expired).
- Hasura JWT mode cannot bind a key to its realm (CE has one `jwk_url` and at most one
  `issuer`), so any trusted realm's key verifies any realm's token there. Webhook mode is stricter.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

from webhook.core.keys import RealmKeys


def union_jwks(realms: Mapping[str, RealmKeys]) -> dict[str, Any]:
    """The union of the realms' public signing keys, each `kid` once (ambiguous kids dropped)."""
    counts = Counter(kid for keys in realms.values() for kid in keys.by_kid)
    keys = [
        dict(key.public_jwk)
        for name in sorted(realms)
        for kid, key in sorted(realms[name].by_kid.items())
        if counts[kid] == 1
    ]
    return {"keys": keys}
