"""Fixtures for gssproxy-conf tests: the issue's example file and small helpers."""

from __future__ import annotations

from pathlib import Path

import pytest

from gssproxy_conf import schema
from gssproxy_conf.model import Config

DATA = Path(__file__).parent / "data"
GOLDEN = Path(__file__).parent / "golden"


@pytest.fixture
def example_text() -> str:
    return (DATA / "example.yaml").read_text()


@pytest.fixture
def example(example_text: str) -> Config:
    return schema.load(example_text, "example.yaml")


@pytest.fixture
def rbcd_example() -> Config:
    return schema.load_file(str(DATA / "rbcd.yaml"))
