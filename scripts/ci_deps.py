#!/usr/bin/env python3
"""Print the Python requirements of semot's dev/CI environments, read from pyproject.toml.

This file is the ONE place that lists which extras the dev/lint environment gets (used by
``.ci/run`` and the ``Makefile``). To add an extra (e.g. ``collect`` with torch), add it to
``pyproject.toml`` and to ``DEV_EXTRAS`` below; the CI venv cache key includes this file, so
the cached venv is rebuilt automatically.

Usage::

    python3 scripts/ci_deps.py extras                 # "test,lint,wheel"  (for maturin -E / pip .[...])
    python3 scripts/ci_deps.py requirements           # build reqs + dependencies + DEV_EXTRAS deps
    python3 scripts/ci_deps.py requirements --extras test --no-build --no-project

Requirement lines are printed verbatim (environment markers included), one per line, for
``pip install -r``; pip evaluates the markers.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

# Extras installed into the dev / CI lint venv, in this order. This is the only list:
# .ci/run and the Makefile read it from here. `test` pulls in `collect` (torch from PyPI, the
# CUDA build on Linux, several GB): the venv cache keeps CI fast once it is built. `wheel` is
# what scripts/build_wheel.sh needs (ziglang, auditwheel) for the manylinux2014 wheel.
DEV_EXTRAS: tuple[str, ...] = ("test", "lint", "wheel")

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("extras", help="print DEV_EXTRAS comma-separated")
    req = sub.add_parser("requirements", help="print requirement lines")
    req.add_argument("--extras", help="comma-separated extras (default: DEV_EXTRAS)")
    req.add_argument("--no-build", action="store_true", help="omit [build-system].requires")
    req.add_argument("--no-project", action="store_true", help="omit [project].dependencies")
    req.add_argument("--pyproject", type=Path, default=ROOT / "pyproject.toml")
    args = parser.parse_args(argv)

    if args.cmd == "extras":
        print(",".join(DEV_EXTRAS))
        return 0

    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        try:
            import tomli as tomllib
        except ModuleNotFoundError:
            sys.exit("ci_deps.py: needs Python >= 3.11 (tomllib) or the 'tomli' package")
    data = tomllib.loads(args.pyproject.read_text(encoding="utf-8"))
    project = data["project"]
    optional: dict[str, list[str]] = project.get("optional-dependencies", {})
    extras = [e for e in args.extras.split(",") if e] if args.extras else list(DEV_EXTRAS)
    missing = [e for e in extras if e not in optional]
    if missing:
        sys.exit(
            f"ci_deps.py: extras {missing} not in [project.optional-dependencies] "
            f"(have {sorted(optional)})"
        )

    lines: list[str] = []
    if not args.no_build:
        lines += data.get("build-system", {}).get("requires", [])
    if not args.no_project:
        lines += project.get("dependencies", [])
    lines += _expand(extras, optional, project["name"])
    seen: set[str] = set()
    for line in lines:
        if line not in seen:
            seen.add(line)
            print(line)
    return 0


def _expand(extras: list[str], optional: dict[str, list[str]], name: str) -> list[str]:
    """Requirement lines of ``extras``, with self-references (``semot[collect]``) expanded.

    A self-reference would make ``pip install -r`` fetch semot itself from PyPI.
    """
    out: list[str] = []
    seen: set[str] = set()
    todo = list(extras)
    while todo:
        extra = todo.pop(0)
        if extra in seen:
            continue
        seen.add(extra)
        for line in optional[extra]:
            head = line.split(";")[0].strip()
            if head.startswith(f"{name}[") and head.endswith("]"):
                todo += [e.strip() for e in head[len(name) + 1 : -1].split(",")]
            else:
                out.append(line)
    return out


if __name__ == "__main__":
    raise SystemExit(main())
