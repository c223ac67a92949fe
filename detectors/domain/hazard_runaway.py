"""Runaway warning: a unit's temperature and pressure rising together.

Loss of cooling or an exothermic reaction in a tank or reactor heats the contents and the
vapour pressure follows; both climb together long before either reaches its high-high limit
(DOMAIN.md). For every unit (asset) with a temperature and a pressure channel, at each reading
the least-squares slopes of both over the last `window` seconds are taken (irregular sampling
works) and turned into the *joint index*

    J = min(slope_T / rate_T, slope_P / rate_P)

the multiple of the configured "rising" rates that *both* channels reach: one channel rising
alone (a sensor drifting, the sun on one gauge) keeps J near zero. J feeds a LevelMachine.
The unit's hazard grade (R, I-IV) travels with its alerts. Every reading of a batch is
evaluated at once (prefix sums over each channel's window, see `window_slopes`), so a compressed
replay or a gateway's backfill costs a few array passes, not a loop over its readings.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from detectors.batching import BindingIndex
from detectors.level_machine import LevelMachine
from detectors.threshold import Binding, ThresholdFindings, empty_findings
from ingest.batch import Batch
from lifeline.catalogue import Catalogue, Channel
from lifeline.config import Rule, Threshold
from lifeline.domain_rules.hazard import Grade, Runaway
from lifeline.levels import level_name

_NO_TS = np.iinfo(np.int64).min
TEMPERATURE, PRESSURE = 0, 1


def window_slopes(series: np.ndarray, ts: np.ndarray, value: np.ndarray, window_ms: np.ndarray,
                  wanted: np.ndarray, at: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Least-squares slope of each query's series over the window [at - window, at].

    series, ts, value : (n,) int64, int64 epoch ms, float64 - readings sorted by (series, ts)
    window_ms : (series count,) int64 - window of each series
    wanted, at : (k,) int64 - the series and time (epoch ms) of each query

    Returns (slope per second, points, covered), each (k,): the slope is NaN below 2 points or
    when their times are (numerically) equal; `covered` when the oldest point lies in the
    older half of the window. Prefix sums of (1, t, v, t^2, t v) per series, window bounds by
    binary search: no loop over readings. Times count from each series' oldest reading, so
    the sums stay small numbers.
    """
    k = at.size
    if series.size == 0:
        return np.full(k, np.nan), np.zeros(k), np.zeros(k, bool)
    starts = np.flatnonzero(np.r_[True, series[1:] != series[:-1]])
    first_t = np.repeat(ts[starts], np.diff(np.r_[starts, series.size]))
    t = (ts - first_t) / 1000.0
    sums = np.zeros((5, series.size + 1))  # sums[:, i]: sums over the first i readings
    np.cumsum(np.stack([np.ones_like(t), t, value, t * t, t * value]), axis=1, out=sums[:, 1:])
    origin = int(ts.min())
    span = int(ts.max()) - origin + 2
    keys = series * span + (ts - origin)
    hi = np.searchsorted(keys, wanted * span + np.clip(at - origin, -1, span - 1), side="right")
    since = at - window_ms[wanted]
    lo = np.minimum(np.searchsorted(keys, wanted * span + np.clip(since - origin, 0, span - 1), side="left"), hi)
    n, st, sv, stt, stv = sums[:, hi] - sums[:, lo]
    with np.errstate(invalid="ignore", divide="ignore"):
        spread = n * stt - st * st  # n^2 x the variance of the times
        # rounding leaves equal times a spread of ~1e-16 x t^2: that is no spread at all
        slope = np.where((n >= 2) & (spread > 1e-12 * n * (n + stt)), (n * stv - st * sv) / spread, np.nan)
    oldest = np.where(lo < hi, ts[np.minimum(lo, ts.size - 1)], np.iinfo(np.int64).max)
    return slope, n, oldest <= at - window_ms[wanted] // 2


class RunawayDetector:
    """Joint-slope levels for every (runaway rule, unit) binding.

    Each channel's readings of the last window are kept (`_tail`); a batch is merged with them,
    and the slopes at every new reading come from prefix sums over each channel's time-ordered
    readings (window bounds by binary search), so a batch of any size is a few array passes.
    """

    kind = "runaway"

    def __init__(self, units: Sequence[tuple[Rule, Channel, Channel, Grade | None]], n_channels: int):
        """units : (rule, temperature channel, pressure channel, the unit's grade) per unit."""
        self.units = tuple(units)
        n = len(self.units)
        self.bindings = tuple(Binding(i, rule, replace(pressure, metric="runaway", unit=""))
                              for i, (rule, _, pressure, _) in enumerate(self.units))
        specs: list[Runaway] = [u[0].spec for u in self.units]
        self._specs = specs
        self.grades = tuple(u[3] for u in self.units)
        slot_channel = np.array([c.index for _, temp, pres, _ in self.units for c in (temp, pres)], np.int64)
        self._index = BindingIndex(slot_channel, n_channels)  # series = 2 * unit + (0 temperature, 1 pressure)
        self._window_ms = np.repeat(np.array([s.window_s * 1000.0 for s in specs]), 2).astype(np.int64)
        self._min_points = np.array([s.min_points for s in specs])
        self._rate_per_s = np.array([[s.rates[s.temperature] / 60.0, s.rates[s.pressure] / 60.0] for s in specs]
                                    ).reshape(n, 2)
        #: readings of the last window of every series: (series, ts ms, value), in runs sorted by (series, ts)
        self._tail = (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0))
        self._last_ts = np.full(2 * n, _NO_TS, np.int64)
        self.slope_per_min = np.full((n, 2), np.nan)
        self.latest = np.full((n, 2), np.nan)
        #: slopes per minute at each binding's latest level change (what its message reports)
        self._at_change = np.full((n, 2), np.nan)
        self._machine = LevelMachine([(b.rule, b.channel) for b in self.bindings],
                                     [Threshold("above", dict(s.levels), s.clear, s.hold_s) for s in specs])

    @classmethod
    def from_rules(cls, catalogue: Catalogue, rules: Sequence[Rule]) -> RunawayDetector:
        """A unit per asset with a matched temperature and pressure channel (first of each)."""
        units = []
        for rule in rules:
            if rule.kind != "runaway":
                continue
            spec: Runaway = rule.spec
            found: dict[str, dict[str, Channel]] = {}
            for channel in catalogue.channels:
                sensor = channel.sensor
                if channel.metric in (spec.temperature, spec.pressure) and \
                        rule.matches(sensor, catalogue.owner_of(sensor), channel.metric):
                    found.setdefault(sensor.asset, {}).setdefault(channel.metric, channel)
            for pair in found.values():
                if spec.temperature in pair and spec.pressure in pair:
                    pressure = pair[spec.pressure]
                    grade = spec.grades.of(pressure.sensor.field_value(spec.grades.by)) if spec.grades else None
                    units.append((rule, pair[spec.temperature], pressure, grade))
        return cls(units, len(catalogue))

    # -- evaluation ----------------------------------------------------------------------------
    def update(self, batch: Batch) -> ThresholdFindings:
        if len(batch) == 0 or not self.bindings:
            return empty_findings()
        series, row = self._index.expand(batch.channel)
        if series.size == 0:
            return empty_findings()
        ts, value = np.asarray(batch.ts, np.int64)[row], np.asarray(batch.value, np.float64)[row]
        on_time = ts >= self._last_ts[series]  # a late reading is archived, not evaluated
        series, ts, value = series[on_time], ts[on_time], value[on_time]
        if series.size == 0:
            return empty_findings()
        np.maximum.at(self._last_ts, series, ts)

        # only the units this batch touches: a small batch costs little whatever the city's size
        unit = series // 2
        touched = np.zeros(len(self.bindings), bool)
        touched[unit] = True
        tail_s, tail_t, tail_v = self._tail
        mine = touched[tail_s // 2]
        all_s = np.concatenate([tail_s[mine], series])
        all_t = np.concatenate([tail_t[mine], ts])
        all_v = np.concatenate([tail_v[mine], value])
        # the tail is kept in (series, ts) order, so this is a merge of sorted runs for timsort
        origin = int(all_t.min())
        order = np.argsort(all_s * (int(all_t.max()) - origin + 1) + (all_t - origin), kind="stable")
        all_s, all_t, all_v = all_s[order], all_t[order], all_v[order]
        k = ts.size  # both channels of each reading's unit, in one pass over the prefix sums
        found_slope, found_points, found_covered = window_slopes(
            all_s, all_t, all_v, self._window_ms, np.r_[2 * unit, 2 * unit + 1], np.r_[ts, ts])
        slope = np.column_stack([found_slope[:k], found_slope[k:]])  # (k, 2): temperature, pressure per second
        points = np.column_stack([found_points[:k], found_points[k:]])
        covered = np.column_stack([found_covered[:k], found_covered[k:]])
        enough = ((points >= self._min_points[unit][:, None]) & covered).all(axis=1)
        joint = np.where(enough, np.min(slope / self._rate_per_s[unit], axis=1), np.nan)

        # state for details and messages: the newest reading of each unit
        newest = np.lexsort((ts, unit))
        last = newest[np.r_[unit[newest][1:] != unit[newest][:-1], True]]
        self.slope_per_min[unit[last]] = slope[last] * 60.0
        ends = np.flatnonzero(np.r_[all_s[1:] != all_s[:-1], True])  # each series' newest reading
        self.latest.reshape(-1)[all_s[ends]] = all_v[ends]
        keep = all_t >= self._last_ts[all_s] - self._window_ms[all_s]
        self._tail = (np.concatenate([tail_s[~mine], all_s[keep]]), np.concatenate([tail_t[~mine], all_t[keep]]),
                      np.concatenate([tail_v[~mine], all_v[keep]]))

        found = self._machine.update(unit, ts, joint)
        if len(found):
            # the slopes at the reading that changed the level, for the message
            for b, t in zip(found.binding.tolist(), found.ts.tolist(), strict=True):  # a few per batch
                self._at_change[b] = slope[np.flatnonzero((unit == b) & (ts == t))[-1]] * 60.0
        return found

    # -- Detector protocol -----------------------------------------------------------------------
    def restore(self, binding: int, level: int, started_at: int, last_ts: int) -> None:
        self._machine.restore(binding, level, started_at, last_ts)

    def _eta(self, binding: int) -> tuple[str, float] | None:
        """(metric, seconds) of the first high-high limit reached at the current slopes."""
        spec = self._specs[binding]
        best = None
        for which, metric in ((TEMPERATURE, spec.temperature), (PRESSURE, spec.pressure)):
            limit, slope = spec.limits.get(metric), self._at_change[binding, which]
            value = self.latest[binding, which]
            if limit is None or not slope > 0 or not np.isfinite(value) or value >= limit:
                continue
            eta = (limit - value) / slope * 60.0
            if best is None or eta < best[1]:
                best = (metric, eta)
        return best

    def details(self, binding: int) -> dict:
        spec = self._specs[binding]
        body: dict = {"kind": "runaway", "slopes_per_min": {
            metric: round(float(self._at_change[binding, which]), 4)
            for which, metric in ((TEMPERATURE, spec.temperature), (PRESSURE, spec.pressure))
            if np.isfinite(self._at_change[binding, which])}}
        eta = self._eta(binding)
        if eta is not None:
            body["eta_s"] = {"metric": eta[0], "seconds": round(eta[1])}
        if self.grades[binding] is not None:
            body["hazard_grade"] = self.grades[binding].as_dict()
        return body

    def message(self, binding: int, level_before: int, level_after: int, value: float, limit: float) -> str:
        temp, pressure = self.units[binding][1], self.units[binding][2]
        sensor = pressure.sensor
        grade = self.grades[binding]
        where = f"unit {sensor.asset}" + (f" of {sensor.extra['structure']}" if sensor.extra.get("structure") else "")
        if grade is not None:
            where += f" (hazard source grade {grade.level}, R {grade.r:.0f})"
        slopes = self._at_change[binding]
        if level_after == 0:
            return f"{where}: temperature and pressure no longer rising together (cleared)"
        eta = self._eta(binding)
        ahead = ""
        if eta is not None:
            spec = self._specs[binding]
            ahead = f"; {eta[0]} reaches high-high {spec.limits[eta[0]]:g} in about {eta[1] / 60:.0f} min"
        return (f"Runaway warning at {where}: {temp.metric} {slopes[TEMPERATURE]:+.2f} {temp.unit}/min and "
                f"{pressure.metric} {slopes[PRESSURE]:+.3f} {pressure.unit}/min rising together over "
                f"{self._specs[binding].window_s / 60:g} min ({value:.1f} x the rising rates, >= "
                f"{level_name(level_after)} {limit:g}){ahead}: check cooling and agitation, prepare emergency "
                f"cooling, venting or shutdown")
