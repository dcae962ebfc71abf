"""Fixtures shared by the whole suite.

Nothing here (or anywhere in the suite) writes into the checkout: hypothesis keeps its example
database and caches under the system's temporary directory (`HYPOTHESIS_HOME_DIR` to move it), and
`scripts/test.sh` fails the run if the checkout changed.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis.configuration import set_hypothesis_home_dir

from webhook.testing.realkeycloak import RealKeycloak, running_keycloak

#: hypothesis' home (example database, constants cache), by default `.hypothesis/` in the checkout.
HYPOTHESIS_DIR = Path(
    os.environ.get("HYPOTHESIS_HOME_DIR") or Path(tempfile.gettempdir()) / "election-webhook-hypothesis"
)
set_hypothesis_home_dir(HYPOTHESIS_DIR)

SKIP_VARIABLE = "KEYCLOAK_TESTS"  # KEYCLOAK_TESTS=skip: a developer may skip the real-Keycloak tests (never CI)


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    """Async tests run on asyncio (the service's loop); uvloop is exercised by the benchmarks."""
    return "asyncio"


@pytest.fixture(scope="session")
def real_keycloak() -> Iterator[RealKeycloak]:
    """One real Keycloak server (the pinned 26.x) for the whole session; CI may never skip it."""
    if os.environ.get(SKIP_VARIABLE) == "skip":
        if os.environ.get("CI"):
            pytest.fail(f"{SKIP_VARIABLE}=skip is refused in CI: the real-Keycloak tests must run")
        pytest.skip(f"{SKIP_VARIABLE}=skip")
    with running_keycloak() as server:
        yield server


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that uses the real Keycloak must carry the `keycloak` marker (so the bounded job runs it)."""
    for item in items:
        if "real_keycloak" in getattr(item, "fixturenames", ()) and item.get_closest_marker("keycloak") is None:
            raise pytest.UsageError(f"{item.nodeid} uses real_keycloak without @pytest.mark.keycloak")
