"""The feature browser: a static site to read features by their contexts and their matches.

:func:`write_browser` (``semot browse``) turns a collection run, its match frames, a chain
across layers and a compressed graph into pages that open from disk, offline: an index of
a site's features (search, sort, pages), one page per feature with its token contexts,
activation histogram, density and best targets with their contexts, chains drawn as paths,
and supernodes with their members' contexts. :func:`feature_pairs` is the flat table of
matched pairs (model, hook, SAE, layer, feature index on both sides) that SAEDashboard- or
Neuronpedia-style tools join on; the browser writes it as ``pairs.csv`` / ``pairs.parquet``.

It reads the outputs of :mod:`semot.collection` (runs and their stored token contexts),
:mod:`semot.matching` and :mod:`semot.circuits`; nothing here needs the model.
"""

from semot.browser.export import PAIR_COLUMNS, feature_pairs
from semot.browser.site import BrowserSite, write_browser

__all__ = ["PAIR_COLUMNS", "BrowserSite", "feature_pairs", "write_browser"]
