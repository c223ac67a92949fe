"""Putting a batch in the order stateful detectors evaluate it.

Detectors keep per-binding state (a binding is one rule on one channel) and must see each
binding's readings in time order. A batch is expanded from channels to bindings, late
readings are dropped, and the rest is split into *rounds*: round k holds the k-th reading of
every binding that has more than k readings, so one round is evaluated for all its bindings
at once with array operations and the Python loop runs over rounds, not readings.
"""

from __future__ import annotations

import numpy as np


class BindingIndex:
    """Map from channel to the bindings on it (CSR), built once.

    binding_channel : (bindings,) int - the channel of each binding
    """

    def __init__(self, binding_channel: np.ndarray, n_channels: int):
        binding_channel = np.asarray(binding_channel, np.int64)
        self.n_channels = n_channels
        self.per_channel = np.bincount(binding_channel, minlength=n_channels).astype(np.int64)
        self.offsets = np.zeros(n_channels + 1, np.int64)
        np.cumsum(self.per_channel, out=self.offsets[1:])
        self.grouped = np.argsort(binding_channel, kind="stable")

    def expand(self, channel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(binding, row): one pair per batch row and binding of its channel, rows ascending."""
        channel = np.asarray(channel, np.int64)
        known = (channel >= 0) & (channel < self.n_channels)
        per_row = np.where(known, self.per_channel[np.where(known, channel, 0)], 0)
        row = np.repeat(np.arange(channel.size), per_row)
        start = np.cumsum(per_row) - per_row
        within = np.arange(row.size) - np.repeat(start, per_row)
        binding = self.grouped[self.offsets[channel[row]] + within]
        return binding, row


def rounds(binding: np.ndarray, ts: np.ndarray, last_ts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Order (binding, ts) pairs for round-by-round evaluation.

    Readings older than their binding's `last_ts` (the newest already evaluated) are dropped:
    detectors see each channel's readings in time order, and a late reading is archived but
    not evaluated.

    Returns
    -------
    order : (k,) intp - indexes into the inputs, round-major; within a round the bindings
        are distinct and ascending; a binding's readings are in (ts, input) order across rounds
    bounds : (rounds + 1,) intp - round r is ``order[bounds[r]:bounds[r + 1]]``
    """
    on_time = np.flatnonzero(ts >= last_ts[binding])
    if on_time.size == 0:
        return on_time, np.zeros(1, np.intp)
    b, t = binding[on_time], ts[on_time]
    by_binding = np.lexsort((t, b))
    sorted_b = b[by_binding]
    first = np.flatnonzero(np.r_[True, sorted_b[1:] != sorted_b[:-1]])
    lengths = np.diff(np.r_[first, sorted_b.size])
    rank = np.arange(sorted_b.size) - np.repeat(first, lengths)
    by_round = np.argsort(rank, kind="stable")
    order = on_time[by_binding[by_round]]
    bounds = np.r_[0, np.cumsum(np.bincount(rank))].astype(np.intp)
    return order, bounds
