"""Instant session revocation: the active revocations held in memory (pure), their PostgreSQL/SQLite
store with NOTIFY fan-out, the service that keeps every replica in step, and the back-channel logout
endpoint Keycloak calls.

Owns: "this session ended". May import: `core`, `settings`, `observability`, `db`, `audit`, `auth`
(the logout token is verified by the access-token verifier). Never `provisioning` or `actions`.
"""
