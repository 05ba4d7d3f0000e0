"""The record that marks a directory as a finished run: ``run.json``.

A run is a directory with one FeatureDistributions per site (a sub-directory each) and
``run.json`` naming them with the run's configuration: ``{"sites": {name: sub-directory},
"config": {...}}``. :func:`read_run_record` reads it (for :func:`semot.collection.load_run`);
:func:`semot.collection.collect` and the planted collection write it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from semot._utils.atomic import atomic_write_text
from semot._utils.jsondepth import json_depth_problem
from semot.errors import CorruptFileError

__all__ = ["RUN_FILE", "read_run_record", "site_name", "write_run_record"]

#: The run record's file name inside a run directory.
RUN_FILE = "run.json"


def write_run_record(root: Path, site_dirs: Mapping[str, str], config: Mapping[str, Any]) -> None:
    """Write ``run.json``, which marks ``root`` a finished run (see ``semot.collection.load_run``).

    Parameters
    ----------
    root : Path
        The run directory.
    site_dirs : mapping of str to str
        Site name to the sub-directory (of ``root``) holding its FeatureDistributions.
    config : mapping
        The run's configuration (JSON-able), recorded as it is.
    """
    record = {"sites": dict(site_dirs), "config": config}
    atomic_write_text(root / RUN_FILE, json.dumps(record, indent=1, sort_keys=True))


def _plain_name(x: Any) -> bool:
    return (
        isinstance(x, str)
        and x not in ("", ".", "..")
        and "/" not in x
        and "\\" not in x
        and "\0" not in x
        and not Path(x).is_absolute()
    )


def read_run_record(root: Path) -> dict[str, Path]:
    """Read ``root/run.json``: the directory of each site, checked to lie inside ``root``.

    Parameters
    ----------
    root : Path
        The run directory (it has a ``run.json``).

    Returns
    -------
    dict of str to Path
        Site name to its FeatureDistributions directory, in the record's order.

    Raises
    ------
    CorruptFileError
        Naming ``run.json`` and the entry: not JSON, nested too deep, no ``"sites"`` object,
        or a site whose name or directory is not a plain name in ``root`` (absolute, with
        ``..`` or a path separator) or is a symbolic link out of ``root``.
    """
    run_file = root / RUN_FILE
    raw = run_file.read_bytes()
    deep = json_depth_problem(raw)
    if deep is not None:
        raise CorruptFileError(f"{run_file}: unreadable run record ({deep})")
    try:
        run = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CorruptFileError(f"{run_file}: unreadable run record ({e})") from None
    sites = run.get("sites") if isinstance(run, dict) else None
    if not isinstance(sites, dict):
        raise CorruptFileError(f"{run_file}: unreadable run record (no 'sites' object)")
    base = root.resolve()
    out: dict[str, Path] = {}
    for name, sub in sites.items():
        # Older records list only the names; the directory is then the name.
        sub = name if sub is None else sub
        for what, value in (("name", name), ("directory", sub)):
            if not _plain_name(value):
                raise CorruptFileError(
                    f"{run_file}: site {name!r}: {what} {value!r} is not a plain name inside "
                    "the run directory (absolute, '..' and path separators are refused)"
                )
        path = root / sub
        target = path.resolve()
        if not target.is_relative_to(base):
            raise CorruptFileError(
                f"{run_file}: site {name!r}: {path} is a symbolic link to {target}, outside "
                f"the run directory {root}"
            )
        out[name] = path
    return out


def site_name(sites: Mapping[str, Any], key: str, what: str) -> str:
    """Return the name of the site ``key`` names: a site name, a hook name, or a layer number.

    Parameters
    ----------
    sites : mapping of str to FeatureDistributions
        A loaded run (``semot.collection.load_run``).
    key : str
        The site's name, its ``metadata["hook"]``, or a number that appears in exactly one
        site name (``"7"`` for ``layer7`` or ``model.layers.7``).
    what : str
        The argument or flag named in the error.

    Raises
    ------
    ValueError
        When no site (or, for a number, more than one) matches; lists the run's sites.
    """
    key = str(key)
    if key in sites:
        return key
    hooks = {str(getattr(fd, "metadata", {}).get("hook")): name for name, fd in sites.items()}
    if key in hooks:
        return hooks[key]
    if re.fullmatch(r"\d+", key):
        layer = [n for n in sites if re.search(rf"(^|\D){key}(\D|$)", n)]
        if len(layer) == 1:
            return layer[0]
    raise ValueError(f"{what} {key!r}: no such site; this run has {sorted(sites)}")
