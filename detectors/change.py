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

Evaluation: a batch is evaluated round by round (round k = the k-th reading of every binding
that has one). The per-reading arithmetic of a round - warm-up, statistic, learning - is done
by the C extension `detectors._change_kernel`, a loop that follows the scalar reference
operation for operation (IEEE-754 doubles, no fused multiply-add), so the two agree bit for
bit. Learning needs the level after the reading, which the LevelMachine decides, but only
through "level 0 before and after": a statistic below the lowest level cannot raise one, so
a reading at level 0 with such a statistic is learned in the kernel already. The kernel also
picks the few readings of the round that can change the LevelMachine's state; only those are
fed to it, and a binding whose alarm they cleared has its chart restarted.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from detectors import _change_kernel
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

#: Direction codes, as in the kernel
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
        for i, binding in enumerate(self.bindings):
            if binding.index != i:
                raise ValueError(f"binding at position {i} has index {binding.index}")
        self.n_channels = int(n_channels)
        self._index = BindingIndex(np.array([b.channel.index for b in self.bindings], np.int64), n_channels)

        # -- parameters, (rules,) each: a rule's bindings share one row ---------------------------
        row_of: dict[int, int] = {}  # id(rule) -> row
        specs: list[Change] = []
        for binding in self.bindings:
            if id(binding.rule) not in row_of:
                row_of[id(binding.rule)] = len(specs)
                specs.append(binding.rule.spec)
        #: int32 - (bindings,) the row of each binding's rule
        self._rule = np.array([row_of[id(b.rule)] for b in self.bindings], np.int32)
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
                                     [change_threshold(b.rule.spec) for b in self.bindings])
        #: The kernel's arrays after the round's, in its argument order (the same objects as above:
        #: state is updated in place).
        self._kernel_arrays = (
            self._is_cusum, self._direction, self._k, self._lam, self._ewma_scale, self._warmup,
            self._learn_weight, self._lowest, self._cap,
            self._rule, self._count, self._mean, self._var, self._upper, self._lower, self._ewma, self._stat, self._value,
            self._level, self._last_ts)

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
        fed = np.empty(b.size, np.intp)
        n_fed = _change_kernel.evaluate(b, t, x, fed, SIGMA_FLOOR_REL, SIGMA_FLOOR_ABS, *self._kernel_arrays)
        if n_fed == 0:
            return empty_findings()
        fed_b = b[fed[:n_fed]]
        # The kernel stored each reading's statistic as its binding's latest (bindings are distinct).
        found = self._machine.update(fed_b, t[fed[:n_fed]], self._stat[fed_b])
        if len(found):
            self._level[found.binding] = found.level_after
            cleared = found.binding[(found.level_before > 0) & (found.level_after == 0)]
            if cleared.size:
                # The alarm is over: restart the chart.
                self._upper[cleared] = 0.0
                self._lower[cleared] = 0.0
                self._ewma[cleared] = self._mean[cleared]
        return found

    def _sigma(self, binding: int) -> float:
        """Baseline sigma with its floor (see SIGMA_FLOOR_REL), as the kernel computes it."""
        mean = float(self._mean[binding])
        return max(math.sqrt(self._var[binding]), max(SIGMA_FLOOR_REL * abs(mean), SIGMA_FLOOR_ABS))

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
        self._count[binding] = self._warmup[self._rule[binding]]
        self._mean[binding] = mean
        self._var[binding] = sigma * sigma
        self._upper[binding] = self._lower[binding] = 0.0
        self._ewma[binding] = mean

    def baseline(self, binding: int) -> tuple[float, float] | None:
        """(mean, sigma) the next reading is compared with, channel unit; None during warm-up."""
        if self._count[binding] < self._warmup[self._rule[binding]]:
            return None
        return float(self._mean[binding]), self._sigma(binding)

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
        direction = self._direction[self._rule[binding]]
        if direction != _BOTH:
            return "above" if direction == _UP else "below"
        if self._is_cusum[self._rule[binding]]:
            return "above" if self._upper[binding] >= self._lower[binding] else "below"
        return "above" if self._ewma[binding] >= self._mean[binding] else "below"


def _ordered(levels: dict[str, float]) -> list[float]:
    """Level limits from the lowest colour to the highest."""
    return [levels[c] for c in LEVELS if c in levels]


_FIELDS = ("binding", "ts", "level_before", "level_after", "value", "limit", "started_at")
