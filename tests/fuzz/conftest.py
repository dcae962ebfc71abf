"""The service in process (lifespan run here, requests as raw ASGI calls) with its fakes on loopback.

Hypothesis drives synchronous tests; the stack lives in an event loop of its own thread and each
example's requests are submitted to it (`Fuzz.run`). Examples are drawn in the test's thread only.
"""

from __future__ import annotations

from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest

from tests.security.support import AdversarialStack, InThread, adversarial_stack, in_thread

T = TypeVar("T")


@dataclass
class Fuzz:
    thread: InThread
    stack: AdversarialStack

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60) -> T:
        return self.thread.run(coro, timeout)


@pytest.fixture(scope="module")
def fz(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fuzz]:
    with in_thread(adversarial_stack(tmp_path_factory.mktemp("fuzz"), in_process=True)) as running:
        yield Fuzz(running, running.value)
