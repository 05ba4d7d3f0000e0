"""Benchmarks run tiny in smoke mode (CI=true or SEMOT_BENCH_SMOKE=1)."""

from __future__ import annotations

import os

import pytest

SMOKE = bool(os.environ.get("CI") or os.environ.get("SEMOT_BENCH_SMOKE"))


@pytest.fixture(scope="session")
def smoke() -> bool:
    return SMOKE


@pytest.fixture(scope="session")
def real_cache(tmp_path_factory: pytest.TempPathFactory) -> object:
    """One benchmark cache for the real-model tests, so the study reuses the benchmark's SAEs."""
    return tmp_path_factory.mktemp("real-cache")
