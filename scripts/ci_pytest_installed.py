"""pytest plugin used by ``.ci/run`` for the wheel test: asserts ``semot`` comes from the wheel.

Loaded with ``PYTHONPATH=scripts python -m pytest -p ci_pytest_installed ...``. After collection
(when conftest files and test modules have imported whatever they import, possibly after
editing ``sys.path``) it checks that ``semot`` and ``semot._core`` were imported from this
interpreter's site-packages and not from the source tree, and fails the session otherwise.
"""

from __future__ import annotations

import importlib
import sysconfig
from pathlib import Path

import pytest


def _site_dirs() -> list[Path]:
    paths = sysconfig.get_paths()
    return list(dict.fromkeys(Path(paths[k]).resolve() for k in ("purelib", "platlib")))


def _origin(name: str) -> Path:
    module = importlib.import_module(name)
    file = getattr(module, "__file__", None)
    if not file:
        raise pytest.UsageError(f"ci: {name} has no __file__ (namespace package?)")
    return Path(file).resolve()


def _check() -> str:
    sites = _site_dirs()
    lines = []
    for name in ("semot", "semot._core"):
        origin = _origin(name)
        if not any(origin.is_relative_to(site) for site in sites):
            raise pytest.UsageError(
                f"ci: {name} was imported from {origin}, not from site-packages "
                f"({', '.join(map(str, sites))}): the wheel test would test the source tree"
            )
        lines.append(f"{name}: {origin}")
    return "; ".join(lines)


def pytest_report_header() -> str:
    """Show where semot was imported from (and check it)."""
    return "ci wheel test, " + _check()


def pytest_collection_finish(session: pytest.Session) -> None:
    """Check again once the test modules (and their imports) are loaded."""
    _check()
