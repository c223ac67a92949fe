"""Scalar reference of the change detector: one reading at a time, plain Python.

The specification of `detectors.change.ChangeDetector` (read its module docstring for the
rules), written to be read rather than fast. The tests check that the vectorised detector
produces the same findings and state for random rules and batches. Arithmetic follows the
vectorised code operation for operation, so the statistics agree bit for bit.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from detectors.change import SIGMA_FLOOR_ABS, SIGMA_FLOOR_REL, ewma_scale
from detectors.threshold import Binding, ThresholdFindings, bind_rules
from detectors.threshold_reference import ReferenceThresholdDetector, findings_of, on_time_readings
from ingest.batch import Batch
from lifeline.catalogue import Catalogue, Channel
from lifeline.config import Rule, Threshold
from lifeline.levels import LEVELS
from lifeline.rule_kinds import Change


@dataclass
class ChangeState:
    count: int = 0  # warm-up readings so far (== warmup once the baseline is formed)
    mean: float = 0.0  # baseline mean
    var: float = 0.0  # Welford's M2 during warm-up, then the baseline variance
    upper: float = 0.0  # CUSUM S+
    lower: float = 0.0  # CUSUM S-
    ewma: float = 0.0  # EWMA of the readings
    stat: float = math.nan  # statistic of the latest reading
    value: float = math.nan  # latest reading
    last_ts: int | None = None  # newest ts evaluated


class ReferenceChangeDetector:
    """Same bindings and semantics as `ChangeDetector`, evaluated one reading at a time."""

    def __init__(self, bindings: Sequence[Binding], n_channels: int):
        self.bindings = tuple(bindings)
        self.states = [ChangeState() for _ in self.bindings]
        self.bindings_of: dict[int, list[int]] = {}
        for b in self.bindings:
            self.bindings_of.setdefault(b.channel.index, []).append(b.index)
        # The levels: a threshold "above" on the statistic, one stream per binding.
        streams = []
        for b in self.bindings:
            spec: Change = b.rule.spec
            threshold = Threshold("above", dict(spec.levels), spec.clear, spec.hold_s)
            channel = Channel(b.index, b.channel.sensor, b.channel.metric, b.channel.unit)
            streams.append(Binding(b.index, Rule(b.rule.id, {}, threshold), channel))
        self.levels = ReferenceThresholdDetector(streams, len(streams))

    @classmethod
    def from_rules(cls, catalogue: Catalogue, rules: Sequence[Rule]) -> ReferenceChangeDetector:
        return cls(bind_rules(catalogue, rules, "change"), len(catalogue))

    def level(self) -> np.ndarray:
        return self.levels.level()

    def restore(self, binding: int, level: int, started_at: int, last_ts: int) -> None:
        self.levels.restore(binding, level, started_at, last_ts)
        self.states[binding].last_ts = last_ts

    def update(self, batch: Batch) -> ThresholdFindings:
        """Evaluate every binding's readings in (ts, row) order; findings in (binding, ts) order."""
        rows: list[tuple] = []
        for b, ts, value in on_time_readings(batch, self.bindings_of, lambda b: self.states[b].last_ts):
            change = self.evaluate(b, ts, value)
            if change is not None:
                rows.append(change)
            self.states[b].last_ts = ts
        return findings_of(rows)

    def evaluate(self, b: int, t: int, x: float) -> tuple | None:
        """One reading of binding `b`: warm-up or statistic, level, then learning."""
        spec: Change = self.bindings[b].rule.spec
        state = self.states[b]
        state.value = x
        if state.count < spec.warmup:
            # Welford (1962): running mean and sum of squared deviations.
            state.count += 1
            delta = x - state.mean
            state.mean = state.mean + delta / state.count
            state.var = state.var + delta * (x - state.mean)
            if state.count == spec.warmup:
                state.var = state.var / (state.count - 1)  # sample variance
                state.ewma = state.mean
            state.stat = math.nan
            return None  # no verdict during warm-up

        sigma = max(math.sqrt(state.var), max(SIGMA_FLOOR_REL * abs(state.mean), SIGMA_FLOOR_ABS))
        if spec.method == "cusum":
            z = (x - state.mean) / sigma
            cap = max(spec.levels.values())
            state.upper = min(max(0.0, state.upper + z - spec.k), cap)
            state.lower = min(max(0.0, state.lower - z - spec.k), cap)
            up, down = state.upper, state.lower
        else:
            state.ewma = spec.lam * x + (1.0 - spec.lam) * state.ewma
            d = (state.ewma - state.mean) / (sigma * ewma_scale(spec.lam))
            up, down = max(d, 0.0), max(-d, 0.0)
        stat = up if spec.direction == "up" else down if spec.direction == "down" else max(up, down)
        state.stat = stat

        before = self.levels.states[b].level
        change = self.levels.evaluate(b, t, stat)
        after = self.levels.states[b].level

        lowest = min(spec.levels[c] for c in LEVELS if c in spec.levels)
        if before == 0 and after == 0 and stat < lowest:
            # A normal reading: the baseline follows it (exponentially weighted mean, variance).
            diff = x - state.mean
            incr = spec.learn * diff
            state.mean = state.mean + incr
            state.var = (1.0 - spec.learn) * (state.var + diff * incr)
        if before > 0 and after == 0:
            # The alarm cleared: restart the chart.
            state.upper = state.lower = 0.0
            state.ewma = state.mean
        return change
