"""Matching features across layers: candidates, exact distances, assignment, chains.

:func:`match` is the one entry point (numpy, faiss or torch candidate search); the
baselines in :mod:`semot.matching.baselines` return the same frame.
"""

from semot.matching.matcher import (
    FeatureSet,
    auto_threshold,
    centroids,
    chain,
    default_reg,
    feature_set,
    feature_sets,
    knn_euclidean,
    match,
    matches_from_distances,
    matches_from_pairs,
    pair_distances,
)

__all__ = [
    "FeatureSet",
    "auto_threshold",
    "centroids",
    "chain",
    "default_reg",
    "feature_set",
    "feature_sets",
    "knn_euclidean",
    "match",
    "matches_from_distances",
    "matches_from_pairs",
    "pair_distances",
]
