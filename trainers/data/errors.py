"""The one exception every data problem raises."""

from __future__ import annotations


class DataError(ValueError):
    """A data set that cannot be read or used, with one line naming the problem and the file or path."""
