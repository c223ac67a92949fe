"""Ordering of batches for the detectors (detectors.batching), against a plain per-binding reference.

Detectors share one channel ordering per batch; these tests check that what each of them
evaluates is still its own bindings' readings, in time order, late ones left out, whatever
other detectors saw the same batch before.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors import batching
from detectors.batching import BindingIndex, bound_readings, rounds

N_CHANNELS = 6


def reference(binding_channel: list[int], rows: list[tuple[int, int, float]], last_ts: list[int]
              ) -> dict[int, list[tuple[int, float]]]:
    """Per binding: its channel's readings (ts, value) not older than its last_ts, in (ts, row) order."""
    want: dict[int, list[tuple[int, float]]] = {}
    for b, c in enumerate(binding_channel):
        mine = sorted((ts, row, value) for row, (channel, ts, value) in enumerate(rows)
                      if channel == c and ts >= last_ts[b])
        if mine:
            want[b] = [(ts, value) for ts, _, value in mine]
    return want


layouts = st.lists(st.integers(0, N_CHANNELS - 1), unique=True, max_size=N_CHANNELS).flatmap(
    lambda channels: st.tuples(st.just(channels), st.lists(st.integers(-1, 5), min_size=len(channels),
                                                           max_size=len(channels))))
readings = st.lists(st.tuples(st.integers(-1, N_CHANNELS), st.integers(0, 5), st.floats(-10, 10)),
                    min_size=1, max_size=30)


@settings(max_examples=300, deadline=None)
@given(layouts, readings)
def test_rounds_give_each_binding_its_readings_in_time_order(layout, rows) -> None:
    """`rounds` (used by numpy detectors): each round holds a binding once, and the rounds
    together give each binding its on-time readings in (ts, row) order."""
    channels, last = layout
    index = BindingIndex(np.array(channels, np.int64), N_CHANNELS)
    channel = np.array([c for c, _, _ in rows], np.int32)
    ts = np.array([t for _, t, _ in rows], np.int64)
    value = np.array([v for _, _, v in rows], np.float64)
    binding, row = index.expand(channel)
    order, bounds = rounds(binding, ts[row], np.array(last, np.int64))
    got: dict[int, list[tuple[int, float]]] = {}
    for r in range(bounds.size - 1):
        pick = order[bounds[r]:bounds[r + 1]]
        assert len(set(binding[pick].tolist())) == pick.size  # a round holds each binding once at most
        for k in pick.tolist():
            got.setdefault(int(binding[k]), []).append((int(ts[row[k]]), float(value[row[k]])))
    assert got == reference(channels, rows, last)


def evaluated(index: BindingIndex, channel: np.ndarray, ts: np.ndarray, value: np.ndarray, last_ts: np.ndarray
              ) -> dict[int, list[tuple[int, float]]]:
    """What a kernel evaluates from `bound_readings`: rows in order, binding -1 and late ones skipped."""
    newest = last_ts.copy()
    got: dict[int, list[tuple[int, float]]] = {}
    binding, t, v = bound_readings(index, channel, ts, value)
    assert binding.dtype == np.int32 and t.dtype == np.int64 and v.dtype == np.float64
    for bi, ti, vi in zip(binding.tolist(), t.tolist(), v.tolist(), strict=True):
        if bi < 0 or ti < newest[bi]:
            continue
        newest[bi] = ti
        got.setdefault(bi, []).append((ti, vi))
    return got


# Channels may repeat here: several bindings on one channel take the CSR path.
shared_layouts = st.lists(st.integers(0, N_CHANNELS - 1), max_size=N_CHANNELS + 2).flatmap(
    lambda channels: st.tuples(st.just(channels), st.lists(st.integers(-1, 5), min_size=len(channels),
                                                           max_size=len(channels))))


@settings(max_examples=300, deadline=None)
@given(st.lists(shared_layouts, min_size=1, max_size=3), readings, readings, st.booleans())
def test_bound_readings_give_each_binding_its_readings_in_time_order(detectors, first, second, in_order) -> None:
    """Kernel detectors see, per binding, exactly what the reference says (late ones skipped),
    for batches already in time order per channel (used as they are) and for the others, and
    for batches counted into order and batches small enough to be sorted."""
    indexes = [BindingIndex(np.array(channels, np.int64), N_CHANNELS) for channels, _ in detectors]
    for small_batch in (batching.SMALL_BATCH, 10**9):  # the usual threshold; every batch "small"
        batching.SMALL_BATCH, saved = small_batch, batching.SMALL_BATCH
        batching._recent_orders = []  # no order cached from the other way
        try:
            for rows in (first, second):
                if in_order:
                    rows = sorted(rows, key=lambda r: r[1])
                channel = np.array([c for c, _, _ in rows], np.int32)
                ts = np.array([t for _, t, _ in rows], np.int64)
                value = np.array([v for _, _, v in rows], np.float64)
                for index, (channels, last) in zip(indexes, detectors, strict=True):
                    got = evaluated(index, channel, ts, value, np.array(last, np.int64))
                    assert got == reference(channels, rows, last)
        finally:
            batching.SMALL_BATCH = saved


def test_a_batch_is_grouped_by_channel_once_for_every_detector() -> None:
    """Kernels read their state in channel order, and the second detector reuses the first's
    ordering of the same batch (the same arrays); new arrays are ordered afresh."""
    first, second = BindingIndex(np.array([0, 1], np.int64), 2), BindingIndex(np.array([1, 0], np.int64), 2)
    channel, ts, value = np.array([1, 0, 1], np.int32), np.array([5, 6, 7], np.int64), np.array([1.0, 2.0, 3.0])
    binding, t, v = bound_readings(first, channel, ts, value)
    assert binding.tolist() == [0, 1, 1] and t.tolist() == [6, 5, 7] and v.tolist() == [2.0, 1.0, 3.0]
    binding_2, t_2, _ = bound_readings(second, channel, ts, value)
    assert binding_2.tolist() == [1, 0, 0] and t_2 is t
    _, t, v = bound_readings(first, channel, np.array([9, 6, 7], np.int64), value)
    assert t.tolist() == [6, 7, 9] and v.tolist() == [2.0, 3.0, 1.0]
