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
LevelMachine, so hysteresis, hold times and findings work as for thresholds. Evaluation is
round by round over a batch (see detectors.batching): each round computes the slope of every
binding that has a reading in it at once; `trend_reference` is the per-reading specification.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from detectors.batching import BindingIndex, each_round
from detectors.level_machine import LevelMachine
from detectors.threshold import Binding, ThresholdFindings, empty_findings
from ingest.batch import Batch
from lifeline.catalogue import Catalogue
from lifeline.config import Rule, Threshold
from lifeline.levels import LEVEL_NUMBER, LEVELS, level_name
from lifeline.rule_kinds import Trend

_NO_TS = np.iinfo(np.int64).min


def forecast_levels(limits: np.ndarray, sign: np.ndarray, value: np.ndarray, fitted: np.ndarray,
                    slope_s: np.ndarray, horizon_s: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Forecast level and eta for m bindings.

    limits : (m, 4) float64 limits of the threshold rule's levels (NaN where undefined)
    sign : (m,) +1 for an "above" rule, -1 for "below"
    value : (m,) current reading; fitted : (m,) regression value now; slope_s : (m,) per second
    horizon_s : (m,) seconds

    Returns (level, eta_s, next_level, next_eta_s): the highest level not yet reached whose
    eta is within the horizon (0 if none) with its eta, and the lowest level not yet reached
    with its eta (inf when the slope does not lead there).
    """
    reached = (value[:, None] * sign[:, None]) >= (limits * sign[:, None])
    toward = (slope_s * sign) > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        eta = (limits - fitted[:, None]) / slope_s[:, None]
    eta = np.where(~np.isnan(limits) & ~reached & toward[:, None] & (eta >= 0), eta, np.inf)
    within = eta <= horizon_s[:, None]
    numbers = np.arange(1, 5)
    level = np.max(np.where(within, numbers, 0), axis=1)
    level_eta = np.where(level > 0, eta[np.arange(len(level)), np.maximum(level - 1, 0)], np.inf)
    pending = ~np.isnan(limits) & ~reached
    has_next = pending.any(axis=1)
    next_index = np.argmax(pending, axis=1)
    next_level = np.where(has_next, next_index + 1, 0).astype(np.int8)
    next_eta = np.where(has_next, eta[np.arange(len(level)), next_index], np.inf)
    return level.astype(np.int8), level_eta, next_level, next_eta


class TrendDetector:
    """Slopes and forecasts for every (trend rule, channel) binding."""

    kind = "trend"

    def __init__(self, bindings: Sequence[Binding], n_channels: int, paired: Sequence[Rule | None]):
        self.bindings = tuple(bindings)
        n = len(self.bindings)
        specs: list[Trend] = [b.rule.spec for b in self.bindings]
        self._index = BindingIndex(np.array([b.channel.index for b in self.bindings], np.int64), n_channels)
        self._window_s = np.array([s.window_s for s in specs], np.float64)
        self._min_points = np.array([s.min_points for s in specs], np.int64)
        self._max_points = np.array([s.max_points for s in specs], np.int64)
        self._horizon_s = np.array([s.horizon_s for s in specs], np.float64)
        self._is_forecast = np.array([s.direction is None for s in specs], bool)
        self._direction = np.array([-1.0 if s.direction == "falling" else 1.0 for s in specs])
        self.paired = tuple(paired)
        limits = np.full((n, 4), np.nan)
        sign = np.ones(n)
        for i, rule in enumerate(self.paired):
            if rule is not None and rule.threshold is not None:
                for colour, limit in rule.threshold.levels.items():
                    limits[i, LEVEL_NUMBER[colour] - 1] = limit
                sign[i] = 1.0 if rule.threshold.direction == "above" else -1.0
        #: (bindings, 4) limits of the paired threshold rule, NaN where undefined or unpaired
        self._limits = limits
        self._sign = sign
        capacity = int(self._max_points.max()) if n else 1
        #: (bindings, capacity) ring buffers of reading time (s since `_origin_ms`) and value
        self._t = np.zeros((n, capacity))
        self._v = np.zeros((n, capacity))
        self._head = np.zeros(n, np.int64)  # next slot to write
        self._count = np.zeros(n, np.int64)  # readings in the buffer
        self._last_ts = np.full(n, _NO_TS, np.int64)
        self._origin_ms: int | None = None
        #: latest slope (per minute), forecast level, its eta and next-level eta per binding
        self.slope_per_min = np.full(n, np.nan)
        self.last_value = np.full(n, np.nan)
        self.forecast_level = np.zeros(n, np.int8)
        self.forecast_eta_s = np.full(n, np.inf)
        self.next_level = np.zeros(n, np.int8)
        self.next_eta_s = np.full(n, np.inf)
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

    @classmethod
    def from_rules(cls, catalogue: Catalogue, rules: Sequence[Rule]) -> TrendDetector:
        """Bind every trend rule to each channel it matches; a forecast rule is paired with the
        threshold rule it names, or else the first threshold rule matching the same channel."""
        thresholds = [r for r in rules if r.kind == "threshold"]
        bindings: list[Binding] = []
        paired: list[Rule | None] = []
        for rule in rules:
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
                bindings.append(Binding(len(bindings), rule, channel))
                paired.append(candidates[0] if candidates else None)
        return cls(bindings, len(catalogue), paired)

    # -- evaluation ----------------------------------------------------------------------------
    def update(self, batch: Batch) -> ThresholdFindings:
        if len(batch) == 0 or not self.bindings:
            return empty_findings()
        if self._origin_ms is None:
            self._origin_ms = int(batch.ts.min())
        streams, stamps, stats = [], [], []
        for b, t, v in each_round(self._index, batch.channel, batch.ts, batch.value, self._last_ts):
            self._last_ts[b] = t
            stat = self._round(b, t, v)
            streams.append(b)
            stamps.append(t)
            stats.append(stat)
        if not streams:
            return empty_findings()
        found = self._machine.update(np.concatenate(streams), np.concatenate(stamps), np.concatenate(stats))
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

    def _round(self, b: np.ndarray, ts: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Append one reading per binding and return the statistic for the level machine."""
        t = (ts - self._origin_ms) / 1000.0
        slot = self._head[b]
        self._t[b, slot] = t
        self._v[b, slot] = v
        capacity = self._t.shape[1]
        self._head[b] = (slot + 1) % capacity
        self._count[b] = np.minimum(self._count[b] + 1, capacity)

        tb, vb = self._t[b], self._v[b]
        recency = (self._head[b, None] - 1 - np.arange(capacity)) % capacity  # 0 = newest
        keep = np.minimum(self._count[b], self._max_points[b])
        valid = (recency < keep[:, None]) & (tb >= (t - self._window_s[b])[:, None])
        weight = valid.astype(np.float64)
        n = weight.sum(axis=1)
        mean_t = (tb * weight).sum(axis=1) / n
        mean_v = (vb * weight).sum(axis=1) / n
        dt = (tb - mean_t[:, None]) * weight
        dv = (vb - mean_v[:, None]) * weight
        stt = (dt * dt).sum(axis=1)
        stv = (dt * dv).sum(axis=1)
        enough = (n >= self._min_points[b]) & (stt > 0)
        with np.errstate(divide="ignore", invalid="ignore"):
            slope_s = np.where(enough, stv / stt, np.nan)
        fitted = mean_v + slope_s * (t - mean_t)
        self.slope_per_min[b] = slope_s * 60.0
        self.last_value[b] = v

        level, eta, next_level, next_eta = forecast_levels(self._limits[b], self._sign[b], v, fitted, slope_s,
                                                           self._horizon_s[b])
        self.forecast_level[b] = np.where(enough, level, 0)
        self.forecast_eta_s[b] = np.where(enough, eta, np.inf)
        self.next_level[b] = next_level
        self.next_eta_s[b] = np.where(enough, next_eta, np.inf)
        stat = np.where(self._is_forecast[b], self.forecast_level[b].astype(np.float64),
                        slope_s * 60.0 * self._direction[b])
        return np.where(enough, stat, np.nan)

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


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
