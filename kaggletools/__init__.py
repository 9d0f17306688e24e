"""kaggletools: from a Kaggle image competition's download to a validated submission."""
from importlib import metadata as _metadata

try:
    __version__ = _metadata.version("kaggletools")
except _metadata.PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"
