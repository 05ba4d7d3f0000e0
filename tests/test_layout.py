"""The package's layout rules that the import-layer contract (lint-imports) cannot see.

- No module uses another module's private name (``from semot.x import _helper``, or
  ``module._helper`` / ``Class._helper`` on something imported from semot): a private name
  is free to change with its own module only. The private *modules* (``semot._core``,
  ``semot._utils.*``, ``semot._compat``) are imported by name; their public names are fine.
- No module below the root imports names from the root package ``semot`` (the public facade
  sits on top of every layer) except ``__version__``; subpackages and ``_core`` are modules.
- Old flat import paths still work, warn, and give the same objects as the new paths.
"""

from __future__ import annotations

import ast
import importlib
import sys
import warnings
from pathlib import Path

import pytest

import semot
from semot import _compat

PACKAGE = Path(semot.__file__).resolve().parent
ROOT_IMPORTS_ALLOWED = {"_core", "__version__"}


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_module(dotted: str) -> bool:
    rel = Path(*dotted.split("."))
    base = PACKAGE.parent / rel
    return (
        base.with_suffix(".py").exists()
        or (base / "__init__.py").exists()
        or any(PACKAGE.parent.glob(str(rel) + ".*.so"))
    )


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _resolve(module: str | None, level: int, here: str, is_package: bool) -> str:
    if level == 0:
        return module or ""
    base = here.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join([*base, module] if module else base)


def violations(path: Path) -> list[str]:
    """Private names of other semot modules used in ``path``, as readable lines."""
    return source_violations(
        path.read_text(encoding="utf-8"), _module_name(path), path.name == "__init__.py"
    )


def source_violations(source: str, here: str, is_package: bool) -> list[str]:
    """Private names of other semot modules used by module ``here`` with this source."""
    tree = ast.parse(source, here)
    imported: dict[str, str] = {}  # local name -> the semot module or object it refers to
    out: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            src = _resolve(node.module, node.level, here, is_package)
            if src != "semot" and not src.startswith("semot."):
                continue
            for alias in node.names:
                target = f"{src}.{alias.name}"
                local = alias.asname or alias.name
                imported[local] = target
                if (
                    src == "semot"
                    and here != "semot"
                    and alias.name not in ROOT_IMPORTS_ALLOWED
                    and not _is_module(target)
                ):
                    out.append(
                        f"{here}:{node.lineno}: imports {alias.name!r} from the root package"
                    )
                if _private(alias.name) and not _is_module(target):
                    out.append(f"{here}:{node.lineno}: imports private {target}")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("semot") and alias.asname:
                    imported[alias.asname] = alias.name
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and _private(node.attr)
            and isinstance(node.value, ast.Name)
            and node.value.id in imported
        ):
            target = imported[node.value.id]
            if not _is_module(f"{target}.{node.attr}"):
                out.append(f"{here}:{node.lineno}: uses private {target}.{node.attr}")
    return out


def test_no_module_uses_another_modules_private_names():
    found = [line for path in _modules() for line in violations(path)]
    assert not found, "\n".join(found)


def test_the_checker_sees_what_it_forbids():
    # The rule above must be able to fail: feed it the patterns it is meant to catch.
    sample = (
        "from semot.distances.sliced import _method\n"
        "from semot import match\n"
        "from semot.clouds import PointClouds\n"
        "from semot.matching import matcher as m\n"
        "x = PointClouds._secret\n"
        "y = m._helper\n"
        "from semot import _core\n"
        "from semot._utils import checks\n"
        "from .matcher import _private_helper\n"
    )
    found = source_violations(sample, "semot.matching.probe", is_package=False)
    assert len(found) == 5, found
    assert any("private semot.matching.matcher._private_helper" in f for f in found)
    assert any("private semot.distances.sliced._method" in f for f in found)
    assert any("'match' from the root package" in f for f in found)
    assert any("PointClouds._secret" in f for f in found)
    assert any("matcher._helper" in f for f in found)


@pytest.mark.parametrize("old", sorted(_compat.MOVED))
def test_old_import_paths_warn_and_give_the_same_objects(old):
    sys.modules.pop(old, None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        module = importlib.import_module(old)
    assert any(issubclass(w.category, DeprecationWarning) for w in caught), old
    homes = [importlib.import_module(h) for h in _compat.MOVED[old]]
    assert module.__all__, old
    for name in module.__all__:
        assert any(getattr(h, name, None) is getattr(module, name) for h in homes), (old, name)
