"""Is a match right? Every matching method against a silver standard on held-out tokens.

:func:`evaluate` runs a model over held-out tokens once (bounded memory: streaming float64
sums for Pearson's r and running top-k contexts, :mod:`~semot.evaluation.stats`), takes as
silver standard each source feature's best-correlated target, and scores semot's matches and
the baselines against it (:mod:`~semot.evaluation.methods`, :mod:`~semot.evaluation.report`).
It uses both :mod:`semot.collection` (the model pass) and :mod:`semot.matching` (the
methods), so it sits above both. Importing it does not import torch.
"""

from semot.evaluation.evaluate import evaluate
from semot.evaluation.report import EvaluationResult, SilverStandard

__all__ = ["EvaluationResult", "SilverStandard", "evaluate"]
