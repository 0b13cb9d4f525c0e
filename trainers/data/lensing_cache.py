"""Where cached simulated sets live, and the file lock that keeps two processes from writing one at once."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def cache_root() -> Path:
    """``$MAETUNE_CACHE``, else ``$XDG_CACHE_HOME/maetune``, else ``~/.cache/maetune``."""
    if os.environ.get("MAETUNE_CACHE"):
        return Path(os.environ["MAETUNE_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "maetune"


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive ``fcntl`` lock on ``path`` (created if missing) for the ``with`` block.

    The kernel drops the lock when the holder dies, so a killed process never leaves it stuck.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # waits while another process simulates the same set
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
