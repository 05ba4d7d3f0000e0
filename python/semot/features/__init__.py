"""Feature distributions: the stored samples (:class:`FeatureDistributions`) and the sampler.

A feature is a weighted point cloud: the reference-space hidden states at the positions where
it fired, weighted by its activation. :class:`FeatureSampler` draws those samples from a
stream of activations; :class:`FeatureDistributions` stores them on disk and hands them to
the distances as :class:`~semot.clouds.PointClouds`.
"""

from semot.features.container import FeatureDistributions
from semot.features.sampling import FeatureSampler

__all__ = ["FeatureDistributions", "FeatureSampler"]
