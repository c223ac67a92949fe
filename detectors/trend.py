"""Trend: least-squares slope over a sliding time window, and time to threshold.

For every binding (a trend rule on a channel) the last readings are kept in a ring buffer
and, at each reading, the ordinary least-squares slope of value against time is computed over
the readings no older than the rule's window (seconds, so irregular sampling works; at most
`max_points` of them). Two kinds of rule use it:

* slope levels (`rising:` / `falling:`, units per minute) raise a trend alert;
* `forecast:` estimates, with the channel's threshold rule, when the value will reach each
  level at the current slope (eta = (limit - fitted value) / slope) and raises a forecast
  alert, at the highest level not yet reached whose eta is under the horizon, before the
  value gets there: the early warning "orange in 6 min".

Both feed their statistic (slope per minute, or the forecast level number) into a
LevelMachine, so hysteresis, hold times and findings work as for thresholds. A batch is
evaluated in one call of the C kernel `detectors._trend_kernel` (trend_kernel.c) over
`detectors.batching.bound_readings`: every reading with each binding's in (ts, batch row)
order; the kernel skips late readings (older than the binding's newest evaluated one; equal
ts is evaluated) and rows without a binding. Per reading it does the window, its moments, the
slope and the forecast, updating this detector's state in place and returning each reading's
statistic; the level machine then runs once over the batch's statistics. `trend_reference` is
the per-reading specification.

Each binding's parameters and state are one record of a numpy structured array (`_state`, the
C struct whose layout the kernel exports as STATE, aligned to cache lines), and its ring
buffer holds (t, v) pairs (layout READING): real batches are small and spread over all
channels, so a reading costs the cache lines it touches, two or three of its record and one of
its ring, where an array per field cost one line each (`_hot`, read whole at every batch,
stays a flat array). The attributes (`_window_s`, `_live`, `slope_per_min`, ...) are views of
the record fields and index like arrays; they are updated in place (`self._x[...] = ...`),
never re-assigned, which would detach them.

The window is kept as running moments, not re-summed: per binding the count, the means of t
and v and the co-moments Ctt = sum (t - mean_t)^2 and Ctv = sum (t - mean_t)(v - mean_v) of
the readings in the window, updated when a reading enters (Welford 1962) and when one leaves
it (the same update run backwards), so a reading costs O(1) whatever the window length. The
slope is Ctv / Ctt. Centred moments keep the precision of the two-pass sums of the reference
(plain sums of t^2 would lose it to cancellation); the moments are rebuilt exactly whenever
the window is down to one reading, and summed afresh (two passes) every `max_points` readings
of a binding, staggered over bindings, so the rounding of the running updates cannot
accumulate. A window whose readings all share one timestamp has no slope (tested on the
timestamps, not on a Ctt that could be a rounding residue). The ring buffer of each binding
is `max_points` long and holds the readings that can still leave the window by time.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from detectors import _trend_kernel
from detectors.batching import BindingIndex, bound_readings
from detectors.level_machine import LevelMachine
from detectors.records import record_dtype, records
from detectors.threshold import Binding, ThresholdFindings, empty_findings
from ingest.batch import Batch
from lifeline.catalogue import Catalogue, Channel
from lifeline.config import Rule, Threshold
from lifeline.levels import LEVEL_NUMBER, LEVELS, level_name
from lifeline.rule_kinds import Trend

_NO_TS = np.iinfo(np.int64).min
_CACHE_LINE = 64


class TrendDetector:
    """Slopes and forecasts for every (trend rule, channel) binding."""

    kind = "trend"

    def __init__(self, bindings: Sequence[Binding], n_channels: int, paired: Sequence[Rule | None]):
        self.bindings = tuple(bindings)
        n = len(self.bindings)
        specs: list[Trend] = [b.rule.spec for b in self.bindings]
        self._index = BindingIndex(np.array([b.channel.index for b in self.bindings], np.int64), n_channels)
        #: one record per binding (layout `_trend_kernel.STATE`): its parameters and state, which
        #: the attributes below name as views, so they index like separate arrays
        self._state = _aligned_records(_trend_kernel.STATE, n)
        state = self._state
        self._window_s, self._min_points = state["window_s"], state["min_points"]
        self._max_points, self._horizon_s = state["max_points"], state["horizon_s"]
        self._is_forecast, self._direction, self._sign = state["is_forecast"], state["direction"], state["sign"]
        #: (bindings, 4) limits of the paired threshold rule's levels (binding i's level k at
        #: [i, k - 1]), NaN where undefined or unpaired
        self._limits = state["limits"]
        self._window_s[:] = [s.window_s for s in specs]
        self._min_points[:] = np.array([s.min_points for s in specs], np.int32)  # OverflowError past int32
        self._max_points[:] = np.array([s.max_points for s in specs], np.int32)
        self._horizon_s[:] = [s.horizon_s for s in specs]
        self._is_forecast[:] = [s.direction is None for s in specs]
        self._direction[:] = [-1.0 if s.direction == "falling" else 1.0 for s in specs]
        self.paired = tuple(paired)
        self._limits[...] = np.nan
        self._sign[:] = 1.0
        for i, rule in enumerate(self.paired):
            if rule is not None and rule.threshold is not None:
                for colour, limit in rule.threshold.levels.items():
                    self._limits[i, LEVEL_NUMBER[colour] - 1] = limit
                self._sign[i] = 1.0 if rule.threshold.direction == "above" else -1.0
        self._capacity = int(self._max_points.max()) if n else 1
        #: ring buffers of readings as (t, v) pairs (layout `_trend_kernel.READING`), t in s since
        #: `_origin_ms`: binding i's ring is the first `max_points[i]` of its `capacity` slots from
        #: i * capacity. Held through its two views only, which name it as the window history
        #: (the kernel gets `_t.base`, the ring itself).
        ring = records(_trend_kernel.READING, n * self._capacity)
        self._t, self._v = ring["t"], ring["v"]
        self._head = state["head"]  # next slot to write
        #: readings in the window: the newest `_live` entries of the ring
        self._live = state["live"]
        #: running moments of the window: means of t (s) and v, co-moments Ctt and Ctv
        self._mean_t, self._mean_v = state["mean_t"], state["mean_v"]
        self._ctt, self._ctv = state["ctt"], state["ctv"]
        self._last_ts = state["last_ts"]
        self._last_ts[:] = _NO_TS
        self._origin_ms: int | None = None
        #: latest slope (per minute), forecast level, its eta and next-level eta per binding
        self.slope_per_min, self.last_value = state["slope_per_min"], state["last_value"]
        self.forecast_level, self.forecast_eta_s = state["forecast_level"], state["forecast_eta_s"]
        self.next_level, self.next_eta_s = state["next_level"], state["next_eta_s"]
        self.slope_per_min[:] = np.nan
        self.last_value[:] = np.nan
        self.forecast_eta_s[:] = np.inf
        self.next_eta_s[:] = np.inf
        thresholds = []
        for binding, spec in zip(self.bindings, specs, strict=True):
            if spec.direction is None:
                pair = self.paired[binding.index]
                defined = pair.threshold.levels if pair is not None and pair.threshold is not None else {}
                # The forecast level number itself is the statistic; each level raises at its number.
                levels = {c: LEVEL_NUMBER[c] - 0.5 for c in LEVELS if c in defined} or {"red": 3.5}
                thresholds.append(Threshold("above", levels, 1.0, spec.hold_s))
            else:
                thresholds.append(Threshold("above", dict(spec.levels), spec.clear, spec.hold_s))
        self._machine = LevelMachine([(b.rule, b.channel) for b in self.bindings], thresholds)
        #: lowest level of each binding's machine; whether its last finite statistic reached it
        self._lowest = state["lowest"]
        self._lowest[:] = [min(th.levels.values(), default=np.inf) for th in thresholds]
        # Not in the records: every batch reads all of it (`feed` below), contiguous.
        self._hot = np.zeros(n, bool)

    @classmethod
    def from_rules(cls, catalogue: Catalogue, rules: Sequence[Rule]) -> TrendDetector:
        """Bind every trend rule to each channel it matches; a forecast rule is paired with the
        threshold rule it names, or else the first threshold rule matching the same channel.
        Channel-major, as `bind_rules` numbers bindings (why: see there)."""
        thresholds = [r for r in rules if r.kind == "threshold"]
        found: list[tuple[int, int, Rule, Channel, Rule | None]] = []
        for position, rule in enumerate(rules):
            if rule.kind != "trend":
                continue
            for channel in catalogue.channels:
                owner = catalogue.owner_of(channel.sensor)
                if not rule.matches(channel.sensor, owner, channel.metric):
                    continue
                candidates = [r for r in thresholds if r.matches(channel.sensor, owner, channel.metric)
                              and (rule.spec.forecast_rule in (None, r.id))]
                if rule.spec.direction is None and not candidates:
                    continue  # a forecast needs a threshold on the channel
                found.append((channel.index, position, rule, channel, candidates[0] if candidates else None))
        found.sort(key=lambda entry: entry[:2])
        bindings = [Binding(i, rule, channel) for i, (_, _, rule, channel, _) in enumerate(found)]
        return cls(bindings, len(catalogue), [threshold for *_, threshold in found])

    # -- evaluation ----------------------------------------------------------------------------
    def update(self, batch: Batch) -> ThresholdFindings:
        if len(batch) == 0 or not self.bindings:
            return empty_findings()
        if self._origin_ms is None:
            self._origin_ms = int(batch.ts.min())
        # Only bindings whose readings can change the level machine's state are fed to it: at
        # level 0, with every statistic of the batch below the lowest level and no run pending
        # from before it (the last statistic before the batch was below it too), the readings
        # leave every level and `since` as they are. That is nearly every binding in steady
        # operation, and the machine's per-reading cost was a fifth of the detector's.
        feed = (self._machine.level() > 0) | self._hot
        # Every reading of the batch in one call, each binding's in time order: the kernel skips
        # late ones and rows without a binding (statistic NaN), marks `_hot` (NaN, no slope yet,
        # is skipped by the machine and leaves a pending run pending: only a finite statistic
        # replaces the last one) and `feed`.
        stream, stamp, value = bound_readings(self._index, batch.channel, batch.ts, batch.value)
        stat, keep = np.empty(stream.size), np.empty(stream.size, np.intp)
        n_fed = _trend_kernel.advance(self._state, self._t.base, self._origin_ms, self._capacity, stream, stamp,
                                      value, stat, self._hot, feed, keep)
        if n_fed == 0:
            return empty_findings()
        keep = keep[:n_fed]
        found = self._machine.update(stream[keep], stamp[keep], stat[keep])
        forecast = self._is_forecast[found.binding]
        if not forecast.any():
            return found
        # A forecast alert shows the reading and the limit it is heading for, not the level
        # number that drove the level machine.
        level = np.where(found.level_after > 0, found.level_after, found.level_before).astype(np.intp)
        limit = self._limits[found.binding, np.maximum(level - 1, 0)]
        return ThresholdFindings(found.binding, found.ts, found.level_before, found.level_after,
                                 np.where(forecast, self.last_value[found.binding], found.value),
                                 np.where(forecast, limit, found.limit), found.started_at)

    # -- Detector protocol -----------------------------------------------------------------------
    def restore(self, binding: int, level: int, started_at: int, last_ts: int) -> None:
        self._machine.restore(binding, level, started_at, last_ts)

    def forecast(self, binding: int) -> dict | None:
        """`{"level", "eta_s", "slope_per_min"}` toward the forecast level, or the next level."""
        level, eta = int(self.forecast_level[binding]), float(self.forecast_eta_s[binding])
        if level == 0:
            level, eta = int(self.next_level[binding]), float(self.next_eta_s[binding])
        slope = float(self.slope_per_min[binding])
        if level == 0 or not np.isfinite(eta) or not np.isfinite(slope):
            return None
        return {"level": level_name(level), "eta_s": round(eta), "slope_per_min": round(slope, 4)}

    def details(self, binding: int) -> dict:
        spec: Trend = self.bindings[binding].rule.spec
        body: dict = {"kind": "forecast" if spec.direction is None else "trend"}
        forecast = self.forecast(binding)
        if forecast is not None:
            body["forecast"] = forecast
        return body

    def message(self, binding: int, level_before: int, level_after: int, value: float, limit: float) -> str:
        channel = self.bindings[binding].channel
        spec: Trend = self.bindings[binding].rule.spec
        unit = channel.unit
        slope = float(self.slope_per_min[binding])
        window = f"{spec.window_s / 60:g} min"
        forecast = self.forecast(binding)
        ahead = ""
        if forecast is not None:
            ahead = f"; {forecast['level']} in {_duration(forecast['eta_s'])}"
        if spec.direction is None:
            if level_after == 0:
                return f"{channel.metric} forecast cleared (slope {slope:+.3g} {unit}/min){ahead}"
            return (f"{channel.metric} rising {slope:+.3g} {unit}/min over {window}: "
                    f"{level_name(level_after)} expected{ahead} (forecast)")
        word = "rising" if spec.direction == "rising" else "falling"
        if level_after == 0:
            return f"{channel.metric} no longer {word} fast ({slope:+.3g} {unit}/min over {window})"
        return (f"{channel.metric} {word} {abs(slope):.3g} {unit}/min over {window} "
                f"(>= {level_name(level_after)} {limit:g}){ahead}")


def _aligned_records(layout: tuple[int, tuple[tuple[str, str, int], ...]], n: int) -> np.ndarray:
    """(n,) zeroed records of the layout starting on a cache line (numpy aligns to 16 bytes
    only), so that each record spans the cache lines its layout was arranged for."""
    dtype = record_dtype(layout)
    raw = np.zeros(n * dtype.itemsize + _CACHE_LINE, np.uint8)
    skip = -raw.ctypes.data % _CACHE_LINE
    return raw[skip:skip + n * dtype.itemsize].view(dtype)


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
