"""Keycloak realm provisioning: realm templates, the admin API client, the outbox jobs and the worker.

The actions write a tenant or an event and its `realm_provisioning_job` row in one transaction; the
worker (`worker.py`) claims due jobs and upserts the realm through Keycloak's admin REST API
(`keycloakadmin.py`) from a template (`templates.py`), retrying with backoff until it is done.
"""
