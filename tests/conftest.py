"""Fixtures shared by the whole suite.

Nothing here (or anywhere in the suite) writes into the checkout: hypothesis keeps its example
database and caches under the system's temporary directory (`HYPOTHESIS_HOME_DIR` to move it), and
`scripts/test.sh` fails the run if the checkout changed.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
from hypothesis.configuration import set_hypothesis_home_dir

#: hypothesis' home (example database, constants cache), by default `.hypothesis/` in the checkout.
HYPOTHESIS_DIR = Path(
    os.environ.get("HYPOTHESIS_HOME_DIR") or Path(tempfile.gettempdir()) / "election-webhook-hypothesis"
)
set_hypothesis_home_dir(HYPOTHESIS_DIR)


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    """Async tests run on asyncio (the service's loop); uvloop is exercised by the benchmarks."""
    return "asyncio"
