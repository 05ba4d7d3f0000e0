"""Collection of feature distributions from models (the extra ``semot[collect]``).

:func:`collect` runs a model over tokens, encodes hidden states with SAEs and streams each
feature's firings into a sample. Importing this package does not import torch; the
functions that need it import it when called.
"""

from semot.collection.run import collect, load_run

__all__ = ["collect", "load_run"]
