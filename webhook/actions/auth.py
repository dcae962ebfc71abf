"""Who calls an action: Hasura (shared secret), on behalf of whom (the forwarded token, verified again).

Rules of this module:
- Only Hasura may call: exactly one `X-Actions-Secret` header equal to ACTIONS_SECRET, compared with
  `hmac.compare_digest`. Missing, repeated or wrong: 401 `unauthorized`, audited (source `action`,
  reason `missing_token` when absent, `bad_signature` when wrong; the presented value is never kept).
- The caller's forwarded `Authorization` token is verified by the same `Verifier` as the auth hook.
  A rejection is a 401 `unauthorized` carrying the reason code, audited like the hook's.
- `session_variables` are not trusted on their own: they must agree with the token. The role must be
  one the token allows (403 `forbidden`, audited `role_not_allowed`); a tenant id must be the token's
  (403 `tenant-mismatch`, audited `realm_mismatch`); an event or user id must be the token's
  (403 `forbidden`, audited `realm_mismatch` / `claims_invalid`).
"""

from __future__ import annotations

import hmac
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

from pydantic import SecretStr
from starlette.datastructures import Headers

from webhook.actions.errors import ActionError, Code
from webhook.audit.record import AuditSink, RejectionRecord, token_digest
from webhook.auth.verifier import TokenRejected, Verifier
from webhook.core.hookrequest import MAX_FORWARDED_CHARS, HookRequest, bearer_token
from webhook.core.reasons import Reason, Rejected
from webhook.core.session import CLAIM_EVENT, CLAIM_TENANT, CLAIM_USER, Identity
from webhook.core.token import TokenFacts

SECRET_HEADER: Final = "x-actions-secret"  # noqa: S105 - a header name, not a secret
ROLE_VARIABLE: Final = "x-hasura-role"


@dataclass(frozen=True, slots=True)
class CallContext:
    """What Hasura forwarded about the client (untrusted; for the audit and the log only)."""

    request_id: str
    client_ip: str | None
    user_agent: str | None

    @classmethod
    def from_headers(cls, headers: Headers) -> CallContext:
        """Hasura forwards the client's headers, and the client's User-Agent as X-Forwarded-User-Agent."""
        ip = (headers.get("x-forwarded-for") or "").split(",", 1)[0].strip() or headers.get("x-real-ip")
        agent = headers.get("x-forwarded-user-agent") or headers.get("user-agent")
        request_id = headers.get("x-request-id") or uuid.uuid4().hex
        return cls(
            request_id=request_id[:MAX_FORWARDED_CHARS],
            client_ip=ip[:MAX_FORWARDED_CHARS] if ip else None,
            user_agent=agent[:MAX_FORWARDED_CHARS] if agent else None,
        )


@dataclass(frozen=True, slots=True)
class Caller:
    """A verified caller: the token's identity and the session's role (one the token allows)."""

    identity: Identity
    role: str
    token_sha256: str


class ActionAuth:
    """Checks the shared secret and the caller's token; audits every refusal."""

    def __init__(
        self,
        *,
        secret: SecretStr | None,
        verifier: Verifier,
        audit: AuditSink,
        wall_clock: Callable[[], float],
    ) -> None:
        self._secret = secret.get_secret_value().encode("utf-8") if secret is not None else None
        self._verifier = verifier
        self._audit = audit
        self._wall_clock = wall_clock

    def _record(
        self,
        context: CallContext,
        reason: Reason,
        detail: str,
        *,
        token_sha256: str | None = None,
        realm: str | None = None,
        facts: TokenFacts | None = None,
    ) -> None:
        self._audit.submit(
            RejectionRecord(
                at=self._wall_clock(),
                reason=reason,
                detail=detail,
                source="action",
                hook_mode="POST",
                token_sha256=token_sha256,
                realm=realm,
                facts=facts or TokenFacts(),
                client_ip=context.client_ip,
                user_agent=context.user_agent,
                request_id=context.request_id,
            )
        )

    def check_secret(self, headers: Headers, context: CallContext) -> None:
        """Pass if the request carries Hasura's shared secret; else audit and raise 401."""
        presented = headers.getlist(SECRET_HEADER)
        expected = self._secret
        if len(presented) == 1 and expected is not None:
            if hmac.compare_digest(presented[0].encode("utf-8", "surrogateescape"), expected):
                return
            self._record(context, Reason.BAD_SIGNATURE, "X-Actions-Secret does not match ACTIONS_SECRET")
        elif expected is None:
            self._record(context, Reason.MISSING_TOKEN, "ACTIONS_SECRET is not configured: actions are disabled")
        elif presented:
            self._record(context, Reason.MALFORMED_TOKEN, "more than one X-Actions-Secret header")
        else:
            self._record(context, Reason.MISSING_TOKEN, "no X-Actions-Secret header (the caller is not Hasura)")
        raise ActionError(Code.UNAUTHORIZED, "unauthorized: this endpoint only answers Hasura")

    async def caller(self, headers: Headers, session: Mapping[str, str], context: CallContext) -> Caller:
        """The verified caller; 401 if the token is rejected, 403 if the session disagrees with it."""
        authorizations = headers.getlist("authorization")
        request = HookRequest(
            "POST", authorization=authorizations[0] if authorizations else None, ambiguous=len(authorizations) > 1
        )
        try:
            token = bearer_token(request)
            if token is None:
                raise Rejected(Reason.MISSING_TOKEN, "no Authorization header forwarded")
            identity = await self._verifier.verify(token)
        except TokenRejected as exc:
            realm = exc.realm.name if exc.realm is not None else None
            self._record(context, exc.reason, exc.detail, token_sha256=exc.digest.hex(), realm=realm, facts=exc.facts)
            raise self._unauthorized(exc.reason) from None
        except Rejected as exc:
            self._record(context, exc.reason, exc.detail, token_sha256=token_digest(request.authorization))
            raise self._unauthorized(exc.reason) from None
        digest = token_digest(token) or ""
        self._agree(identity, session, context, digest)
        return Caller(identity, session[ROLE_VARIABLE], digest)

    @staticmethod
    def _unauthorized(reason: Reason) -> ActionError:
        return ActionError(Code.UNAUTHORIZED, f"the caller's token was rejected ({reason.value})", reason=reason.value)

    def _agree(self, identity: Identity, session: Mapping[str, str], context: CallContext, digest: str) -> None:
        def refuse(reason: Reason, detail: str, code: Code, message: str) -> ActionError:
            self._record(context, reason, detail, token_sha256=digest, realm=identity.realm.name)
            return ActionError(code, message)

        role = session.get(ROLE_VARIABLE)
        if not role or role not in identity.allowed_roles:
            raise refuse(
                Reason.ROLE_NOT_ALLOWED,
                "session role is not in the token's allowed roles",
                Code.FORBIDDEN,
                "the session's role is not allowed by the caller's token",
            )
        tenant = session.get(CLAIM_TENANT)
        if tenant is not None and tenant.lower() != identity.tenant_id.lower():
            raise refuse(
                Reason.REALM_MISMATCH,
                "session tenant is not the token's tenant",
                Code.TENANT_MISMATCH,
                "the session's tenant is not the caller's token's tenant",
            )
        event = session.get(CLAIM_EVENT)
        if event is not None and event.lower() != (identity.event_id or "").lower():
            raise refuse(
                Reason.REALM_MISMATCH,
                "session event is not the token's event",
                Code.FORBIDDEN,
                "the session's event is not the caller's token's event",
            )
        user = session.get(CLAIM_USER)
        if user is not None and user != identity.user_id:
            raise refuse(
                Reason.CLAIMS_INVALID,
                "session user is not the token's user",
                Code.FORBIDDEN,
                "the session's user is not the caller's token's user",
            )


__all__ = ["ROLE_VARIABLE", "SECRET_HEADER", "ActionAuth", "CallContext", "Caller"]
