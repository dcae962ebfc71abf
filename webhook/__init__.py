"""Hasura auth webhook and action handlers for Keycloak multi-realm election tenants."""

__version__ = "0.1.0"
