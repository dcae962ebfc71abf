"""The hook's IO side: the JWKS cache fetched from our Keycloak only, the verifier and its verified-token
cache, the realm registry, the hook endpoint Hasura calls, and the JWKS published for Hasura.

Owns: turning a request into a session or a rejection. May import: `core`, `settings`, `observability`,
`db`, `audit`. Never `revocation`, `provisioning`, `actions`, the composition root or `testing`.
"""
