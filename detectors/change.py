"""Change detection on a learned baseline: CUSUM (Page 1954) and EWMA control charts.

A change rule catches shifts that never cross a fixed threshold: a strain baseline that steps
by two standard deviations, methane in a manhole creeping up by a fraction of a %LEL. Each
*binding* (one change rule on one channel) learns the channel's normal behaviour and turns
every reading into a statistic in units of the baseline's standard deviation, on which it
raises levels (levels, hold time, findings, exactly as a threshold on the statistic).

Semantics, per binding (``detectors.change_reference`` is the readable per-reading version):

* **Warm-up.** The first ``warmup`` evaluated readings form the baseline with Welford's
  online algorithm (Welford 1962): mean and sample variance. They get no verdict: their
  statistic is NaN and they raise or clear nothing.
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
  hysteresis factor `clear` of the rule (default 0.8) and raised after the rule's hold time
  (`for`): the threshold state machine (`detectors.threshold_reference`) run on the statistic,
  with findings exactly as a threshold's (the finding's value is the statistic). A reading in
  warm-up has no statistic and leaves the levels as they are.
* **Learning.** After warm-up the baseline follows *normal* readings with weight ``learn``
  (exponentially weighted mean and variance, Finch 2009)::

        diff = x - mean; incr = learn * diff; mean += incr; var = (1 - learn) * (var + diff * incr)

  A reading is normal when the binding's level was 0 before it and is 0 after it and its
  statistic is below the rule's lowest level. Readings in alarm, or on their way to one, are
  never learned, so a slow rise is not absorbed into the baseline.
* **Restart after an alarm.** When a reading clears the alarm (level > 0 before, 0 after) the
  chart restarts: CUSUM sums go back to 0, the EWMA back to the baseline mean.
* **Ordering.** As for every detector: a binding's readings are evaluated in (ts, batch row)
  order and a reading older than the newest one already evaluated is skipped.

Evaluation: a batch is one call of the C extension `detectors._change_kernel` on the readings
as `detectors.batching.bound_readings` orders them. Its loop does, reading by reading, what
the scalar reference does - warm-up, statistic, level (the state machine of
`detectors/level_machine.h`), learning, restart - operation for operation (IEEE-754 doubles,
no fused multiply-add), so the two agree bit for bit. The level has to be decided inside the
loop: whether a reading is learned depends on the level after it. The detector holds the level
state itself (`level`, and `since` per level as the threshold detector holds it).

State: each binding's rule row, warm-up count, baseline, chart, statistic, latest reading and
ts and level are one record of a numpy structured array whose dtype is the kernel's C struct
(exported layout, `detectors.records`), so a reading of a binding touches its record's two
cache lines however few bindings a batch has; `since` (four timestamps per binding, used only
near a level) is a separate array.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from detectors import _change_kernel
from detectors.batching import BindingIndex, bound_readings
from detectors.formatting import with_unit
from detectors.records import records
from detectors.threshold import (
    NO_LAST_TS,
    NO_SINCE,
    Binding,
    ThresholdFindings,
    bind_rules,
    check_restore,
    empty_findings,
)
from ingest.batch import Batch
from lifeline.catalogue import Catalogue
from lifeline.config import Rule, Threshold
from lifeline.levels import LEVEL_NUMBER, LEVELS, level_name
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
_N_LEVELS = len(LEVELS)


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
        #: lowest level's limit (sigma units): statistics at or above it are never learned, and
        #: below it raise no level
        self._lowest = np.array([min(s.levels.values()) for s in specs], np.float64)
        #: highest level's limit: the cap on the CUSUM sums
        self._cap = np.array([max(s.levels.values()) for s in specs], np.float64)
        # The levels on the statistic (`change_threshold`) in the layout of
        # detectors/level_machine.h: the limit of each level (NaN where the rule does not define
        # it) and its clear value, computed as the threshold detector does (bit for bit).
        thresholds = [change_threshold(s) for s in specs]
        limit = np.full((len(specs), _N_LEVELS), np.nan)
        for row, threshold in enumerate(thresholds):
            for colour, value in threshold.levels.items():
                limit[row, LEVEL_NUMBER[colour] - 1] = value
        clear = np.array([t.clear for t in thresholds], np.float64)
        #: float64 - (rules, 4) level limits, sigma units
        self._limit = limit
        #: float64 - (rules, 4) the value down to which each level is held
        self._clear_value = limit - (1.0 - clear)[:, None] * np.abs(limit)
        #: bool - every level is a limit "above" on the statistic
        self._above = np.ones(len(specs), bool)
        #: int64 - hold time in whole ms
        self._hold_ms = np.array([int(round(t.hold_s * 1000)) for t in thresholds], np.int64)

        # -- state, one record per binding (the kernel's layout STATE) ------------------------------
        #: A binding's rule row and state in one C struct, so that a reading of it touches two
        #: cache lines rather than one per array; the attributes below are views of its fields
        #: (update them in place: assigning one would detach it from the records).
        self._state = records(_change_kernel.STATE, n)
        #: int32 - (bindings,) the row of each binding's rule
        self._rule = self._state["rule"]
        self._rule[:] = [row_of[id(b.rule)] for b in self.bindings]
        #: int32 - readings of the warm-up so far; == warmup once the baseline is formed
        self._count = self._state["count"]
        #: float64 - baseline mean, channel unit
        self._mean = self._state["mean"]
        #: float64 - during warm-up Welford's sum of squared deviations M2, then the variance
        self._var = self._state["var"]
        #: float64 - CUSUM sums S+ and S-, sigma units
        self._upper = self._state["upper"]
        self._lower = self._state["lower"]
        #: float64 - EWMA of the readings, channel unit
        self._ewma = self._state["ewma"]
        #: float64 - statistic of the latest evaluated reading (NaN during warm-up)
        self._stat = self._state["stat"]
        self._stat[:] = np.nan
        #: float64 - latest evaluated reading, channel unit (NaN before any)
        self._value = self._state["last_value"]
        self._value[:] = np.nan
        #: int8 - confirmed level
        self._level = self._state["level"]
        #: int64 - newest ts evaluated, epoch ms
        self._last_ts = self._state["last_ts"]
        self._last_ts[:] = NO_LAST_TS
        #: int64 - (bindings * 4) start (epoch ms) of the current unbroken run of statistics at or
        #: above each level, NO_SINCE when none; binding-major: binding b's are [4 * b:4 * b + 4].
        #: Its own array: only readings at or near a level use it.
        self._since = np.full(n * _N_LEVELS, NO_SINCE, np.int64)

        #: The kernel's arrays after the batch's and the findings', in its argument order (the
        #: same objects as above: state is updated in place).
        self._kernel_arrays = (
            self._is_cusum, self._direction, self._k, self._lam, self._ewma_scale, self._warmup,
            self._learn_weight, self._lowest, self._cap,
            self._limit.reshape(-1), self._clear_value.reshape(-1), self._above, self._hold_ms,
            self._state, self._since)

    @classmethod
    def from_rules(cls, catalogue: Catalogue, rules: Sequence[Rule]) -> ChangeDetector:
        """Bind every rule of kind "change" to every channel it matches (channel-major, `bind_rules`)."""
        return cls(bind_rules(catalogue, rules, "change"), len(catalogue))

    # -- evaluation ------------------------------------------------------------------------------

    def update(self, batch: Batch) -> ThresholdFindings:
        """Evaluate a batch; the level changes it caused, in (binding, ts) order."""
        if len(batch) == 0 or not self.bindings:
            return empty_findings()
        binding, ts, value = bound_readings(self._index, batch.channel, batch.ts, batch.value)
        ts, value = np.ascontiguousarray(ts), np.ascontiguousarray(value)
        # Room for a finding per reading; only the pages of the few written are ever touched.
        found = [np.empty(binding.size, dtype) for dtype in _FINDING_DTYPES]
        n_found = _change_kernel.evaluate(binding, ts, value, *found, SIGMA_FLOOR_REL, SIGMA_FLOOR_ABS,
                                          *self._kernel_arrays)
        if n_found == 0:
            return empty_findings()
        # In evaluation order each binding's findings are in time order: a stable sort on
        # binding gives (binding, ts).
        by_binding = np.argsort(found[0][:n_found], kind="stable")
        return ThresholdFindings(*(column[:n_found][by_binding] for column in found))

    def _sigma(self, binding: int) -> float:
        """Baseline sigma with its floor (see SIGMA_FLOOR_REL), as the kernel computes it."""
        mean = float(self._mean[binding])
        return max(math.sqrt(self._var[binding]), max(SIGMA_FLOOR_REL * abs(mean), SIGMA_FLOOR_ABS))

    # -- Detector protocol -------------------------------------------------------------------------

    def level(self) -> np.ndarray:
        """(bindings,) int8 - confirmed level of each binding (a copy)."""
        return self._level.copy()

    def restore(self, binding: int, level: int, started_at: int, last_ts: int) -> None:
        """Resume a binding at the level of its open alert after a restart.

        The baseline is not part of the alert, so the binding warms up again (from readings
        that may still be shifted; the alarm then clears once the new baseline is formed)
        unless `restore_baseline` is called too. As `ThresholdDetector.restore`: `level` is 0
        or a level the rule defines, the run at every level up to it is taken to have started at
        `started_at` (<= `last_ts`), and readings older than `last_ts` will be late.
        """
        check_restore(self.bindings, self._limit, self._rule, binding, level, started_at, last_ts)
        self._level[binding] = level
        since = self._since[_N_LEVELS * binding:_N_LEVELS * (binding + 1)]
        since[:] = NO_SINCE
        since[:level] = started_at
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


#: dtypes of the ThresholdFindings columns, in field order
_FINDING_DTYPES = (np.int32, np.int64, np.int8, np.int8, np.float64, np.float64, np.int64)
