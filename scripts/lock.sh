#!/usr/bin/env bash
# Regenerate requirements.lock: every runtime dependency of pyproject.toml (and the build backend
# the Dockerfile builds the project with), pinned with the sha256 of each of its files, resolved for
# the image's Python (3.11). The Dockerfile installs it with `pip install --require-hashes`;
# tests/deploy/test_lock.py fails when pyproject.toml and the lock disagree.
# Existing pins are kept unless they no longer fit; `./scripts/lock.sh --upgrade` moves everything to
# the newest allowed versions, `--upgrade-package NAME` one package. Arguments go to pip-compile.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/bootstrap.sh
.venv/bin/python -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' \
  || { echo "lock: resolve with Python 3.11, the image's (PYTHON=python3.11 ./scripts/lock.sh)" >&2; exit 1; }
.venv/bin/pip-compile --quiet --generate-hashes --allow-unsafe --all-build-deps --strip-extras \
  --no-emit-index-url --no-emit-trusted-host --no-emit-find-links --output-file=requirements.lock "$@" pyproject.toml
echo "lock: requirements.lock has $(grep -c '^[a-z0-9]' requirements.lock) pinned packages"
