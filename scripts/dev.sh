#!/usr/bin/env bash
# From a fresh clone: install into .venv and run the service in dev mode, with a built-in dev
# issuer on loopback (NOT FOR PRODUCTION). Prints a ready token and a curl line.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/bootstrap.sh
exec .venv/bin/webhook dev "$@"
