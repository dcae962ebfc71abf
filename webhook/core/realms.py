"""Realms: which Keycloak realms we trust, and how a token's `iss` names one. Pure, no IO.

Rules of this module:
- A realm is trusted because its *name* matches `tenant-<uuid>` or `tenant-<uuid>-event-<uuid>`
  (canonical lowercase UUIDs) or is listed in `TRUSTED_EXTRA_REALMS`; never because a token says so.
- `iss` must equal `<configured issuer base>/realms/<name>` exactly: no normalisation, no
  decoding. Realm names cannot hold `/`, `%`, `?`, `#`, `@` or dots-only segments, so a name that
  passes cannot steer the JWKS URL built from it.
- The JWKS URL is always `<KEYCLOAK_URL>/realms/<validated name>/protocol/openid-connect/certs`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final, Protocol

from webhook.core.reasons import Reason, Rejected

_UUID: Final = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
TENANT_REALM_RE: Final = re.compile(rf"tenant-(?P<tenant>{_UUID})(?:-event-(?P<event>{_UUID}))?")
REALM_NAME_RE: Final = re.compile(r"(?!\.+$)[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
MAX_ISSUER_CHARS: Final = 512
MAX_KNOWN_REALMS: Final = 10000


@dataclass(frozen=True, slots=True)
class Realm:
    """A trusted realm. `tenant_id`/`event_id` come from the name (None for extra realms)."""

    name: str
    tenant_id: str | None
    event_id: str | None


def parse_realm_name(name: str) -> Realm | None:
    """The tenant/event realm this name denotes, or None if it does not follow the pattern."""
    match = TENANT_REALM_RE.fullmatch(name)
    if match is None:
        return None
    return Realm(name, match["tenant"], match["event"])


def tenant_realm_name(tenant_id: str) -> str:
    """The realm of a tenant (`tenant_id` a canonical lowercase UUID)."""
    return f"tenant-{tenant_id}"


def event_realm_name(tenant_id: str, event_id: str) -> str:
    """The voters' realm of an election event."""
    return f"tenant-{tenant_id}-event-{event_id}"


class RealmRegistry(Protocol):
    """Which pattern realms exist in our database (the optional STRICT_REALM_REGISTRY check).

    The verifier asks it after the issuer check and before any key lookup; it may raise `Rejected`
    (e.g. `unknown_realm` when it cannot tell), and answers from a cache.
    """

    async def is_registered(self, realm: Realm) -> bool: ...


class RealmPolicy:
    """Maps an unverified `iss` to a trusted `Realm`, or rejects it with `unknown_issuer`."""

    __slots__ = ("_extra", "_keycloak_url", "_known", "_prefixes")

    def __init__(self, issuer_urls: tuple[str, ...], extra_realms: frozenset[str], keycloak_url: str) -> None:
        self._prefixes = tuple(f"{base}/realms/" for base in issuer_urls)
        self._extra = extra_realms
        self._keycloak_url = keycloak_url
        self._known: dict[str, Realm] = {}

    def realm_for_name(self, name: str) -> Realm | None:
        """The trusted realm with this name, or None. A tenant/event name keeps its tenant binding
        even if it is also listed as an extra realm."""
        realm = self._known.get(name)
        if realm is not None:
            return realm
        realm = parse_realm_name(name)
        if realm is None and name in self._extra:
            realm = Realm(name, None, None)
        if realm is not None:
            if len(self._known) >= MAX_KNOWN_REALMS:
                self._known.clear()
            self._known[name] = realm  # one shared object per realm: cached identities point to it
        return realm

    def realm_from_issuer(self, iss: object) -> Realm:
        """The realm `iss` names; `Rejected(unknown_issuer)` unless it is exactly a trusted one."""
        if type(iss) is not str or len(iss) > MAX_ISSUER_CHARS:
            raise Rejected(Reason.UNKNOWN_ISSUER, "iss missing, not a string or too long")
        for prefix in self._prefixes:
            if iss.startswith(prefix):
                realm = self.realm_for_name(iss[len(prefix) :])
                if realm is not None:
                    return realm
                raise Rejected(Reason.UNKNOWN_ISSUER, "iss names a realm that is not trusted")
        raise Rejected(Reason.UNKNOWN_ISSUER, "iss is not under a configured issuer base")

    def issuer_of(self, realm: Realm) -> str:
        """The first configured issuer for a realm (for display and the dev issuer)."""
        return f"{self._prefixes[0]}{realm.name}"

    def jwks_url(self, realm: Realm) -> str:
        """Where this realm's keys are fetched: the configured internal base, never the token's."""
        return f"{self._keycloak_url}/realms/{realm.name}/protocol/openid-connect/certs"
