"""One adversarial stack per test module: starting it (fake Keycloak, attacker host, uvicorn, the
SQLite audit database and its migration) costs more than most attacks, and the attacks do not
change what the next one sees (each asserts on what *it* caused). Rejections are not cached, so
each mode of each attack is decided by the verifier (`expect_rejected` checks it)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.security.support import AdversarialStack, adversarial_stack


@pytest.fixture(scope="module")
async def sec(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[AdversarialStack]:
    # no cached rejections: the POST half of each attack must reach the verifier like the GET half
    async with adversarial_stack(tmp_path_factory.mktemp("security"), TOKEN_CACHE_REJECTIONS_SIZE="0") as stack:
        yield stack
        # every token the module's attacks sent went through joserfc too (tests/jwsoracle.py)
        assert stack.oracle_checks > 0
