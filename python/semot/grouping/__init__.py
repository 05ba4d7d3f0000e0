"""Grouping: union-find, single-linkage merge trees, and the metrics of a grouping."""

from semot.grouping.linkage import (
    MergeTree,
    connected_components,
    merge_by_threshold,
    single_linkage,
)
from semot.grouping.metrics import (
    agreement,
    canonical_labels,
    coherence,
    compression_ratio,
    group_members,
    silhouette,
)

__all__ = [
    "MergeTree",
    "agreement",
    "canonical_labels",
    "coherence",
    "compression_ratio",
    "connected_components",
    "group_members",
    "merge_by_threshold",
    "silhouette",
    "single_linkage",
]
