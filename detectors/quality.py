"""Sensor faults: out of physical range, stuck, spikes, impossible rate of change.

A faulty sensor is a maintenance matter, not a hazard: its alerts go to maintenance, and
while a channel is faulty the hazard alerts of that channel are marked ``"confidence":
"low"`` or suppressed (the rule's `on_fault`), so operators are not sent to a broken sensor.
The pipeline asks `QualityDetector.faulty` / `on_fault(channel)` for that.

Checks, per binding (one quality rule on one channel), on each evaluated reading ``x`` at
``t`` (``detectors.quality_reference`` is the readable per-reading version):

* **out_of_range**: ``x < range_min`` or ``x > range_max`` (the sensor type's physical range).
* **spike**: robust z-score against the previous ``spike_window`` readings (Hampel filter;
  Hampel 1974, Pearson 2002): ``med`` = their median, ``mad`` = median of ``|v - med|``,
  ``z = |x - med| / (1.4826 * mad)`` (1.4826 makes the MAD a consistent estimator of the
  standard deviation for normal data); a spike when ``z > spike_threshold``. Skipped until the
  window is full and when ``mad == 0`` (a flat window says nothing about the scale).
* **rate**: ``|x - x_prev| * 1000 / (t - t_prev) > max_rate_per_s`` against the previous
  evaluated reading; skipped when ``t == t_prev`` (no elapsed time to divide by).
* **stuck**: a *run* of consecutive readings with peak-to-peak variation
  ``max - min <= stuck_tolerance``; a reading that would widen it beyond the tolerance starts a
  new run at itself. Stuck when the run holds ``stuck_readings`` readings or more and, if
  ``stuck_seconds`` is set, has lasted at least that long (``t - t_first``). (Keeping only the
  run's min, max, length and start makes this O(1) per binding; for the default tolerance 0 it
  is exactly "the last N readings are identical".)

Every evaluated reading enters the spike window and becomes the previous reading, faulty or
not. A reading is faulty when any check fires; the reported fault is the first of
out_of_range, spike, rate, stuck (a spike also trips the rate check; "spike" says more). The
binding becomes faulty on a faulty reading and stays faulty until ``clear_after`` good
readings in a row. The 0/1 faulty flag drives a LevelMachine with
``flag_threshold(spec.level)``, which gives the alert its level and findings.

Ordering is that of every detector (`detectors.batching.rounds`): a binding's readings in
(ts, batch row) order, readings older than the newest evaluated one skipped.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from detectors.batching import BindingIndex, each_round
from detectors.formatting import format_number, with_unit
from detectors.level_machine import LevelMachine, flag_threshold
from detectors.threshold import Binding, ThresholdFindings, bind_rules, empty_findings
from ingest.batch import Batch
from lifeline.catalogue import Catalogue
from lifeline.config import Rule
from lifeline.rule_kinds import Quality

#: Scale that makes the median absolute deviation estimate a normal standard deviation.
MAD_SCALE = 1.4826
#: Fault codes, index = code; 0 = none. Earlier names win when several checks fire.
FAULTS = ("", "out_of_range", "spike", "rate", "stuck")
_RANGE, _SPIKE, _RATE, _STUCK = 1, 2, 3, 4
_NO_TS = np.iinfo(np.int64).min


@dataclass
class SpikeWindows:
    """Ring buffers of the previous readings of every binding with one spike window length.

    window : int - readings per buffer
    values : (window, bindings in group) float64 - readings, channel unit, in ring order down
        each column (column-major, so that the sorting network runs on contiguous rows)
    seen : (bindings in group,) int64 - readings written so far (next slot = seen % window)
    """

    window: int
    values: np.ndarray
    seen: np.ndarray


def merge_exchange_network(n: int) -> list[tuple[int, int]]:
    """Comparators (i, j), i < j, of Batcher's merge-exchange sorting network for n inputs
    (Knuth, TAOCP vol. 3, 5.2.2, Algorithm M): applied in order, each putting the smaller of
    positions i and j first, they sort any n values. 26 comparators for n = 9."""
    pairs: list[tuple[int, int]] = []
    if n < 2:
        return pairs
    top = 1 << ((n - 1).bit_length() - 1)
    p = top
    while p > 0:
        q, r, d = top, 0, p
        while True:
            pairs += [(i, i + d) for i in range(n - d) if i & p == r]
            if q == p:
                break
            d, q, r = q - p, q >> 1, p
        p >>= 1
    return pairs


#: Windows up to this length are sorted by a network (about n log^2 n / 4 elementwise min/max
#: over all the round's windows at once: for 9 readings twice as fast as np.sort of each short
#: row, and the sorted rows give the MAD without a second sort); longer ones by np.sort.
NETWORK_MAX = 32
#: Windows per block: the network makes many passes over its rows, which should stay in the
#: core's own cache (4,096 windows of 9 readings are 0.3 MB: measured 1.7 times faster than
#: blocks of 16,384, 1.2 MB, on this machine; a block of the whole round is slower still).
BLOCK = 4_096


def window_median_and_mad(windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(m,) median and (m,) median absolute deviation of each column of a (w, m) array of
    finite values: a window of w readings per column. Computed a block of columns at a time."""
    med, mad = np.empty(windows.shape[1]), np.empty(windows.shape[1])
    for start in range(0, windows.shape[1], BLOCK):
        block = slice(start, start + BLOCK)
        med[block], mad[block] = median_and_mad(sorted_rows(list(windows[:, block])))
    return med, mad


def sorted_rows(rows: list[np.ndarray]) -> list[np.ndarray]:
    """w arrays of shape (m,) sorted elementwise: out[0] <= out[1] <= ... at every position."""
    if len(rows) > NETWORK_MAX:
        return list(np.sort(np.array(rows), axis=0))
    rows = list(rows)
    for i, j in _network(len(rows)):
        rows[i], rows[j] = np.minimum(rows[i], rows[j]), np.maximum(rows[i], rows[j])
    return rows


@functools.cache
def _network(n: int) -> tuple[tuple[int, int], ...]:
    return tuple(merge_exchange_network(n))


def median_and_mad(ordered: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(median, median absolute deviation) elementwise of w sorted (m,) arrays (`sorted_rows`).

    The deviations |v - med| of the values below the median, read from the median outwards,
    ascend, and so do those above it: the MAD is an order statistic of two sorted lists,
    found without sorting the deviations (the k-th smallest of lists L and R is the least,
    over the ways to take i from L and k - i from R, of the larger of L[i - 1], R[k - i - 1]).
    ``med - v`` is exactly ``|v - med|`` for v <= med in IEEE arithmetic, so both agree bit
    for bit with the plain definition (`quality_reference.median`).
    """
    w = len(ordered)
    h = w // 2
    if w % 2:
        med = ordered[h]
        below = [med - ordered[h - i] for i in range(h + 1)]  # the median itself first: 0
        above = [ordered[h + 1 + j] - med for j in range(h)]
        return med, _kth_of_two(below, above, h + 1)
    med = (ordered[h - 1] + ordered[h]) / 2
    below = [med - ordered[h - 1 - i] for i in range(h)]
    above = [ordered[h + j] - med for j in range(h)]
    return med, (_kth_of_two(below, above, h) + _kth_of_two(below, above, h + 1)) / 2


def _kth_of_two(low: list[np.ndarray], high: list[np.ndarray], k: int) -> np.ndarray:
    """Elementwise k-th smallest (1-based) of the union of two ascending lists of (m,) arrays."""
    best = None
    for i in range(max(0, k - len(high)), min(k, len(low)) + 1):
        # The largest of the i smallest of `low` and the k - i smallest of `high`.
        if i == 0:
            last = high[k - 1]
        elif i == k:
            last = low[k - 1]
        else:
            last = np.maximum(low[i - 1], high[k - i - 1])
        best = last if best is None else np.minimum(best, last)
    return best


def row_median(a: np.ndarray) -> np.ndarray:
    """(m,) float64 - median of each row of a (m, w) array; mean of the middle two for even w."""
    return window_median_and_mad(np.ascontiguousarray(a.T))[0]


class QualityDetector:
    """Fault state of every (quality rule, channel) binding.

    Parameters
    ----------
    bindings : sequence of Binding
        ``bindings[i].index == i``; every rule has kind "quality" and a `Quality` spec.
    n_channels : int
        Number of catalogue channels; batch rows of other channels are ignored.
    """

    kind = "quality"

    def __init__(self, bindings: Sequence[Binding], n_channels: int):
        self.bindings: tuple[Binding, ...] = tuple(bindings)
        n = len(self.bindings)
        for i, binding in enumerate(self.bindings):
            if binding.index != i:
                raise ValueError(f"binding at position {i} has index {binding.index}")
        specs: list[Quality] = [b.rule.spec for b in self.bindings]
        self.n_channels = int(n_channels)
        #: (bindings,) int64 - channel of each binding
        self._channel = np.array([b.channel.index for b in self.bindings], np.int64)
        self._index = BindingIndex(self._channel, n_channels)

        # -- parameters, (bindings,) each; an unset check gets a value that never fires -----------
        self._range_min = np.array([-np.inf if s.range_min is None else s.range_min for s in specs], np.float64)
        self._range_max = np.array([np.inf if s.range_max is None else s.range_max for s in specs], np.float64)
        #: int32 - readings that make a run stuck; 0 = no stuck check
        self._stuck_n = np.array([s.stuck_readings or 0 for s in specs], np.int32)
        #: int64 - minimum duration of a stuck run, ms (0 when not set)
        self._stuck_ms = np.array([round((s.stuck_seconds or 0.0) * 1000) for s in specs], np.int64)
        self._stuck_tol = np.array([s.stuck_tolerance for s in specs], np.float64)
        self._spike_threshold = np.array([s.spike_threshold for s in specs], np.float64)
        #: float64 - |dv/dt| limit per second; inf = no rate check
        self._max_rate = np.array([np.inf if s.max_rate_per_s is None else s.max_rate_per_s for s in specs])
        self._clear_after = np.array([s.clear_after for s in specs], np.int32)
        self._suppress = np.array([s.on_fault == "suppress" for s in specs], bool)
        # Spike windows are grouped by length so each group's buffer is a rectangular array.
        lengths = sorted({s.spike_window for s in specs if s.spike_window is not None})
        #: int8 - spike window group of each binding, -1 = no spike check
        self._group = np.full(n, -1, np.int8)
        #: int32 - row of each binding in its group's buffer
        self._slot = np.zeros(n, np.int32)
        self._windows: list[SpikeWindows] = []
        for g, length in enumerate(lengths):
            members = np.array([i for i, s in enumerate(specs) if s.spike_window == length], np.int64)
            self._group[members] = g
            self._slot[members] = np.arange(members.size)
            self._windows.append(SpikeWindows(length, np.zeros((length, members.size)),
                                              np.zeros(members.size, np.int64)))

        # -- state, (bindings,) each ----------------------------------------------------------------
        #: int64 - newest ts evaluated, epoch ms (also the previous reading's ts for the rate)
        self._last_ts = np.full(n, _NO_TS, np.int64)
        #: float64 - previous evaluated reading, NaN when none
        self._prev = np.full(n, np.nan)
        #: float64 - min and max of the current run, channel unit
        self._run_min = np.zeros(n, np.float64)
        self._run_max = np.zeros(n, np.float64)
        #: int32 - readings in the current run
        self._run_count = np.zeros(n, np.int32)
        #: int64 - ts of the run's first reading, epoch ms
        self._run_start = np.zeros(n, np.int64)
        #: bool - faulty now
        self._faulty = np.zeros(n, bool)
        #: int32 - good readings in a row while faulty (reset to 0 by the next reading once clear)
        self._good = np.zeros(n, np.int32)
        #: int8 - code of the latest fault (FAULTS), 0 = none yet
        self._fault = np.zeros(n, np.int8)
        #: float64 - the latest faulty reading, and what its check measured: `aux` = run length
        #: (stuck), robust z (spike), |rate| per s (rate); `ref` = run duration s (stuck),
        #: window median (spike), previous reading (rate), the bound crossed (out_of_range)
        self._fault_value = np.zeros(n, np.float64)
        self._fault_aux = np.zeros(n, np.float64)
        self._fault_ref = np.zeros(n, np.float64)
        #: (channels,) int32 - faulty bindings of each channel; (channels,) bool - any
        self._faulty_bindings = np.zeros(self.n_channels, np.int32)
        self._faulty_channel = np.zeros(self.n_channels, bool)

        self._machine = LevelMachine([(b.rule, b.channel) for b in self.bindings],
                                     [flag_threshold(s.level) for s in specs])

    @classmethod
    def from_rules(cls, catalogue: Catalogue, rules: Sequence[Rule]) -> QualityDetector:
        """Bind every rule of kind "quality" to every channel it matches (rule-major)."""
        return cls(bind_rules(catalogue, rules, "quality"), len(catalogue))

    # -- evaluation ------------------------------------------------------------------------------

    def update(self, batch: Batch) -> ThresholdFindings:
        """Evaluate a batch; fault level changes in (binding, ts) order."""
        if len(batch) == 0 or not self.bindings:
            return empty_findings()
        streams, stamps, flags = [], [], []
        for b, t, v in each_round(self._index, batch.channel, batch.ts, batch.value, self._last_ts):
            before = self._faulty[b]
            after = self._round(b, t, v)
            # Only flag changes go to the level machine: with one level, clear 1.0 and no hold
            # its level is the flag itself, so the readings in between change nothing (same
            # findings and `since` as feeding every reading, which the reference does).
            moved = np.flatnonzero(before != after)
            if moved.size:
                streams.append(b[moved])
                stamps.append(t[moved])
                flags.append(after[moved].astype(np.float64))
        if not streams:
            return empty_findings()
        stream, flag = np.concatenate(streams), np.concatenate(flags)
        # Keep the per-channel flag: +1 for a binding that became faulty, -1 for one that cleared.
        channel = self._channel[stream]
        np.add.at(self._faulty_bindings, channel, np.where(flag > 0, 1, -1).astype(np.int32))
        self._faulty_channel[channel] = self._faulty_bindings[channel] > 0
        return self._machine.update(stream, np.concatenate(stamps), flag)

    def _round(self, b: np.ndarray, t: np.ndarray, x: np.ndarray) -> np.ndarray:
        """Check one reading for each of a set of distinct bindings; (m,) bool faulty after it.

        b : (m,) intp distinct bindings; t : (m,) int64 epoch ms; x : (m,) float64 readings
        """
        prev = self._prev[b]
        has_prev = ~np.isnan(prev)
        prev_ts = np.where(has_prev, self._last_ts[b], t)  # no int64 overflow without a previous

        # stuck: extend the current run or start a new one at x
        lo = np.minimum(self._run_min[b], x)
        hi = np.maximum(self._run_max[b], x)
        extends = has_prev & (hi - lo <= self._stuck_tol[b])
        count = np.where(extends, self._run_count[b] + 1, 1).astype(np.int32)
        start = np.where(extends, self._run_start[b], t)
        self._run_min[b] = np.where(extends, lo, x)
        self._run_max[b] = np.where(extends, hi, x)
        self._run_count[b] = count
        self._run_start[b] = start
        stuck_n = self._stuck_n[b]
        stuck = (stuck_n > 0) & (count >= stuck_n) & (t - start >= self._stuck_ms[b])

        # rate of change against the previous reading
        dt = t - prev_ts
        timed = has_prev & (dt > 0)
        with np.errstate(invalid="ignore"):
            rate = np.abs(x - prev) * 1000.0 / np.where(timed, dt, 1)
        fast = timed & (rate > self._max_rate[b])

        # spikes against the previous window (then x joins the window)
        spike, z, median = self._spikes(b, x)

        # physical range
        below = x < self._range_min[b]
        out = below | (x > self._range_max[b])

        fault = np.where(out, _RANGE, np.where(spike, _SPIKE, np.where(fast, _RATE, np.where(stuck, _STUCK, 0))))
        bad = fault > 0
        if bad.any():
            i = np.flatnonzero(bad)
            fb, f = b[i], fault[i]
            self._fault[fb] = f
            self._fault_value[fb] = x[i]
            self._fault_aux[fb] = np.select([f == _SPIKE, f == _RATE, f == _STUCK], [z[i], rate[i], count[i]], 0.0)
            bound = np.where(below[i], self._range_min[fb], self._range_max[fb])
            self._fault_ref[fb] = np.select([f == _RANGE, f == _SPIKE, f == _RATE],
                                            [bound, median[i], prev[i]], (t[i] - start[i]) / 1000.0)

        faulty_before = self._faulty[b]
        good = np.where(bad, 0, np.where(faulty_before, self._good[b] + 1, 0)).astype(np.int32)
        faulty = bad | (faulty_before & (good < self._clear_after[b]))
        self._good[b] = good
        self._faulty[b] = faulty
        self._prev[b] = x
        self._last_ts[b] = t
        return faulty

    def _spikes(self, b: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Hampel test of each reading against its binding's window, then append it.

        Returns (spike : (m,) bool, z : (m,) robust z, NaN where not tested,
        median : (m,) window median, NaN where not tested).
        """
        spike = np.zeros(b.size, bool)
        z = np.full(b.size, np.nan)
        median = np.full(b.size, np.nan)
        group = self._group[b]
        for g, windows in enumerate(self._windows):
            sel = np.flatnonzero(group == g)
            if sel.size == 0:
                continue
            slot = self._slot[b[sel]]
            seen = windows.seen[slot]
            full = np.flatnonzero(seen >= windows.window)
            if full.size:
                med, mad = window_median_and_mad(windows.values[:, slot[full]])
                rows = sel[full]
                with np.errstate(divide="ignore", invalid="ignore"):
                    score = np.abs(x[rows] - med) / (MAD_SCALE * mad)
                spike[rows] = (mad > 0) & (score > self._spike_threshold[b[rows]])
                z[rows] = score
                median[rows] = med
            windows.values[seen % windows.window, slot] = x[sel]
            windows.seen[slot] = seen + 1
        return spike, z, median

    # -- fault state for the pipeline ------------------------------------------------------------

    @property
    def faulty(self) -> np.ndarray:
        """(catalogue channels,) bool - True while any quality binding of the channel is faulty.

        A read-only view of state kept up to date by `update` and `restore` (O(1) to get).
        """
        view = self._faulty_channel.view()
        view.flags.writeable = False
        return view

    def on_fault(self, channel: int) -> str | None:
        """What to do with hazard alerts of `channel`: "mark" (confidence low), "suppress", or None.

        None while no quality binding of the channel is faulty; "suppress" when any faulty one
        asks for it (the stronger measure wins), else "mark".
        """
        if not 0 <= channel < self.n_channels:
            return None
        index = self._index
        mine = index.grouped[index.offsets[channel]:index.offsets[channel + 1]]
        faulty = mine[self._faulty[mine]]
        if faulty.size == 0:
            return None
        return "suppress" if self._suppress[faulty].any() else "mark"

    # -- Detector protocol -------------------------------------------------------------------------

    def level(self) -> np.ndarray:
        """(bindings,) int8 - confirmed level of each binding (a copy)."""
        return self._machine.level()

    def restore(self, binding: int, level: int, started_at: int, last_ts: int) -> None:
        """Resume a binding at the level of its open fault alert after a restart.

        The binding is faulty again (if `level` > 0) and needs `clear_after` good readings to
        clear. Reading history is not part of the alert: the next reading has no previous one
        (no rate check) and starts a new stuck run.
        """
        self._machine.restore(binding, level, started_at, last_ts)
        channel = self._channel[binding]
        self._faulty_bindings[channel] += int(level > 0) - int(self._faulty[binding])
        self._faulty_channel[channel] = self._faulty_bindings[channel] > 0
        self._faulty[binding] = level > 0
        self._good[binding] = 0
        self._prev[binding] = np.nan
        self._last_ts[binding] = last_ts

    def details(self, binding: int) -> dict:
        """``{"kind": "fault", "fault": "stuck|spike|out_of_range|rate", "detail": "..."}``.

        Describes the binding's latest faulty reading; `fault` is None before any.
        """
        code = int(self._fault[binding])
        if code == 0:
            return {"kind": "fault", "fault": None, "detail": ""}
        return {"kind": "fault", "fault": FAULTS[code], "detail": self._describe(binding)}

    def message(self, binding: int, level_before: int, level_after: int, value: float, limit: float) -> str:
        """E.g. "sensor fault: ch4 stuck at 3.20 %LEL for 20 readings (maintenance)".

        `value` and `limit` are the 0/1 flag and 0.5, so the text comes from the latest fault.
        """
        channel = self.bindings[binding].channel
        code = int(self._fault[binding])
        fault = FAULTS[code] if code else "fault"
        if level_after == 0:
            spec: Quality = self.bindings[binding].rule.spec
            return (f"sensor fault cleared: {channel.metric} gave {spec.clear_after} good readings in a row "
                    f"after {fault.replace('_', ' ')}")
        return f"sensor fault: {channel.metric} {self._describe(binding)} (maintenance)"

    def _describe(self, binding: int) -> str:
        """The latest fault in words, e.g. "stuck at 3.20 %LEL for 20 readings"."""
        unit = self.bindings[binding].channel.unit
        spec: Quality = self.bindings[binding].rule.spec
        code = int(self._fault[binding])
        value = float(self._fault_value[binding])
        aux, ref = float(self._fault_aux[binding]), float(self._fault_ref[binding])
        if code == _STUCK:
            return f"stuck at {with_unit(value, unit)} for {aux:.0f} readings in {ref:.0f} s"
        if code == _SPIKE:
            return (f"spike to {with_unit(value, unit)}, {aux:.1f} robust sigma from the median "
                    f"{format_number(ref)} of its last {spec.spike_window} readings")
        if code == _RATE:
            per_s = f"{unit}/s" if unit else "/s"
            return (f"jumped from {format_number(ref)} to {with_unit(value, unit)} at {aux:.3g} {per_s}, "
                    f"faster than physically possible ({spec.max_rate_per_s:g} {per_s})")
        if code == _RANGE:
            side = "below its minimum" if value < ref else "above its maximum"
            return f"reads {with_unit(value, unit)}, {side} {format_number(ref)} (outside the sensor's range)"
        return ""
