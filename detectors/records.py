"""numpy structured dtypes for the C kernels' per-binding records.

A kernel that keeps each binding's state in one C struct exports the struct's layout
(`add_layout` in kernel_buffers.h): (itemsize, ((name, dtype string, offset), ...)). The
dtype is built from that, never written out by hand, so Python and C agree on every offset.
Detectors keep the record array and name its fields as views (``self._prev =
self._state["prev"]``), which index like the separate arrays they replace.
"""

from __future__ import annotations

import numpy as np


def record_dtype(layout: tuple[int, tuple[tuple[str, str, int], ...]]) -> np.dtype:
    """The structured dtype of a kernel's exported record layout."""
    itemsize, fields = layout
    return np.dtype({"names": [name for name, _, _ in fields], "formats": [fmt for _, fmt, _ in fields],
                     "offsets": [offset for _, _, offset in fields], "itemsize": itemsize})


def records(layout: tuple[int, tuple[tuple[str, str, int], ...]], n: int) -> np.ndarray:
    """(n,) zeroed records of the layout."""
    return np.zeros(n, record_dtype(layout))
