"""Checkpoints of a :func:`semot.collect` run: what it has streamed so far, on disk.

A checkpoint lives in ``<out>/checkpoint/`` and is two files:

- ``state-<generation>.safetensors``: every sampler's state (``<site index>/<name>``) and
  the fitted reference map's arrays (``reference/<name>``);
- ``checkpoint.json``, the *pointer*: the generation, the progress counters, the run's
  configuration, and the name, size and SHA-256 of the state file.

Both are written atomically (:mod:`semot._utils.atomic`), the state file first and the
pointer last, and older state files are deleted only after the pointer names the new one:
a run killed at any instant leaves a pointer to a complete state file, and a state file
that does not match its pointer's checksum is refused (:class:`~semot.errors.CorruptFileError`).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from semot._utils.atomic import atomic_write_text
from semot._utils.jsondepth import json_depth_problem
from semot._utils.safetensors import read_safetensors, write_safetensors
from semot.collection.models import Site
from semot.collection.reference import ReferenceMap
from semot.errors import CorruptFileError

CHECKPOINT_DIR = "checkpoint"
CHECKPOINT_FILE = "checkpoint.json"

_REFERENCE_PREFIX = "reference/"

Arrays = dict[str, np.ndarray[Any, Any]]


@dataclass
class Progress:
    """How far a run has read its token stream.

    Attributes
    ----------
    batches_done : int
        Batches of the stream whose tokens were offered to the samplers.
    tokens_done : int
        Tokens read (ignored token ids included).
    tokens_counted : int
        Tokens offered to the samplers (ignored token ids excluded).
    n_sequences : int
        Sequences touched: one more than the largest sequence index read.
    """

    batches_done: int = 0
    tokens_done: int = 0
    tokens_counted: int = 0
    n_sequences: int = 0


@dataclass
class SavedState:
    """The content of a checkpoint, as :meth:`Checkpoint.read` returns it.

    Attributes
    ----------
    generation : int
        Number of the checkpoint (0 for the first one of a run).
    progress : Progress
        Counters at the time of the checkpoint.
    config : dict
        The configuration of the run that wrote it (see :func:`config_differences`).
    sampler_states : list of dict of str to numpy.ndarray
        One ``FeatureSampler.state_dict()`` per site, in site order.
    reference_arrays : dict of str to numpy.ndarray
        The arrays of the run's :class:`~semot.collection.reference.ReferenceMap`.
    """

    generation: int
    progress: Progress
    config: dict[str, Any]
    sampler_states: list[Arrays]
    reference_arrays: Arrays

    def reference_map(self) -> ReferenceMap:
        """Rebuild the reference map of the checkpointed run from its record and arrays."""
        return ReferenceMap.from_parts(self.config["reference"], self.reference_arrays)


class Checkpoint:
    """The checkpoint directory of one run directory, and the next generation to write.

    Parameters
    ----------
    root : path
        The run directory (``out`` of :func:`semot.collect`).
    """

    def __init__(self, root: Path) -> None:
        self.dir = root / CHECKPOINT_DIR
        self.pointer = self.dir / CHECKPOINT_FILE
        self.next_generation = 0

    def exists(self) -> bool:
        """Whether a checkpoint pointer is on disk."""
        return self.pointer.is_file()

    def read(self) -> SavedState:
        """Read and verify the checkpoint; later :meth:`write` calls continue its generations.

        Raises
        ------
        CorruptFileError
            For an unreadable pointer, a missing state file, or a state file whose size or
            SHA-256 differs from the pointer's record.
        """
        try:
            raw = self.pointer.read_bytes()
            deep = json_depth_problem(raw)
            if deep is not None:
                raise ValueError(deep)
            info = json.loads(raw.decode("utf-8"))
        except (OSError, ValueError) as e:  # JSONDecodeError and UnicodeDecodeError included
            raise CorruptFileError(f"{self.pointer}: unreadable checkpoint ({e})") from None
        if not isinstance(info, dict) or "state_file" not in info:
            raise CorruptFileError(f"{self.pointer}: not a semot checkpoint")
        name = info["state_file"]
        if not isinstance(name, str) or Path(name).name != name or name in ("", ".", ".."):
            raise CorruptFileError(
                f"{self.pointer}: state_file {name!r} is not a plain file name in {self.dir}"
            )
        state_path = self.dir / name
        if not state_path.is_file():
            raise CorruptFileError(f"{state_path}: checkpoint state file is missing")
        data = state_path.read_bytes()
        if len(data) != info.get("bytes") or hashlib.sha256(data).hexdigest() != info.get("sha256"):
            raise CorruptFileError(
                f"{state_path}: checkpoint state does not match its checksum (corrupt file)"
            )
        arrays, _ = read_safetensors(state_path, mmap=False)
        saved = SavedState(
            generation=int(info["generation"]),
            progress=Progress(
                batches_done=int(info["batches_done"]),
                tokens_done=int(info["tokens_done"]),
                tokens_counted=int(info["tokens_counted"]),
                n_sequences=int(info["n_sequences"]),
            ),
            config=info["config"],
            sampler_states=_split_sampler_states(arrays),
            reference_arrays={
                name.removeprefix(_REFERENCE_PREFIX): value
                for name, value in arrays.items()
                if name.startswith(_REFERENCE_PREFIX)
            },
        )
        _upgrade_reference_record(saved)
        self.next_generation = saved.generation + 1
        return saved

    def write(
        self,
        progress: Progress,
        config: Mapping[str, Any],
        sampler_states: Sequence[Mapping[str, np.ndarray[Any, Any]]],
        reference_arrays: Mapping[str, Any],
    ) -> None:
        """Write the next generation: the state file, then the pointer, then drop older states.

        Parameters
        ----------
        progress : Progress
            The counters after the last batch offered to the samplers.
        config : mapping
            The run's configuration (JSON-able; recorded and compared on resume).
        sampler_states : sequence of mapping
            One ``FeatureSampler.state_dict()`` per site, in site order.
        reference_arrays : mapping
            The arrays of the run's reference map.
        """
        self.dir.mkdir(parents=True, exist_ok=True)
        generation = self.next_generation
        arrays: Arrays = {}
        for i, state in enumerate(sampler_states):
            for name, value in state.items():
                arrays[f"{i}/{name}"] = value
        for name, value in reference_arrays.items():
            arrays[f"{_REFERENCE_PREFIX}{name}"] = np.asarray(value)
        state_file = f"state-{generation:06d}.safetensors"
        n_bytes, sha256 = write_safetensors(self.dir / state_file, arrays)
        info = {
            "generation": generation,
            "batches_done": progress.batches_done,
            "tokens_done": progress.tokens_done,
            "tokens_counted": progress.tokens_counted,
            "n_sequences": progress.n_sequences,
            "config": json.loads(json.dumps(config)),
            "state_file": state_file,
            "bytes": n_bytes,
            "sha256": sha256,
        }
        atomic_write_text(self.pointer, json.dumps(info, indent=1, sort_keys=True))
        for old in self.dir.glob("state-*.safetensors"):
            if old.name != state_file:
                old.unlink(missing_ok=True)
        self.next_generation = generation + 1

    def remove(self) -> None:
        """Delete the checkpoint directory (a finished or replaced run needs it no more)."""
        shutil.rmtree(self.dir, ignore_errors=True)


def _split_sampler_states(arrays: Mapping[str, np.ndarray[Any, Any]]) -> list[Arrays]:
    """Group ``<site index>/<name>`` arrays into one state dict per site, in site order."""
    states: dict[int, Arrays] = {}
    for name, value in arrays.items():
        if name.startswith(_REFERENCE_PREFIX):
            continue
        index, _, key = name.partition("/")
        states.setdefault(int(index), {})[key] = value
    return [states.get(i, {}) for i in range(max(states, default=-1) + 1)]


def _upgrade_reference_record(saved: SavedState) -> None:
    """Bring the reference record of a checkpoint written by semot 0.1 up to date.

    Its reduced dimension was stored under ``k``, now ``n_components``; the reference
    fingerprint hashes that record, so it is recomputed from the (checksummed) arrays, which
    lets such a run resume under this version.
    """
    record = saved.config.get("reference")
    if not isinstance(record, dict) or "k" not in record:
        return
    refmap = saved.reference_map()
    saved.config["reference"] = json.loads(json.dumps(refmap.to_metadata()))
    saved.config["reference_fingerprint"] = refmap.fingerprint()


# ---------------------------------------------------------------- what identifies a run
def array_fingerprint(x: Any) -> str:
    """First 16 hex digits of the SHA-256 of an array's values (as float32 for tensors)."""
    arr = x.detach().float().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)
    return hashlib.sha256(np.ascontiguousarray(arr).tobytes()).hexdigest()[:16]


def encoder_fingerprint(site: Site) -> str:
    """Hash of the weights of the module whose method ``site.encode`` is ("unknown" if none)."""
    owner = getattr(site.encode, "__self__", None)
    if owner is not None and hasattr(owner, "state_dict"):
        h = hashlib.sha256()
        for name, value in sorted(owner.state_dict().items()):
            h.update(name.encode())
            h.update(array_fingerprint(value).encode())
        return h.hexdigest()[:16]
    return "unknown"


def model_fingerprint(model: Any) -> str:
    """Hash of the model's parameter names, shapes and sums (cheap on large models)."""
    if not hasattr(model, "state_dict"):
        return "unknown"
    h = hashlib.sha256()
    for name, value in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(str(tuple(value.shape)).encode())
        h.update(repr(float(value.detach().double().sum())).encode())
    return h.hexdigest()[:16]


def config_differences(
    old: Mapping[str, Any], new: Mapping[str, Any], prefix: str = ""
) -> list[str]:
    """Describe every entry where two run configurations differ, nested keys joined by dots.

    Parameters
    ----------
    old : mapping
        The configuration recorded in a checkpoint.
    new : mapping
        The configuration of the run about to resume it (after a JSON round trip, so that
        tuples compare equal to the lists they are stored as).
    prefix : str
        Prepended to every key (used for the recursion).

    Returns
    -------
    list of str
        One line per differing leaf, ``"<key>: checkpoint has <old>, this run has <new>"``, in
        sorted key order; empty when the configurations agree.
    """
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            out += config_differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}: checkpoint has {a!r}, this run has {b!r}")
    return out
