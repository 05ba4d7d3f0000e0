"""Every exception and warning class of semot, in one hierarchy.

Catch :class:`SemotError` for any error that semot raises on purpose about data it was given
(a corrupt file, a malformed graph, an unreachable scheduler); bad arguments raise the usual
built-in :class:`ValueError` / :class:`TypeError` naming the argument, as numpy and scipy do.
Each class below also derives from the built-in exception that describes it, so code that
catches ``ValueError`` or ``ConnectionError`` keeps working.

Filter :class:`SemotWarning` to silence or escalate every warning semot emits::

    import warnings, semot
    warnings.simplefilter("error", semot.errors.SemotWarning)
"""

from __future__ import annotations

__all__ = [
    "ConvergenceWarning",
    "CorruptFileError",
    "DamagedOutputWarning",
    "GraphFormatError",
    "InternalError",
    "SchedulerUnavailableError",
    "SemotError",
    "SemotWarning",
    "UnfiredFeaturesWarning",
]


class SemotError(Exception):
    """Base class of the errors semot raises about the data it was given."""


class CorruptFileError(SemotError, ValueError):
    """A file is not what it claims to be: truncated, malformed or inconsistent.

    The message names the file and says what is wrong with it.
    """


class GraphFormatError(SemotError, ValueError):
    """An attribution-graph file or dict that does not follow the format.

    The message names the offending node (index and ``node_id``) or link (index).
    """


class InternalError(SemotError, RuntimeError):
    """The core could not do what it was asked on this machine, or hit a bug.

    Raised instead of a crash: a thread pool that cannot be started, or a panic in the Rust
    core caught at the binding boundary (a bug; please report it with the message).
    """


class SchedulerUnavailableError(SemotError, ConnectionError):
    """The Dask scheduler cannot be reached, went away, or has had no workers for too long."""


class SemotWarning(UserWarning):
    """Base class of the warnings semot emits."""


class ConvergenceWarning(SemotWarning):
    """Some Sinkhorn problems stopped at ``max_iter`` before reaching ``tol``."""


class UnfiredFeaturesWarning(SemotWarning):
    """Features that never fired (empty samples) were left out of a computation."""


class DamagedOutputWarning(SemotWarning):
    """A resumed output had blocks that no longer match their record; they are computed again."""
