"""Where kaggletools keeps what it makes: the cache folder ($KAGGLETOOLS_CACHE, else
~/.cache/kaggletools). Knows nothing else of ours, so every room may ask it."""
from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """Where caches live: $KAGGLETOOLS_CACHE, else ~/.cache/kaggletools."""
    return Path(os.environ.get("KAGGLETOOLS_CACHE", Path.home() / ".cache" / "kaggletools"))
