"""Matching features across layers: candidates, exact distances, assignment, chains.

:func:`match` is the one entry point (numpy, faiss or torch candidate search). The package is
cut by stage: :mod:`~semot.matching.sets` (what is compared), :mod:`~semot.matching.search`
(the candidate search and the one top-k), :mod:`~semot.matching.matcher` (``match`` and its
exact stage), :mod:`~semot.matching.frame` (the output frame); the baselines in
:mod:`semot.matching.baselines` return the same frame.
"""

from semot.distances.sinkhorn import default_reg
from semot.matching.frame import auto_threshold, chain, matches_from_distances, matches_from_pairs
from semot.matching.matcher import match, pair_distances
from semot.matching.search import (
    CandidateSearch,
    TopK,
    candidate_pairs,
    knn_cosine,
    knn_euclidean,
    smallest_k,
)
from semot.matching.sets import FeatureSet, centroids, feature_set, feature_sets

__all__ = [
    "CandidateSearch",
    "FeatureSet",
    "TopK",
    "auto_threshold",
    "candidate_pairs",
    "centroids",
    "chain",
    "default_reg",
    "feature_set",
    "feature_sets",
    "knn_cosine",
    "knn_euclidean",
    "match",
    "matches_from_distances",
    "matches_from_pairs",
    "pair_distances",
    "smallest_k",
]
