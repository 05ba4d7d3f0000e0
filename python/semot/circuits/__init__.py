"""Attribution-graph circuits: reading and writing graphs, metrics, compression, pictures.

:class:`AttributionGraph` reads circuit-tracer / Neuronpedia JSON; :func:`compress` groups
its feature nodes into supernodes by the semantic distance between their distributions.
"""

from semot.circuits.compress import CompressionResult, NodeDistributions, compress
from semot.circuits.graph import AttributionGraph
from semot.circuits.metrics import graph_report

__all__ = [
    "AttributionGraph",
    "CompressionResult",
    "NodeDistributions",
    "compress",
    "graph_report",
]
