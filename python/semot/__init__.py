"""semot: semantic optimal transport between sparse-autoencoder features."""

from semot._core import __version__

__all__ = ["__version__"]
