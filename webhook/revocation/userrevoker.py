"""Revoking every token of one user of a realm issued up to a moment: operators and API keys.

Rules of this module:
- A user revocation is a `session_revocation` row with a `sub` and a cutoff `before` (tokens with
  `iat <= before` are refused, `session_revoked`), kept `max_token_lifetime + leeway` seconds: the row
  `webhook sessions revoke --user` writes, stored by the same `revocationstore.insert` (on PostgreSQL
  the insert and its NOTIFY commit together), so every replica holds it within a second of the commit.
- `store()` writes into the caller's open transaction: the caller decides when it commits (the API key
  service commits it together with its `api_key_event` row, after Keycloak answered). `hold()` then
  lets this process refuse the tokens at once, before its own NOTIFY or poll comes back.
- Rows are `source = operator` (the table's sources are backchannel and operator); who asked is in the
  caller's own record (`api_key_event` for API keys) and in the `revocations.taken` log line.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from webhook.revocation.active import Revocation
from webhook.revocation.store import insert


@dataclass(frozen=True, slots=True)
class UserRevoker:
    """See the module rules. `hold`: this process's `RevocationService.hold` (None in the CLI)."""

    max_token_lifetime: float
    leeway: float
    wall_clock: Callable[[], float]
    hold: Callable[[Revocation], object] | None = None
    log: Any = None

    def revocation(self, realm: str, sub: str, *, before: float | None = None) -> Revocation:
        """Every token of `sub` in `realm` issued up to `before` (default: now)."""
        now = self.wall_clock()
        return Revocation(
            realm=realm,
            sid=None,
            sub=sub,
            before=now if before is None else before,
            expires_at=now + self.max_token_lifetime + self.leeway,
            created_at=now,
        )

    async def store(self, session: AsyncSession, revocation: Revocation) -> None:
        """Insert `revocation` in the caller's transaction (its NOTIFY goes out on the commit)."""
        await insert(session, revocation, source="operator", jti=None)

    def held(self, revocation: Revocation, *, why: str) -> None:
        """After the commit: this process refuses the covered tokens at once; logged with `why`."""
        if self.hold is not None:
            self.hold(revocation)
        if self.log is not None:
            self.log.info("revocations.taken", realm=revocation.realm, sub=revocation.sub, source=why)


__all__ = ["UserRevoker"]
