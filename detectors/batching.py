"""Putting a batch in the order stateful detectors evaluate it.

Detectors with a C kernel (threshold, quality, trend, change) evaluate readings one after
another, each binding's in (ts, batch row) order, and skip late readings themselves against
their own newest evaluated ts. They take the batch through `bound_readings`, grouped by
channel once per batch for all detectors: a stable counting sort
(`_order_kernel.group_by_channel`, a few ms per million rows), which keeps each channel's
rows in time order when the gateways sent them so (the usual batch) and makes the kernels'
state accesses sequential; a batch in which some channel goes back in time is sorted by
(channel, ts) instead, and so is a batch of fewer rows than a 64th of the channels, for which
a sort costs less than the counting sort's passes over every channel.

Detectors written with numpy (bridge modal analysis) use `rounds`: a batch's (binding, ts)
pairs, late ones dropped, split so that round k holds the k-th reading of every binding that
has more than k, and one round is evaluated for all its bindings with array operations.
`BindingIndex` maps channels to bindings for everyone.
"""

from __future__ import annotations

import weakref

import numpy as np

from detectors._order_kernel import group_by_channel


class BindingIndex:
    """Map from channel to the bindings on it (CSR), built once.

    binding_channel : (bindings,) int - the channel of each binding
    """

    def __init__(self, binding_channel: np.ndarray, n_channels: int):
        binding_channel = np.asarray(binding_channel, np.int64)
        self.n_channels = n_channels
        per_channel = np.bincount(binding_channel, minlength=n_channels)
        #: (channels + 1,) int64 - the bindings of channel c are grouped[offsets[c]:offsets[c + 1]]
        self.offsets = np.zeros(n_channels + 1, np.int64)
        np.cumsum(per_channel, out=self.offsets[1:])
        #: (bindings,) int32 - binding indexes grouped by channel, ascending within a channel
        self.grouped = np.argsort(binding_channel, kind="stable").astype(np.int32)
        #: (channels,) int32 - the binding of each channel (-1: none) when no channel has several,
        #: the common case, in which expanding a batch is one gather; else None
        self.direct: np.ndarray | None = None
        if binding_channel.size == 0 or per_channel.max() <= 1:
            self.direct = np.full(n_channels, -1, np.int32)
            self.direct[binding_channel] = np.arange(binding_channel.size, dtype=np.int32)
        #: True when binding i is on channel i for every channel (a rule kind on every channel,
        #: numbered channel-major): a batch's grouped channels are then its bindings as they are
        self.identity = bool(self.direct is not None and binding_channel.size == n_channels
                             and np.array_equal(binding_channel, np.arange(n_channels)))

    def expand(self, channel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(binding, row): one pair per batch row and binding of its channel, rows ascending."""
        channel = np.asarray(channel, np.int64)
        if self.direct is not None and channel.size and channel.min() >= 0 and channel.max() < self.n_channels:
            binding = self.direct[channel].astype(np.intp)
            if binding.min() >= 0:  # every row's channel has its binding: the usual batch
                return binding, np.arange(channel.size)
            row = np.flatnonzero(binding >= 0)
            return binding[row], row
        known = (channel >= 0) & (channel < self.n_channels)
        if self.direct is not None:
            binding = np.where(known, self.direct[np.where(known, channel, 0)], -1).astype(np.intp)
            row = np.flatnonzero(binding >= 0)
            return binding[row], row
        per_row = np.where(known, np.diff(self.offsets)[np.where(known, channel, 0)], 0)
        row = np.repeat(np.arange(channel.size), per_row)
        start = np.cumsum(per_row) - per_row
        within = np.arange(row.size) - np.repeat(start, per_row)
        binding = self.grouped[self.offsets[channel[row]] + within].astype(np.intp)
        return binding, row


def stable_argsort(keys: np.ndarray, upper: int) -> np.ndarray:
    """(k,) intp - stable argsort of non-negative integer `keys` < `upper`.

    numpy sorts 8- and 16-bit keys stably with a radix sort, several times faster than its
    timsort of wider integers; wider keys are sorted a digit at a time, least significant
    first. A digit whose values fit in 8 bits (the top bit of 17-bit binding numbers, a round
    number) is sorted as uint8: one byte pass instead of two.
    """
    digits = []
    shift = 0
    while True:
        width, dtype = (8, np.uint8) if upper >> shift <= 1 << 8 else (16, np.uint16)
        digits.append(((keys >> shift) & ((1 << width) - 1)).astype(dtype))
        shift += width
        if upper <= 1 << shift:
            break
    order = np.argsort(digits[0], kind="stable")
    for digit in digits[1:]:
        order = order[np.argsort(digit[order], kind="stable")]
    return order


def rounds(binding: np.ndarray, ts: np.ndarray, last_ts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Order (binding, ts) pairs for round-by-round evaluation.

    Readings older than their binding's `last_ts` (the newest already evaluated) are dropped:
    detectors see each channel's readings in time order, and a late reading is archived but
    not evaluated. A batch with at most one reading per binding is a single round, ordered by
    binding with a counting sort (the bindings are distinct), which makes the detectors' state
    gathers and scatters sequential; otherwise readings are sorted stably by binding with a
    radix sort, which already
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
        distinct and ascending; a
        binding's readings are in (ts, input) order across rounds
    bounds : (rounds + 1,) intp - round r is ``order[bounds[r]:bounds[r + 1]]``
    """
    kept = np.flatnonzero(ts >= last_ts[binding])
    if kept.size == 0:
        return kept, np.zeros(1, np.intp)
    b, t = (binding, ts) if kept.size == binding.size else (binding[kept], ts[kept])
    counts = np.bincount(b, minlength=last_ts.size)
    if counts.max() <= 1:
        slot = np.empty(last_ts.size, np.intp)
        slot[b] = kept
        return slot[counts.astype(bool)], np.array([0, kept.size], np.intp)
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
    order = by_binding[by_round]
    return (order if kept.size == binding.size else kept[order]), bounds


#: A batch with fewer rows than n_channels / SMALL_BATCH is put in order by a sort.
SMALL_BATCH = 64


class _TimeOrder:
    """A batch's rows in (channel, ts, row) order, from a counting sort by channel when each
    channel's rows are already in time order, else (or for a batch of few rows) from a sort. Shared, read-only, by
    every detector that evaluates the batch (see `_latest_order`); rows of channels outside
    0..n_channels-1 are left out."""

    def __init__(self, channel: np.ndarray, ts: np.ndarray, value: np.ndarray, n_channels: int):
        self._sources = (weakref.ref(channel), weakref.ref(ts), weakref.ref(value))
        self.n_channels = n_channels
        # The counting sort makes passes over every channel (about 120 us for 100,000): a batch
        # of fewer rows than a 64th of the channels is sorted outright instead (35 us for 1,000).
        ordered = False
        if channel.size * SMALL_BATCH >= n_channels:
            grouped = np.empty(channel.size, np.int32), np.empty(ts.size, np.int64), np.empty(value.size, np.float64)
            kept, ordered = group_by_channel(channel, ts, value, n_channels, *grouped)
        if ordered:
            self.channel, self.ts, self.value = (column[:kept] for column in grouped)
        else:
            known = np.flatnonzero((channel >= 0) & (channel < n_channels))
            order = known[np.lexsort((ts[known], channel[known]))]
            self.channel, self.ts, self.value = channel[order], ts[order], value[order]
        for array in (self.channel, self.ts, self.value):
            array.flags.writeable = False

    def of(self, channel: np.ndarray, ts: np.ndarray, value: np.ndarray, n_channels: int) -> bool:
        return n_channels == self.n_channels and all(
            ref() is array for ref, array in zip(self._sources, (channel, ts, value), strict=True))


#: The orders of the latest batches, newest first, keyed by the identity of their arrays
#: (weak references, so a dead batch is never matched by a recycled id; a batch's arrays are
#: not modified once it is built). A batch passes through all detectors before the next; a
#: few are kept in case a detector orders batches of its own in between.
_recent_orders: list[_TimeOrder] = []
_RECENT = 4


def time_order(channel: np.ndarray, ts: np.ndarray, value: np.ndarray, n_channels: int,
               cached_only: bool = False) -> _TimeOrder | None:
    """The batch's rows in (channel, ts, row) order (rows of unknown channels left out), shared
    by every detector that evaluates the batch: computed by the first that asks, unless
    `cached_only` (then None when no detector has asked yet)."""
    global _recent_orders
    channel = np.asarray(channel, np.int32)
    ts, value = np.asarray(ts, np.int64), np.asarray(value, np.float64)
    recent = _recent_orders  # one read: another thread may replace the list, which only costs a recompute
    latest = next((order for order in recent if order.of(channel, ts, value, n_channels)), None)
    if latest is None and not cached_only:
        latest = _TimeOrder(channel, ts, value, n_channels)
        _recent_orders = [latest, *recent[:_RECENT - 1]]
    return latest


def bound_readings(index: BindingIndex, channel: np.ndarray, ts: np.ndarray, value: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(binding int32, ts int64, value float64) for every reading of a batch and binding of its
    channel, each binding's readings in (ts, row) order. Late readings are included: a kernel
    skips those older than its binding's newest evaluated ts. With one binding per channel at
    most (`BindingIndex.direct`), rows of channels without a binding have binding -1, which
    kernels skip too. The arrays may be read-only and shared with other detectors."""
    latest = time_order(channel, ts, value, index.n_channels)
    assert latest is not None
    if index.identity:  # no gather: 0.7 ms per 100,000 rows and detector
        return latest.channel, latest.ts, latest.value
    if index.direct is not None:
        return index.direct[latest.channel], latest.ts, latest.value
    binding, row = index.expand(latest.channel)
    return binding.astype(np.int32), latest.ts[row], latest.value[row]
