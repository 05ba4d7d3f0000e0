"""Planted models with known ground truth: features across layers and attribution graphs."""

from semot.synthetic.graph import planted_graph
from semot.synthetic.planted import (
    PlantedConfig,
    PlantedModel,
    PlantedSAE,
    collect_planted,
    make_planted_model,
    save_planted_run,
)

__all__ = [
    "PlantedConfig",
    "PlantedModel",
    "PlantedSAE",
    "collect_planted",
    "make_planted_model",
    "planted_graph",
    "save_planted_run",
]
