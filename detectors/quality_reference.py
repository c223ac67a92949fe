"""Scalar reference of the sensor-fault detector: one reading at a time, plain Python.

The specification of `detectors.quality.QualityDetector` (its module docstring states the
checks), written to be read rather than fast. Unlike the vectorised detector, which passes
only flag changes to its level machine, this one feeds the 0/1 faulty flag of every reading
to a plain threshold reference; the tests check both give the same findings and state.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from detectors.level_machine import flag_threshold
from detectors.quality import FAULTS, MAD_SCALE
from detectors.threshold import Binding, ThresholdFindings, bind_rules
from detectors.threshold_reference import ReferenceThresholdDetector, findings_of, on_time_readings
from ingest.batch import Batch
from lifeline.catalogue import Catalogue, Channel
from lifeline.config import Rule
from lifeline.rule_kinds import Quality


def median(values: list[float]) -> float:
    """Median; the mean of the middle two for an even count."""
    s = sorted(values)
    n = len(s)
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2


@dataclass
class QualityState:
    prev: float | None = None  # previous evaluated reading
    last_ts: int | None = None  # its ts, the newest evaluated
    run_min: float = 0.0  # current run of readings within the stuck tolerance
    run_max: float = 0.0
    run_count: int = 0
    run_start: int = 0
    window: deque = field(default_factory=deque)  # previous readings for the spike test
    faulty: bool = False
    good: int = 0  # good readings in a row while faulty (0 once not faulty)
    fault: str = ""  # latest fault


class ReferenceQualityDetector:
    """Same bindings and semantics as `QualityDetector`, evaluated one reading at a time."""

    def __init__(self, bindings: Sequence[Binding], n_channels: int):
        self.bindings = tuple(bindings)
        self.n_channels = n_channels
        self.states = [QualityState() for _ in self.bindings]
        self.bindings_of: dict[int, list[int]] = {}
        for b in self.bindings:
            self.bindings_of.setdefault(b.channel.index, []).append(b.index)
        streams = [Binding(b.index, Rule(b.rule.id, {}, flag_threshold(b.rule.spec.level)),
                           Channel(b.index, b.channel.sensor, b.channel.metric, b.channel.unit))
                   for b in self.bindings]
        self.levels = ReferenceThresholdDetector(streams, len(streams))

    @classmethod
    def from_rules(cls, catalogue: Catalogue, rules: Sequence[Rule]) -> ReferenceQualityDetector:
        return cls(bind_rules(catalogue, rules, "quality"), len(catalogue))

    def level(self) -> np.ndarray:
        return self.levels.level()

    @property
    def faulty(self) -> np.ndarray:
        out = np.zeros(self.n_channels, bool)
        for b, state in zip(self.bindings, self.states, strict=True):
            out[b.channel.index] |= state.faulty
        return out

    def restore(self, binding: int, level: int, started_at: int, last_ts: int) -> None:
        self.levels.restore(binding, level, started_at, last_ts)
        state = self.states[binding]
        state.faulty, state.good, state.prev, state.last_ts = level > 0, 0, None, last_ts

    def update(self, batch: Batch) -> ThresholdFindings:
        """Evaluate every binding's readings in (ts, row) order; findings in (binding, ts) order."""
        rows: list[tuple] = []
        for b, ts, value in on_time_readings(batch, self.bindings_of, lambda b: self.states[b].last_ts):
            state = self.states[b]
            fault = self.check(b, ts, value)
            if fault:
                state.faulty, state.good, state.fault = True, 0, fault
            elif state.faulty:
                state.good += 1
                state.faulty = state.good < self.bindings[b].rule.spec.clear_after
            else:
                state.good = 0
            change = self.levels.evaluate(b, ts, 1.0 if state.faulty else 0.0)
            if change is not None:
                rows.append(change)
        return findings_of(rows)

    def check(self, b: int, t: int, x: float) -> str:
        """Run every check on one reading and advance the state; the fault found, or ""."""
        spec: Quality = self.bindings[b].rule.spec
        state = self.states[b]
        found: set[str] = set()

        if spec.range_min is not None and x < spec.range_min:
            found.add("out_of_range")
        if spec.range_max is not None and x > spec.range_max:
            found.add("out_of_range")

        if spec.spike_window is not None:
            if len(state.window) == spec.spike_window:
                med = median(list(state.window))
                mad = median([abs(v - med) for v in state.window])
                if mad > 0 and abs(x - med) / (MAD_SCALE * mad) > spec.spike_threshold:
                    found.add("spike")
            state.window.append(x)
            if len(state.window) > spec.spike_window:
                state.window.popleft()

        if spec.max_rate_per_s is not None and state.prev is not None and t > state.last_ts:
            rate = abs(x - state.prev) * 1000.0 / (t - state.last_ts)
            if rate > spec.max_rate_per_s:
                found.add("rate")

        # The run continues while its peak-to-peak variation stays within the tolerance.
        if state.prev is not None and max(state.run_max, x) - min(state.run_min, x) <= spec.stuck_tolerance:
            state.run_min, state.run_max = min(state.run_min, x), max(state.run_max, x)
            state.run_count += 1
        else:
            state.run_min = state.run_max = x
            state.run_count, state.run_start = 1, t
        if spec.stuck_readings is not None and state.run_count >= spec.stuck_readings:
            stuck_ms = round((spec.stuck_seconds or 0.0) * 1000)
            if t - state.run_start >= stuck_ms:
                found.add("stuck")

        state.prev, state.last_ts = x, t
        return next((name for name in FAULTS[1:] if name in found), "")
