"""Fixtures the unit tests share (no root, no lab)."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator

import pytest

from upcall.kernel import keyring


@pytest.fixture(autouse=True)
def _keep_environment() -> Iterator[None]:
    """client/cli clear os.environ for a root helper; give the test process its own back."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture
def keyctl(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int, object]]:
    """Fake keyring edge: records instantiate/negate instead of calling the kernel."""
    calls: list[tuple[str, int, object]] = []
    monkeypatch.setattr(keyring, "instantiate", lambda s, p: calls.append(("instantiate", s, p)))
    monkeypatch.setattr(keyring, "negate", lambda s, t: calls.append(("negate", s, t)))
    return calls


@pytest.fixture
def thread_id() -> Iterator[int]:
    """The id of a second, live thread of this process (the kernel's pid= is a thread id)."""
    ready, done = threading.Event(), threading.Event()
    tid: list[int] = []

    def body() -> None:
        tid.append(threading.get_native_id())
        ready.set()
        done.wait(10)

    t = threading.Thread(target=body)
    t.start()
    ready.wait(10)
    try:
        yield tid[0]
    finally:
        done.set()
        t.join()
