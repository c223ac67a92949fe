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

The window is kept as running moments, not re-summed: per binding the count, the means of t
and v and the co-moments Ctt = sum (t - mean_t)^2 and Ctv = sum (t - mean_t)(v - mean_v) of
the readings in the window, updated when a reading enters (Welford 1962) and when one leaves
it (the same update run backwards), so a reading costs O(1) whatever the window length. The
slope is Ctv / Ctt. Centred moments keep the precision of the two-pass sums of the reference
(plain sums of t^2 would lose it to cancellation); the moments are rebuilt exactly whenever
the window is down to one reading, and a window whose readings all share one timestamp has no
slope (tested on the timestamps, not on a Ctt that could be a rounding residue). The ring
buffer of each binding is `max_points` long and holds the readings that can still leave the
window by time.
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

    limits : (4, m) float64 limits of the threshold rule's levels, level-major (NaN where
        undefined; numpy runs four long rows much faster than m rows of four)
    sign : (m,) +1 for an "above" rule, -1 for "below"
    value : (m,) current reading; fitted : (m,) regression value now; slope_s : (m,) per second
    horizon_s : (m,) seconds

    Returns (level, eta_s, next_level, next_eta_s): the highest level not yet reached whose
    eta is within the horizon (0 if none) with its eta, and the lowest level not yet reached
    with its eta (inf when the slope does not lead there).
    """
    # NaN (undefined) limits compare False: never reached, and masked out of `pending`.
    pending = ~np.isnan(limits) & ~(value * sign >= limits * sign)
    toward = (slope_s * sign) > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        eta = (limits - fitted) / slope_s
    eta = np.where(pending & toward & (eta >= 0), eta, np.inf)
    level = np.max((eta <= horizon_s) * _LEVEL_NUMBERS, axis=0).astype(np.int8)
    level_eta = np.where(level > 0, np.take_along_axis(eta, np.maximum(level - 1, 0)[None].astype(np.intp), 0)[0],
                         np.inf)
    has_next = pending.any(axis=0)
    next_index = np.argmax(pending, axis=0)
    next_level = np.where(has_next, next_index + 1, 0).astype(np.int8)
    next_eta = np.where(has_next, np.take_along_axis(eta, next_index[None], 0)[0], np.inf)
    return level, level_eta, next_level, next_eta


#: (4, 1) level number of each row of level-major arrays
_LEVEL_NUMBERS = np.arange(1, 5, dtype=np.int8)[:, None]


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
        #: (4, bindings) limits of the paired threshold rule, NaN where undefined or unpaired
        self._limits = np.ascontiguousarray(limits.T)
        self._sign = sign
        capacity = int(self._max_points.max()) if n else 1
        #: (bindings, capacity) ring buffers of reading time (s since `_origin_ms`) and value;
        #: binding i uses the first `max_points[i]` columns
        self._t = np.zeros((n, capacity))
        self._v = np.zeros((n, capacity))
        self._head = np.zeros(n, np.int32)  # next slot to write
        #: readings in the window: the newest `_live` entries of the ring
        self._live = np.zeros(n, np.int32)
        #: running moments of the window: means of t (s) and v, co-moments Ctt and Ctv
        self._mean_t = np.zeros(n)
        self._mean_v = np.zeros(n)
        self._ctt = np.zeros(n)
        self._ctv = np.zeros(n)
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
        #: lowest level of each binding's machine; whether its last finite statistic reached it
        self._lowest = np.array([min(th.levels.values(), default=np.inf) for th in thresholds], np.float64)
        self._hot = np.zeros(n, bool)

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
        # Only bindings whose readings can change the level machine's state are fed to it: at
        # level 0, with every statistic of the batch below the lowest level and no run pending
        # from before it (the last statistic before the batch was below it too), the readings
        # leave every level and `since` as they are. That is nearly every binding in steady
        # operation, and the machine's per-reading cost was a fifth of the detector's.
        feed = (self._machine.level() > 0) | self._hot
        for b, t, v in each_round(self._index, batch.channel, batch.ts, batch.value, self._last_ts):
            self._last_ts[b] = t
            stat = self._round(b, t, v)
            streams.append(b)
            stamps.append(t)
            stats.append(stat)
            # NaN (no slope yet) is skipped by the machine and leaves a pending run pending:
            # only a finite statistic replaces the last one.
            finite = np.flatnonzero(np.isfinite(stat))
            hot = stat[finite] >= self._lowest[b[finite]]
            self._hot[b[finite]] = hot
            feed[b[finite[hot]]] = True
        if not streams:
            return empty_findings()
        stream = np.concatenate(streams)
        keep = np.flatnonzero(feed[stream])
        if keep.size == 0:
            return empty_findings()
        found = self._machine.update(stream[keep], np.concatenate(stamps)[keep], np.concatenate(stats)[keep])
        forecast = self._is_forecast[found.binding]
        if not forecast.any():
            return found
        # A forecast alert shows the reading and the limit it is heading for, not the level
        # number that drove the level machine.
        level = np.where(found.level_after > 0, found.level_after, found.level_before).astype(np.intp)
        limit = self._limits[np.maximum(level - 1, 0), found.binding]
        return ThresholdFindings(found.binding, found.ts, found.level_before, found.level_after,
                                 np.where(forecast, self.last_value[found.binding], found.value),
                                 np.where(forecast, limit, found.limit), found.started_at)

    def _round(self, b: np.ndarray, ts: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Append one reading per binding and return the statistic for the level machine.

        b : (m,) distinct bindings; ts : (m,) int64 epoch ms; v : (m,) float64 readings
        """
        t = (ts - self._origin_ms) / 1000.0
        span = self._max_points[b]
        head = self._head[b].astype(np.intp)
        moments = _Moments(self._live[b], self._mean_t[b], self._mean_v[b], self._ctt[b], self._ctv[b])
        # Readings leave the window oldest first: in a full ring (max_points) the one the new
        # reading overwrites, and any older than the window (seconds). Masks over the whole
        # round rather than subsets: in steady operation nearly every binding loses one.
        lower = t - self._window_s[b]
        leaving = moments.n == span
        while True:
            oldest = (head - moments.n) % span
            oldest_t = self._t[b, oldest]
            leaving |= (moments.n > 0) & (oldest_t < lower)
            if not leaving.any():
                break
            moments.leave(leaving, oldest_t, self._v[b, oldest])
            # Down to one reading (or none): take it as it is, so no rounding residue outlives it.
            few = np.flatnonzero(leaving & (moments.n <= 1))
            if few.size:
                newest = (oldest[few] + 1) % span[few]
                moments.reset(few, self._t[b[few], newest], self._v[b[few], newest])
            leaving = np.zeros(b.size, bool)
        # The oldest reading of the window once the new one is in (itself in an empty window).
        oldest_t = np.where(moments.n > 0, oldest_t, t)
        self._t[b, head] = t
        self._v[b, head] = v
        head = (head + 1) % span
        self._head[b] = head
        moments.enter(t, v)
        # Every max_points readings (staggered by binding, to spread the work over rounds) the
        # moments are summed afresh, so the rounding of the running updates cannot accumulate.
        again = np.flatnonzero(head == b % span)
        if again.size:
            moments.refit(again, *self._window_of(b[again], head[again], span[again], moments.n[again]))
        self._live[b], self._mean_t[b], self._mean_v[b] = moments.n, moments.mean_t, moments.mean_v
        self._ctt[b], self._ctv[b] = moments.ctt, moments.ctv

        # A slope needs min_points readings at two different times at least.
        enough = (moments.n >= self._min_points[b]) & (oldest_t < t) & (moments.ctt > 0)
        with np.errstate(divide="ignore", invalid="ignore"):
            slope_s = np.where(enough, moments.ctv / moments.ctt, np.nan)
        self.slope_per_min[b] = slope_s * 60.0
        self.last_value[b] = v
        stat = slope_s * 60.0 * self._direction[b]

        forecast = self._is_forecast[b]
        if forecast.any():
            # Only forecast rules have a paired threshold; the others keep "no forecast". A
            # forecast without a slope, or with one leading away from the limits, has no level
            # and no eta (the next level is then never shown): only the rest is computed.
            fb = b[forecast]
            self.forecast_level[fb] = 0
            self.forecast_eta_s[fb] = self.next_eta_s[fb] = np.inf
            self.next_level[fb] = 0
            go = np.flatnonzero(forecast & enough & (slope_s * self._sign[b] > 0))
            if go.size:
                gb, g_slope = b[go], slope_s[go]
                fitted = moments.mean_v[go] + g_slope * (t[go] - moments.mean_t[go])
                (self.forecast_level[gb], self.forecast_eta_s[gb], self.next_level[gb],
                 self.next_eta_s[gb]) = forecast_levels(self._limits[:, gb], self._sign[gb], v[go], fitted, g_slope,
                                                        self._horizon_s[gb])
            stat[forecast] = np.where(enough[forecast], self.forecast_level[fb], np.nan)
        return stat

    def _window_of(self, b: np.ndarray, head: np.ndarray, span: np.ndarray, n: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(k, capacity) ring buffers (times, values) of bindings `b` and which slots are in the
        window: the newest `n`, counting back from the one before `head` (sums need no order)."""
        slot = np.arange(self._t.shape[1])
        age = (head[:, None] - 1 - slot) % span[:, None]  # 0 = newest
        return self._t[b], self._v[b], (age < n[:, None]) & (slot < span[:, None])

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


class _Moments:
    """Count, means and co-moments of the windows of a round's bindings, (m,) each.

    Welford's update when a reading (t, v) enters; the same update solved for the previous
    state when one leaves. Both keep the moments centred, as precise as two-pass sums.
    """

    def __init__(self, n: np.ndarray, mean_t: np.ndarray, mean_v: np.ndarray, ctt: np.ndarray, ctv: np.ndarray):
        self.n, self.mean_t, self.mean_v, self.ctt, self.ctv = n, mean_t, mean_v, ctt, ctv

    def enter(self, t: np.ndarray, v: np.ndarray) -> None:
        """Every row gains a reading. (An empty window has zero moments: the first reading
        then gives mean_t = t and Ctt = 0 exactly.)"""
        self.n = self.n + 1
        dt = t - self.mean_t
        self.mean_t = self.mean_t + dt / self.n
        self.mean_v = self.mean_v + (v - self.mean_v) / self.n
        self.ctt = self.ctt + dt * (t - self.mean_t)
        self.ctv = self.ctv + dt * (v - self.mean_v)

    def leave(self, leaving: np.ndarray, t: np.ndarray, v: np.ndarray) -> None:
        """The rows marked in `leaving` lose the reading (t, v) of their window. A row left
        with fewer than two readings must be `reset`. (The other rows get deviations of 0,
        which leave their moments exactly as they are.)"""
        self.n = self.n - leaving
        dt = np.where(leaving, t - self.mean_t, 0.0)
        dv = np.where(leaving, v - self.mean_v, 0.0)
        k = np.maximum(self.n, 1)
        self.mean_t = self.mean_t - dt / k
        self.mean_v = self.mean_v - dv / k
        self.ctt = self.ctt - dt * (t - self.mean_t)
        self.ctv = self.ctv - dt * (v - self.mean_v)

    def refit(self, i: np.ndarray, t: np.ndarray, v: np.ndarray, inside: np.ndarray) -> None:
        """Rows `i` summed afresh (two-pass) from their window: (k, w) times and values, and
        which of them are in it."""
        n = self.n[i]
        mean_t = np.where(inside, t, 0.0).sum(axis=1) / n
        mean_v = np.where(inside, v, 0.0).sum(axis=1) / n
        dt = np.where(inside, t - mean_t[:, None], 0.0)
        self.ctt[i] = np.einsum("ij,ij->i", dt, dt)
        self.ctv[i] = np.einsum("ij,ij->i", dt, v - mean_v[:, None])
        self.mean_t[i], self.mean_v[i] = mean_t, mean_v

    def reset(self, i: np.ndarray, t: np.ndarray, v: np.ndarray) -> None:
        """Rows `i` hold exactly the one reading (t, v), or none (zero moments) if their count is 0."""
        one = self.n[i] == 1
        self.mean_t[i], self.mean_v[i] = np.where(one, t, 0.0), np.where(one, v, 0.0)
        self.ctt[i], self.ctv[i] = 0.0, 0.0


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
