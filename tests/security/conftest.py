"""One adversarial stack per test module: starting it (fake Keycloak, attacker host, uvicorn, the
SQLite audit database and its migration) costs more than most attacks, and the attacks do not
change what the next one sees (each asserts on what *it* caused)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.security.support import AdversarialStack, adversarial_stack


@pytest.fixture(scope="module")
async def sec(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[AdversarialStack]:
    async with adversarial_stack(tmp_path_factory.mktemp("security")) as stack:
        yield stack
        # every token the module's attacks sent went through joserfc too (tests/jwsoracle.py)
        assert stack.oracle_checks > 0
