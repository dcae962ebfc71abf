"""Hasura action handlers: `POST /actions/{name}` (see `endpoint.py`), one module per action.

Adding an action: write `webhook/actions/<noun>.py` with an async handler
`(ActionContext, ActionCall, Caller) -> dict` and register it in `registry.default_registry()`
(one line); declare it in `hasura_metadata/actions.graphql` and `actions.yaml`.

May import: everything below the composition root (`core`, `settings`, `observability`, `db`, `audit`,
`auth`, `revocation`, `provisioning`). Never `app`, `cli`, `dev` or `testing`.
"""
