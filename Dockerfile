# The election webhook image: Hasura auth webhook + action handlers (README "Deploy").
#
# Stage `builder` has the build tools: it installs the dependencies and the project into /opt/venv
# (wheels exist for every dependency on amd64/arm64; the compilers are only a fallback).
# Stage `runtime` is python:3.11-slim without compilers: the venv, the source tree, migrations/,
# a non-root user, a HEALTHCHECK on /healthz.
#
# Layout under /app mirrors the repository on purpose (checked by tests/deploy/test_dockerfile.py):
# - webhook.db.engine finds the Alembic scripts at <package>/../migrations, so `webhook db upgrade` needs
#   /app/migrations next to /app/webhook; the project is installed in editable mode pointing there;
# - `alembic ...` reads [tool.alembic] from /app/pyproject.toml (script_location = migrations/).
#
# Build: docker build -t election-webhook .      Run: see docker-compose.yml.

ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /app
# Dependencies first, from the lock (scripts/lock.sh): every package pinned with the sha256 of its
# files, so a build installs exactly what was tested or fails; pip refuses any dependency the lock
# lacks. This layer is rebuilt only when requirements.lock changes.
COPY requirements.lock ./
RUN pip install --require-hashes -r requirements.lock
COPY pyproject.toml README.md ./
COPY webhook/ webhook/
# The project itself: no dependency resolution, and the build backend is the locked setuptools.
RUN pip install --no-deps --no-build-isolation --editable . \
    && python -c "import webhook.cli"

FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="election-webhook" \
      org.opencontainers.image.description="Hasura auth webhook and action handlers for multi-realm Keycloak" \
      org.opencontainers.image.licenses="AGPL-3.0-only"
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOST=0.0.0.0 \
    PORT=8080
RUN groupadd --system --gid 10001 webhook \
    && useradd --system --uid 10001 --gid webhook --home-dir /nonexistent --no-create-home \
        --shell /usr/sbin/nologin webhook
WORKDIR /app
COPY --from=builder /opt/venv /opt/venv
COPY --from=builder /app /app
COPY migrations/ migrations/
# var/ is where the default DATABASE_URL (SQLite) lives when none is configured; nothing else is writable.
RUN mkdir -p /app/var && chown webhook:webhook /app/var
USER 10001:10001
EXPOSE 8080
# Liveness only (no dependency checked); orchestrators use /readyz for readiness.
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.request; url = 'http://127.0.0.1:%s/healthz' % os.environ.get('PORT', '8080'); sys.exit(0 if urllib.request.urlopen(url, timeout=2).status == 200 else 1)"]
CMD ["webhook", "serve", "--host", "0.0.0.0"]
