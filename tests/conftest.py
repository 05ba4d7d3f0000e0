from __future__ import annotations

import importlib
import os
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import numpy as np
import pytest

# In CI (CI=true, as .ci/run sets) the optional collection stack must be installed: a missing
# torch / transformer-lens / sae-lens is an error there, never a silent skip.
STRICT_OPTIONAL = os.environ.get("CI", "").lower() in {"1", "true", "yes"} or (
    os.environ.get("SEMOT_REQUIRE_COLLECT") == "1"
)


# Skips CI accepts: a GPU test on a machine without one. Any other skip in CI means something
# CI should have installed (a system package, an extra) is missing: the session fails.
ALLOWED_CI_SKIPS = ("no gpu", "cuda")
_SKIPS: list[tuple[str, str]] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped:
        reason = str(report.longrepr[-1]) if isinstance(report.longrepr, tuple) else ""
        _SKIPS.append((report.nodeid, reason))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if not STRICT_OPTIONAL:
        return
    bad = [(n, r) for n, r in _SKIPS if not any(a in r.lower() for a in ALLOWED_CI_SKIPS)]
    if bad:
        lines = "\n".join(f"  {n}: {r}" for n, r in bad)
        print(f"\nERROR: {len(bad)} test(s) skipped in CI for a reason other than no GPU:\n{lines}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def optional_import(name: str) -> ModuleType:
    """Import an optional dependency: skip the tests without it, except in CI (fail)."""
    if STRICT_OPTIONAL:
        try:
            return importlib.import_module(name)
        except ImportError as e:
            pytest.fail(
                f"{name} is required in CI (pip install '.[test]' installs it): {e}",
                pytrace=False,
            )
    return pytest.importorskip(name)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(12345)


def random_clouds(
    rng: np.random.Generator,
    n_clouds: int,
    d: int,
    sizes: tuple[int, int] = (2, 12),
    dtype: type = np.float64,
    uniform: bool = False,
) -> list[tuple[np.ndarray, np.ndarray]]:
    out = []
    for _ in range(n_clouds):
        n = int(rng.integers(sizes[0], sizes[1] + 1))
        pts = (rng.normal(size=(n, d)) + rng.normal(size=d)).astype(dtype)
        w = np.ones(n) if uniform else rng.random(n) + 0.05
        out.append((pts, w.astype(dtype)))
    return out


# ---------------------------------------------------------------------------------------------
# Headless Chromium (Debian's chromium + chromium-driver, driven by selenium) for the pages
# semot writes. Outside CI a test may skip when chromium is missing; in CI it fails.


def chromium_paths() -> tuple[str, str] | None:
    """Paths of the chromium binary and its chromedriver, or None when either is missing."""
    import shutil

    binary = next(
        (p for p in (shutil.which("chromium"), shutil.which("chromium-browser")) if p), None
    )
    driver = shutil.which("chromedriver") or (
        "/usr/bin/chromedriver" if os.path.exists("/usr/bin/chromedriver") else None
    )
    return (binary, driver) if binary and driver else None


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """One headless Chromium session per test module (selenium WebDriver), with console logs.

    Skips outside CI when chromium / chromium-driver are not installed (Debian:
    ``apt-get install chromium chromium-driver``); in CI a missing browser fails the test.
    """
    found = chromium_paths()
    if found is None:
        message = (
            "chromium and chromium-driver are not installed "
            "(apt-get install chromium chromium-driver)"
        )
        if STRICT_OPTIONAL:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    webdriver = optional_import("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = found[0]
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1400,1000", "--disable-extensions", "--no-first-run"):  # fmt: skip
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(found[1]), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def artifacts_dir(tmp_path: Any) -> str:
    """Where tests save screenshots: $SEMOT_TEST_ARTIFACTS (CI keeps it), else ``tmp_path``."""
    path = os.environ.get("SEMOT_TEST_ARTIFACTS") or str(tmp_path)
    os.makedirs(path, exist_ok=True)
    return path
