"""Old import paths of semot's flat layout (0.1), kept working with a DeprecationWarning.

Until the package was laid out by pipeline stage, every module sat at the top
(``semot.sliced``, ``semot.graphs``, ...). :data:`MOVED` maps each old module to the
modules that now hold its public names; importing an old path builds a module with those
names and warns once. Removal is planned for semot 0.3. Private names are not carried over.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import warnings
from collections.abc import Sequence
from types import ModuleType

#: old module -> the modules whose public names it re-exports, the main new home first.
MOVED: dict[str, tuple[str, ...]] = {
    "semot.sliced": ("semot.distances.sliced", "semot.distances.projections"),
    "semot.sinkhorn": ("semot.distances.sinkhorn", "semot.errors"),
    "semot.linkage": ("semot.grouping.linkage",),
    "semot.distributions": ("semot.features.container", "semot.errors"),
    "semot.sampling": ("semot.features.sampling",),
    "semot.graphs": (
        "semot.circuits.graph",
        "semot.circuits.graph_format",
        "semot.circuits.metrics",
        "semot.grouping.metrics",
        "semot.errors",
    ),
    "semot.graph_view": (
        "semot.circuits.layout",
        "semot.circuits.png",
        "semot.circuits.html_page",
    ),
    # candidate_pairs / knn_euclidean / knn_cosine / match: the one search and the one match
    # (device=None there means the numpy search, where torch_backend's default was "cuda").
    "semot.torch_backend": (
        "semot.distances.torch_kernels",
        "semot.matching.search",
        "semot.matching.matcher",
    ),
    "semot.models": ("semot.collection.models",),
    "semot.tokens": ("semot.collection.tokens",),
    "semot.reference": ("semot.collection.reference",),
    "semot.baselines": ("semot.matching.baselines",),
    "semot.planted_benchmark": ("semot.bench.planted",),
    "semot.synthetic_graph": ("semot.synthetic.graph",),
    "semot.demo": ("semot.bench.demo",),
}


def public_names(module: ModuleType) -> list[str]:
    """Return the names a module exports: its ``__all__``, else every name without an underscore."""
    names: Sequence[str] | None = getattr(module, "__all__", None)
    if names is None:
        names = [n for n in vars(module) if not n.startswith("_")]
    return list(names)


def _caller_stacklevel() -> int:
    """Stack level of the first frame outside the import machinery and this module."""
    frame = sys._getframe(1)
    level = 1
    while frame is not None and (
        frame.f_code.co_filename.startswith("<frozen importlib")
        or "importlib" in frame.f_code.co_filename
        or frame.f_code.co_filename == __file__
    ):
        frame = frame.f_back  # type: ignore[assignment]
        level += 1
    return level


class MovedModuleFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds the old module paths of :data:`MOVED` (only when nothing else does)."""

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        """Return a spec for an old path, None for every other name."""
        if fullname not in MOVED:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        """Use the default module object."""
        return None

    def exec_module(self, module: ModuleType) -> None:
        """Fill the old module with the public names of its new homes, and warn."""
        homes = MOVED[module.__name__]
        names: list[str] = []
        for home in homes:
            new = importlib.import_module(home)
            for name in public_names(new):
                if not hasattr(module, name):
                    setattr(module, name, getattr(new, name))
                    names.append(name)
        module.__all__ = names  # type: ignore[attr-defined]
        module.__doc__ = f"Deprecated alias of {', '.join(homes)}."
        warnings.warn(
            f"{module.__name__} is deprecated and will be removed in semot 0.3; "
            f"import from {homes[0]} instead",
            DeprecationWarning,
            stacklevel=_caller_stacklevel(),
        )


def install() -> None:
    """Put the finder at the end of ``sys.meta_path`` (once)."""
    if not any(isinstance(f, MovedModuleFinder) for f in sys.meta_path):
        sys.meta_path.append(MovedModuleFinder())
