"""Fixtures for the tests of the fakes: a served FakeKeycloak and a cheap HTTP client."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator

import httpx
import pytest

from webhook.testing.keycloak import FakeKeycloak


@pytest.fixture(scope="session")
def ssl_context() -> ssl.SSLContext:
    # httpx loads the CA bundle for every client it builds (~50 ms); share one context instead.
    return ssl.create_default_context()


@pytest.fixture
async def http(ssl_context: ssl.SSLContext) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(verify=ssl_context, timeout=5.0) as client:
        yield client


@pytest.fixture
async def keycloak() -> AsyncIterator[FakeKeycloak]:
    async with FakeKeycloak.start() as fake:
        yield fake
