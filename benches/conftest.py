"""Benchmarks run tiny in smoke mode (CI=true or SEMOT_BENCH_SMOKE=1)."""

from __future__ import annotations

import os

import pytest

SMOKE = bool(os.environ.get("CI") or os.environ.get("SEMOT_BENCH_SMOKE"))


@pytest.fixture(scope="session")
def smoke() -> bool:
    return SMOKE
