"""Grouping: union-find, single-linkage merge trees, and the metrics of a grouping."""

from semot.grouping.linkage import (
    MergeTree,
    connected_components,
    merge_by_threshold,
    single_linkage,
)

__all__ = ["MergeTree", "connected_components", "merge_by_threshold", "single_linkage"]
