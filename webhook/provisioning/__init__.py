"""Keycloak realm provisioning: realm templates, the admin API client, the outbox jobs and the worker.

The actions write a tenant or an event and its `realm_provisioning_job` row in one transaction; the
worker (`worker.py`) claims due jobs and converges the realm to its template (`templates.py`):
what the service owns and how the live realm differs (`reconcile.py`, pure), the admin calls that
create, converge and read it back (`reconciler.py`) through python-keycloak behind our seam
(`keycloakadmin.py`), retrying with backoff until it is done (configuration errors fail at once).

May import: `core`, `config`, `observability`, `db`, `revocation` (revoking or rotating an API key
ends its tokens through the revocation store) and what lies below it. Never `actions`, the composition root
or `testing`.
"""
