"""The choice of distance between two feature distributions, as every stage above names it.

``distance="centroid"`` is the distance between the clouds' activation-weighted means
(:mod:`semot.distances.centroid`; the default, chosen by the method study), ``distance="sliced"``
the sliced Wasserstein distance :math:`SW_2`, ``distance="sinkhorn"`` the debiased Sinkhorn
divergence (square root of the cost, as :mod:`semot.distances.sinkhorn` reports it). It was
called ``metric`` in semot 0.1; in POT, ``metric`` names the ground cost, so the choice of
distance got its own name.
"""

from __future__ import annotations

from typing import Any, Literal

from semot._utils.checks import check_choice, renamed_argument

__all__ = ["DEFAULT_DISTANCE", "DISTANCES", "Distance", "check_distance"]

Distance = Literal["centroid", "sliced", "sinkhorn"]
DISTANCES: tuple[Distance, ...] = ("centroid", "sliced", "sinkhorn")
#: The distance chosen when none is given (see README, "Which method").
DEFAULT_DISTANCE: Distance = "centroid"


def check_distance(
    distance: Any, metric: Any = None, *, stacklevel: int = 4, default: Distance = DEFAULT_DISTANCE
) -> Distance:
    """Return the chosen distance, ``default`` when neither name is given.

    ``metric`` is the deprecated alias of ``distance``: a DeprecationWarning (pointing
    ``stacklevel`` frames up; the default is the caller of the public function that calls this
    one), a TypeError when both are given, a ValueError for anything but the two choices.
    """
    if metric is not None:
        chosen = renamed_argument(
            distance, metric, "distance", "metric",
            reason=" (in POT, 'metric' names the ground cost)", stacklevel=stacklevel,
        )  # fmt: skip
        out: Distance = check_choice(chosen, "metric", DISTANCES)
        return out
    chosen = default if distance is None else distance
    out = check_choice(chosen, "distance", DISTANCES)
    return out
