"""kaggletools: from a Kaggle image competition's download to a validated submission.

The Python API is `kaggletools.api`; the plugin API (for competition modules) is
`kaggletools.competition`. Nothing is imported here until it is asked for."""
import importlib as _importlib
from importlib import metadata as _metadata

try:
    __version__ = _metadata.version("kaggletools")
except _metadata.PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

# The plugin modules under the names kaggletools 0.2 gave them (`from kaggletools import layouts`),
# so competition modules written for it keep working; new code imports kaggletools.competition.
_PLUGIN_NAMES = {"bases": "kaggletools.competition.bases", "tasks": "kaggletools.competition.tasks",
                 "layouts": "kaggletools.competition.layouts", "fixtures": "kaggletools.competition.fixtures",
                 "multilabel": "kaggletools.competition.tags", "files": "kaggletools.io.files"}


def __getattr__(name: str):
    if name in _PLUGIN_NAMES:
        return _importlib.import_module(_PLUGIN_NAMES[name])
    raise AttributeError(f"module 'kaggletools' has no attribute {name!r}")
