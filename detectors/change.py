"""Change detection on a learned baseline: CUSUM (Page 1954) and EWMA control charts.

A change rule catches shifts that never cross a fixed threshold: a strain baseline that steps
by two standard deviations, methane in a manhole creeping up by a fraction of a %LEL. Each
*binding* (one change rule on one channel) learns the channel's normal behaviour and turns
every reading into a statistic in units of the baseline's standard deviation, which is fed
into a `LevelMachine` (levels, hold time, findings, exactly as for thresholds).

Semantics, per binding (``detectors.change_reference`` is the readable per-reading version):

* **Warm-up.** The first ``warmup`` evaluated readings form the baseline with Welford's
  online algorithm (Welford 1962): mean and sample variance. They get no verdict: their
  statistic is NaN, which the LevelMachine skips.
* **Statistic.** With ``sigma = max(sqrt(var), SIGMA_FLOOR_REL * |mean|, SIGMA_FLOOR_ABS)``
  and ``z = (x - mean) / sigma``:

  - ``cusum`` (Page 1954, tabular form)::

        S+ = min(max(0, S+ + z - k), cap)      S- = min(max(0, S- - z - k), cap)

    statistic S+ ("up"), S- ("down") or max(S+, S-) ("both"). ``cap`` is the highest level
    of the rule: a sum above it raises nothing more, and capping it lets the alarm clear within
    a bounded number of readings once the shift is over (an uncapped sum grows without bound
    during a long alarm and would take as long to come back down).
  - ``ewma`` (Roberts 1959): ``e = lam * x + (1 - lam) * e`` starting at the baseline mean;
    ``d = (e - mean) / (sigma * sqrt(lam / (2 - lam)))`` (the asymptotic sigma of the EWMA);
    statistic max(d, 0) ("up"), max(-d, 0) ("down") or max of both = |d| ("both").

* **Levels.** The rule's levels are limits on the statistic ("above"), cleared with the
  hysteresis factor `clear` of the rule (default 0.8) and raised after the rule's hold time (`for`).
* **Learning.** After warm-up the baseline follows *normal* readings with weight ``learn``
  (exponentially weighted mean and variance, Finch 2009)::

        diff = x - mean; incr = learn * diff; mean += incr; var = (1 - learn) * (var + diff * incr)

  A reading is normal when the binding's level was 0 before it and is 0 after it and its
  statistic is below the rule's lowest level. Readings in alarm, or on their way to one, are
  never learned, so a slow rise is not absorbed into the baseline.
* **Restart after an alarm.** When a reading clears the alarm (level > 0 before, 0 after) the
  chart restarts: CUSUM sums go back to 0, the EWMA back to the baseline mean.
* **Ordering.** As for every detector: a binding's readings are evaluated in (ts, batch row)
  order and a reading older than the newest one already evaluated is skipped
  (`detectors.batching.rounds`).

Vectorisation: a batch is evaluated round by round (round k = the k-th reading of every
binding that has one); each round computes the statistic of all its bindings with array
operations, feeds it to the LevelMachine, then learns. The level must be known before
learning, so the LevelMachine runs once per round, on the few readings that can change its
state. Arithmetic is done in the same order as in the scalar reference, so the two agree bit
for bit.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from detectors.batching import BindingIndex, each_round
from detectors.formatting import with_unit
from detectors.level_machine import LevelMachine
from detectors.threshold import Binding, ThresholdFindings, bind_rules, empty_findings
from ingest.batch import Batch
from lifeline.catalogue import Catalogue
from lifeline.config import Rule, Threshold
from lifeline.levels import LEVELS, level_name
from lifeline.rule_kinds import Change

#: Floor on the baseline sigma, relative to |mean|: a channel that did not vary during warm-up
#: (quantised or very steady) would otherwise have sigma 0 and turn its first change of one
#: quantisation step into an infinite z. 0.1 % of the mean is below any sensor's resolution
#: that matters here (0.12 microstrain at 120 microstrain).
SIGMA_FLOOR_REL = 1e-3
#: Absolute floor on the baseline sigma, in the channel's unit, for a baseline mean of 0.
SIGMA_FLOOR_ABS = 1e-9

_BOTH, _UP, _DOWN = 0, 1, 2
_DIRECTION = {"both": _BOTH, "up": _UP, "down": _DOWN}
_NO_TS = np.iinfo(np.int64).min






def change_threshold(spec: Change) -> Threshold:
    """The levels of a change rule as a threshold on its statistic (sigma units)."""
    return Threshold(direction="above", levels=dict(spec.levels), clear=spec.clear, hold_s=spec.hold_s)


def ewma_scale(lam: float) -> float:
    """Asymptotic standard deviation of an EWMA with weight `lam`, in units of the readings' sigma."""
    return math.sqrt(lam / (2.0 - lam))






class ChangeDetector:
    """Baseline, chart and level state of every (change rule, channel) binding.

    Parameters
    ----------
    bindings : sequence of Binding
        ``bindings[i].index == i``; every rule has kind "change" and a `Change` spec.
    n_channels : int
        Number of catalogue channels; batch rows of other channels are ignored.
    """

    kind = "change"

    def __init__(self, bindings: Sequence[Binding], n_channels: int):
        self.bindings: tuple[Binding, ...] = tuple(bindings)
        n = len(self.bindings)
        specs: list[Change] = [b.rule.spec for b in self.bindings]
        for i, binding in enumerate(self.bindings):
            if binding.index != i:
                raise ValueError(f"binding at position {i} has index {binding.index}")
        self.n_channels = int(n_channels)
        self._index = BindingIndex(np.array([b.channel.index for b in self.bindings], np.int64), n_channels)

        # -- parameters, (bindings,) each ---------------------------------------------------------
        #: bool - True for a cusum rule, False for ewma
        self._is_cusum = np.array([s.method == "cusum" for s in specs], bool)
        #: int8 - _BOTH, _UP or _DOWN
        self._direction = np.array([_DIRECTION[s.direction] for s in specs], np.int8)
        #: CUSUM allowance, sigma units
        self._k = np.array([s.k for s in specs], np.float64)
        #: EWMA weight and its asymptotic sigma factor sqrt(lam / (2 - lam))
        self._lam = np.array([s.lam for s in specs], np.float64)
        self._ewma_scale = np.array([ewma_scale(s.lam) for s in specs], np.float64)
        #: readings that form the baseline
        self._warmup = np.array([s.warmup for s in specs], np.int32)
        #: weight with which the baseline follows normal readings
        self._learn_weight = np.array([s.learn for s in specs], np.float64)
        #: lowest level's limit (sigma units): statistics at or above it are never learned
        self._lowest = np.array([_ordered(s.levels)[0] for s in specs], np.float64)
        #: highest level's limit: the cap on the CUSUM sums
        self._cap = np.array([_ordered(s.levels)[-1] for s in specs], np.float64)

        # -- state, (bindings,) each --------------------------------------------------------------
        #: int32 - readings of the warm-up so far; == warmup once the baseline is formed
        self._count = np.zeros(n, np.int32)
        #: float64 - baseline mean, channel unit
        self._mean = np.zeros(n, np.float64)
        #: float64 - during warm-up Welford's sum of squared deviations M2, then the variance
        self._var = np.zeros(n, np.float64)
        #: float64 - CUSUM sums S+ and S-, sigma units
        self._upper = np.zeros(n, np.float64)
        self._lower = np.zeros(n, np.float64)
        #: float64 - EWMA of the readings, channel unit
        self._ewma = np.zeros(n, np.float64)
        #: float64 - statistic of the latest evaluated reading (NaN during warm-up)
        self._stat = np.full(n, np.nan)
        #: float64 - latest evaluated reading, channel unit (NaN before any)
        self._value = np.full(n, np.nan)
        #: int8 - confirmed level, mirrored from the LevelMachine's findings
        self._level = np.zeros(n, np.int8)
        #: int64 - newest ts evaluated, epoch ms
        self._last_ts = np.full(n, _NO_TS, np.int64)

        self._machine = LevelMachine([(b.rule, b.channel) for b in self.bindings],
                                     [change_threshold(s) for s in specs])

    @classmethod
    def from_rules(cls, catalogue: Catalogue, rules: Sequence[Rule]) -> ChangeDetector:
        """Bind every rule of kind "change" to every channel it matches (rule-major)."""
        return cls(bind_rules(catalogue, rules, "change"), len(catalogue))

    # -- evaluation ------------------------------------------------------------------------------

    def update(self, batch: Batch) -> ThresholdFindings:
        """Evaluate a batch; the level changes it caused, in (binding, ts) order."""
        if len(batch) == 0 or not self.bindings:
            return empty_findings()
        parts = []
        for b, t, v in each_round(self._index, batch.channel, batch.ts, batch.value, self._last_ts):
            found = self._round(b, t, v)
            if len(found):
                parts.append(found)
        if not parts:
            return empty_findings()
        if len(parts) == 1:
            return parts[0]
        # Rounds are in time order for each binding: a stable sort on binding gives (binding, ts).
        merged = [np.concatenate([getattr(p, name) for p in parts]) for name in _FIELDS]
        by_binding = np.argsort(merged[0], kind="stable")
        return ThresholdFindings(*(column[by_binding] for column in merged))

    def _round(self, b: np.ndarray, t: np.ndarray, x: np.ndarray) -> ThresholdFindings:
        """Evaluate one reading for each of a set of distinct bindings.

        b : (m,) intp distinct bindings; t : (m,) int64 epoch ms; x : (m,) float64 readings
        """
        warming = self._count[b] < self._warmup[b]
        if warming.any():
            stat = np.full(b.size, np.nan)
            self._warm_up(b[warming], x[warming])
            ready = np.flatnonzero(~warming)
            if ready.size:
                stat[ready] = self._statistic(b[ready], x[ready])
        else:
            stat = self._statistic(b, x)
        lowest = self._lowest[b]
        before = self._level[b]
        # Only readings that can change the level machine's state are fed to it: with level 0,
        # a statistic below the lowest level and no run pending from the previous reading
        # (whose statistic was below it too) a reading leaves every level and `since` as they
        # are. That is nearly every reading in steady operation. (NaN compares false:
        # warm-up readings are never fed.)
        feed = np.flatnonzero((before > 0) | (stat >= lowest) | (self._stat[b] >= lowest))
        found = self._machine.update(b[feed], t[feed], stat[feed]) if feed.size else empty_findings()
        if len(found):
            self._level[found.binding] = found.level_after
        # Normal readings are learned: level 0 before, and a statistic below the lowest level
        # (which implies level 0 after: raising any level needs at least the lowest).
        self._learn(b, x, (before == 0) & (stat < lowest))
        cleared = found.binding[(found.level_before > 0) & (found.level_after == 0)]
        if cleared.size:
            # The alarm is over: restart the chart.
            self._upper[cleared] = 0.0
            self._lower[cleared] = 0.0
            self._ewma[cleared] = self._mean[cleared]
        self._stat[b] = stat
        self._value[b] = x
        self._last_ts[b] = t
        return found

    def _warm_up(self, b: np.ndarray, x: np.ndarray) -> None:
        """Welford's online mean and M2; the variance once the warm-up is complete."""
        n = self._count[b] + 1
        mean = self._mean[b]
        delta = x - mean
        mean = mean + delta / n
        m2 = self._var[b] + delta * (x - mean)
        done = n == self._warmup[b]
        # Sample variance of the warm-up readings; the EWMA starts at the baseline mean.
        # (n - 1 is 0 only for n == 1, which is never `done`: warmup >= 2.)
        self._var[b] = np.where(done, m2 / np.maximum(n - 1, 1), m2)
        self._ewma[b] = np.where(done, mean, self._ewma[b])
        self._mean[b] = mean
        self._count[b] = n

    def _sigma(self, b: np.ndarray) -> np.ndarray:
        """(m,) float64 - baseline sigma with its floor (see SIGMA_FLOOR_REL)."""
        floor = np.maximum(SIGMA_FLOOR_REL * np.abs(self._mean[b]), SIGMA_FLOOR_ABS)
        return np.maximum(np.sqrt(self._var[b]), floor)

    def _statistic(self, b: np.ndarray, x: np.ndarray) -> np.ndarray:
        """(m,) float64 - chart statistic of readings past warm-up; updates the chart state."""
        mean = self._mean[b]
        sigma = self._sigma(b)
        is_cusum = self._is_cusum[b]
        if is_cusum.all():
            return self._cusum(b, (x - mean) / sigma)
        if not is_cusum.any():
            return self._ewma_chart(b, x, mean, sigma)
        stat = np.empty(b.size)
        c, e = np.flatnonzero(is_cusum), np.flatnonzero(~is_cusum)
        stat[c] = self._cusum(b[c], (x[c] - mean[c]) / sigma[c])
        stat[e] = self._ewma_chart(b[e], x[e], mean[e], sigma[e])
        return stat

    def _cusum(self, b: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Page's tabular CUSUM step on standardised readings `z`; the directional statistic."""
        k, cap = self._k[b], self._cap[b]
        upper = np.minimum(np.maximum(0.0, self._upper[b] + z - k), cap)
        lower = np.minimum(np.maximum(0.0, self._lower[b] - z - k), cap)
        self._upper[b] = upper
        self._lower[b] = lower
        return _directional(upper, lower, self._direction[b])

    def _ewma_chart(self, b: np.ndarray, x: np.ndarray, mean: np.ndarray, sigma: np.ndarray) -> np.ndarray:
        """EWMA step; its distance from the mean in multiples of its own sigma."""
        lam = self._lam[b]
        e = lam * x + (1.0 - lam) * self._ewma[b]
        self._ewma[b] = e
        d = (e - mean) / (sigma * self._ewma_scale[b])
        return _directional(np.maximum(d, 0.0), np.maximum(-d, 0.0), self._direction[b])

    def _learn(self, b: np.ndarray, x: np.ndarray, normal: np.ndarray) -> None:
        """The baseline follows the `normal` readings: exponentially weighted mean and variance."""
        learn = self._learn_weight[b]
        mean, var = self._mean[b], self._var[b]
        diff = x - mean
        incr = learn * diff
        # np.where over the whole round: cheaper than gathering the normal subset, which is
        # nearly all of it.
        self._mean[b] = np.where(normal, mean + incr, mean)
        self._var[b] = np.where(normal, (1.0 - learn) * (var + diff * incr), var)

    # -- Detector protocol -------------------------------------------------------------------------

    def level(self) -> np.ndarray:
        """(bindings,) int8 - confirmed level of each binding (a copy)."""
        return self._machine.level()

    def restore(self, binding: int, level: int, started_at: int, last_ts: int) -> None:
        """Resume a binding at the level of its open alert after a restart.

        The baseline is not part of the alert, so the binding warms up again (from readings
        that may still be shifted; the alarm then clears once the new baseline is formed)
        unless `restore_baseline` is called too.
        """
        self._machine.restore(binding, level, started_at, last_ts)
        self._level[binding] = level
        self._last_ts[binding] = last_ts

    def restore_baseline(self, binding: int, mean: float, sigma: float) -> None:
        """End a binding's warm-up with a known baseline (e.g. `details()["baseline"]` saved earlier)."""
        self._count[binding] = self._warmup[binding]
        self._mean[binding] = mean
        self._var[binding] = sigma * sigma
        self._upper[binding] = self._lower[binding] = 0.0
        self._ewma[binding] = mean

    def baseline(self, binding: int) -> tuple[float, float] | None:
        """(mean, sigma) the next reading is compared with, channel unit; None during warm-up."""
        if self._count[binding] < self._warmup[binding]:
            return None
        return float(self._mean[binding]), float(self._sigma(np.array([binding]))[0])

    def details(self, binding: int) -> dict:
        """``{"kind": "change", "method", "statistic", "baseline": {"mean", "sigma"}, "reading"}``.

        `statistic` (sigma units) and `reading` (channel unit) are those of the binding's latest
        evaluated reading, None before any verdict; `baseline` is None during warm-up.
        """
        spec: Change = self.bindings[binding].rule.spec
        stat = float(self._stat[binding])
        value = float(self._value[binding])
        baseline = self.baseline(binding)
        return {
            "kind": "change",
            "method": spec.method,
            "statistic": round(stat, 3) if math.isfinite(stat) else None,
            "baseline": None if baseline is None else {"mean": baseline[0], "sigma": baseline[1]},
            "reading": value if math.isfinite(value) else None,
        }

    def message(self, binding: int, level_before: int, level_after: int, value: float, limit: float) -> str:
        """E.g. "strain CUSUM 9.2 sigma above baseline 120.3 microstrain (orange >= 8)".

        `value` is the statistic (sigma units) and `limit` the level's limit, as in the findings.
        """
        channel = self.bindings[binding].channel
        spec: Change = self.bindings[binding].rule.spec
        method = spec.method.upper()
        baseline = self.baseline(binding)
        base = "" if baseline is None else f" baseline {with_unit(baseline[0], channel.unit)}"
        if level_after == 0:
            return (f"{channel.metric} back to{base or ' normal'}: {method} {value:.1f} sigma, "
                    f"under {level_name(level_before)} {limit:g}")
        side = self._side(binding)
        return f"{channel.metric} {method} {value:.1f} sigma {side}{base} ({level_name(level_after)} >= {limit:g})"

    def _side(self, binding: int) -> str:
        """"above" or "below": which way the baseline shifted."""
        direction = self._direction[binding]
        if direction != _BOTH:
            return "above" if direction == _UP else "below"
        if self._is_cusum[binding]:
            return "above" if self._upper[binding] >= self._lower[binding] else "below"
        return "above" if self._ewma[binding] >= self._mean[binding] else "below"


def _directional(up: np.ndarray, down: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """The statistic a rule watches: `up`, `down` or the larger of the two ("both")."""
    return np.where(direction == _UP, up, np.where(direction == _DOWN, down, np.maximum(up, down)))


def _ordered(levels: dict[str, float]) -> list[float]:
    """Level limits from the lowest colour to the highest."""
    return [levels[c] for c in LEVELS if c in levels]


_FIELDS = ("binding", "ts", "level_before", "level_after", "value", "limit", "started_at")
