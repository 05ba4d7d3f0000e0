"""The record that marks a directory as a finished run: ``run.json``.

A run is a directory with one FeatureDistributions per site (a sub-directory each) and
``run.json`` naming them with the run's configuration. :func:`semot.collection.load_run`
reads it; :func:`semot.collection.collect` and the planted collection write it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from semot._utils.atomic import atomic_write_text

__all__ = ["RUN_FILE", "write_run_record"]

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
