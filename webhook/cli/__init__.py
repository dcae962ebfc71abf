"""The `webhook` command: a thin click layer over plain functions (uvicorn's CLI shape).

Commands: serve, dev, check-config, probe-jwks REALM, explain, db upgrade|downgrade|current,
audit list|top|prune, worker, provisioning status|retry|check|secret|render,
sessions revoke|list, api-keys create|list|rotate|revoke. Each reads the settings once; a
bad setting exits with status 2 and a message naming the variable.

One module per command group, each registered on `main` here: `service.py` (serve, dev,
check-config, probe-jwks, explain), `db.py`, `audit.py`, `provisioning.py` (worker and
provisioning), `sessions.py`, `apikeys.py`; `common.py` holds what they share.

May import: everything (the top layer): the composition root `app`, every package below it, and
`dev` (which brings the fakes) only inside the `dev` command. Nothing of the service imports it.
"""

from __future__ import annotations

import click

from webhook import __version__
from webhook.cli.apikeys import api_keys
from webhook.cli.audit import audit
from webhook.cli.db import db
from webhook.cli.provisioning import provisioning, worker
from webhook.cli.service import check_config, dev, explain, probe_jwks, serve
from webhook.cli.sessions import sessions

__all__ = ["main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="webhook")
def main() -> None:
    """Hasura auth webhook and actions for Keycloak multi-realm tenants."""


for _command in (serve, dev, check_config, probe_jwks, explain, db, audit, worker, provisioning, sessions, api_keys):
    main.add_command(_command)
