"""Atomic files: a file is either its old content or the complete new one, never half.

One writer for every file semot saves (safetensors shards, manifests, checkpoints, block
records, graphs): the bytes go to a temporary file beside the target, are flushed and
fsynced, then renamed over it, and the directory entry is fsynced last.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any


def fsync_directory(directory: Path) -> None:
    """Flush a directory entry to disk (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: Path, chunks: Any) -> tuple[int, str]:
    """Write the byte buffers of ``chunks`` to ``path`` atomically.

    The data goes to ``<path>.tmp-<pid>`` first, is flushed and fsynced, then renamed over
    ``path``; the directory is fsynced last. A failure removes the temporary file and leaves
    ``path`` as it was.

    Returns
    -------
    tuple of (int, str)
        Number of bytes written and their SHA-256 as a hex string.
    """
    path = Path(path)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    digest = hashlib.sha256()
    n_bytes = 0
    try:
        with open(tmp, "wb") as f:
            for chunk in chunks:
                view = memoryview(chunk).cast("B")
                if not view.nbytes:
                    continue
                f.write(view)
                digest.update(view)
                n_bytes += view.nbytes
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_directory(path.parent)
    return n_bytes, digest.hexdigest()


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_write`)."""
    atomic_write(Path(path), [data])


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` as UTF-8 to ``path`` atomically (see :func:`atomic_write`)."""
    atomic_write(Path(path), [text.encode("utf-8")])
