"""Putting a batch in the order stateful detectors evaluate it.

Detectors keep per-binding state (a binding is one rule on one channel) and must see each
binding's readings in time order. A batch is expanded from channels to bindings, late
readings are dropped, and the rest is split into *rounds*: round k holds the k-th reading of
every binding that has more than k readings, so one round is evaluated for all its bindings
at once with array operations and the Python loop runs over rounds, not readings.
"""

from __future__ import annotations

from collections.abc import Iterator

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


def stable_argsort(keys: np.ndarray, upper: int) -> np.ndarray:
    """(k,) intp - stable argsort of non-negative integer `keys` < `upper`.

    numpy sorts 16-bit keys stably with a radix sort, several times faster than its timsort
    of wider integers; wider keys are sorted 16 bits at a time, least significant first.
    """
    order = np.argsort((keys & 0xFFFF).astype(np.uint16), kind="stable")
    shift = 16
    while upper > 1 << shift:
        digit = ((keys[order] >> shift) & 0xFFFF).astype(np.uint16)
        order = order[np.argsort(digit, kind="stable")]
        shift += 16
    return order


def rounds(binding: np.ndarray, ts: np.ndarray, last_ts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Order (binding, ts) pairs for round-by-round evaluation.

    Readings older than their binding's `last_ts` (the newest already evaluated) are dropped:
    detectors see each channel's readings in time order, and a late reading is archived but
    not evaluated. A batch with at most one reading per binding is a single round and needs
    no sort; otherwise readings are sorted stably by binding with a radix sort, which already
    gives (binding, ts) order unless a binding's readings are out of time order within the
    batch (rare; then `np.lexsort`).

    Parameters
    ----------
    binding : (k,) intp
    ts : (k,) int64, epoch ms
    last_ts : (bindings,) int64, newest ts already evaluated per binding

    Returns
    -------
    order : (j,) intp - indexes into the inputs, round-major; within a round the bindings are
        distinct (ascending, except in the single-round case where they keep input order); a
        binding's readings are in (ts, input) order across rounds
    bounds : (rounds + 1,) intp - round r is ``order[bounds[r]:bounds[r + 1]]``
    """
    kept = np.flatnonzero(ts >= last_ts[binding])
    if kept.size == 0:
        return kept, np.zeros(1, np.intp)
    b, t = binding[kept], ts[kept]
    counts = np.bincount(b, minlength=last_ts.size)
    if counts.max() <= 1:
        return kept, np.array([0, kept.size], np.intp)
    by_binding = stable_argsort(b, last_ts.size)
    sorted_b, sorted_t = b[by_binding], t[by_binding]
    same = sorted_b[1:] == sorted_b[:-1]
    if np.any(same & (sorted_t[1:] < sorted_t[:-1])):
        by_binding = np.lexsort((t, b))  # the sorted bindings (and `same`) stay as they are
    # Rank of each reading within its binding = the round that evaluates it.
    first = np.flatnonzero(np.r_[True, ~same])
    lengths = np.diff(np.r_[first, b.size])
    rank = np.arange(b.size) - np.repeat(first, lengths)
    by_round = stable_argsort(rank, int(lengths.max()))
    bounds = np.r_[0, np.cumsum(np.bincount(rank))].astype(np.intp)
    return kept[by_binding[by_round]], bounds


def each_round(index: BindingIndex, channel: np.ndarray, ts: np.ndarray, value: np.ndarray,
               last_ts: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """A batch's readings expanded to bindings, round by round: (binding, ts, value) arrays
    with distinct bindings in each round, late readings left out (see `rounds`)."""
    binding, row = index.expand(channel)
    if binding.size == 0:
        return
    ts = np.asarray(ts, np.int64)[row]
    value = np.asarray(value, np.float64)[row]
    order, bounds = rounds(binding, ts, last_ts)
    for r in range(bounds.size - 1):
        pick = order[bounds[r]:bounds[r + 1]]
        yield binding[pick], ts[pick], value[pick]
