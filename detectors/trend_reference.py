"""Scalar reference of the trend detector: one reading at a time, plain Python.

The specification of `detectors.trend.TrendDetector`: per binding, keep the readings of the
last `window` seconds (at most `max_points`), fit value = a + slope * t by ordinary least
squares, and turn the slope (or the forecast level it implies) into levels exactly as a
threshold does (`threshold_reference`). Late readings are skipped as everywhere.
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np

from detectors.threshold import Binding, ThresholdFindings
from detectors.threshold_reference import ReferenceThresholdDetector, on_time_readings
from detectors.trend import TrendDetector
from ingest.batch import Batch
from lifeline.catalogue import Catalogue, Channel
from lifeline.config import Rule, Threshold
from lifeline.levels import LEVEL_NUMBER, LEVELS


def least_squares_slope(points: list[tuple[float, float]]) -> tuple[float, float, float]:
    """(slope per second, mean t, mean v) of (t, v) points; the slope is NaN unless the points
    have two different times at least (for points of one instant `stt` is a rounding residue)."""
    n = len(points)
    mean_t = sum(t for t, _ in points) / n
    mean_v = sum(v for _, v in points) / n
    stt = sum((t - mean_t) ** 2 for t, _ in points)
    stv = sum((t - mean_t) * (v - mean_v) for t, v in points)
    one_instant = all(t == points[0][0] for t, _ in points)
    return (stv / stt if stt > 0 and not one_instant else math.nan), mean_t, mean_v


class ReferenceTrend:
    """Same bindings and pairing as a TrendDetector, evaluated one reading at a time."""

    def __init__(self, catalogue: Catalogue, rules: list[Rule]):
        template = TrendDetector.from_rules(catalogue, rules)
        self.bindings = template.bindings
        self.paired = template.paired
        self.points: list[deque] = [deque() for _ in self.bindings]
        self.last_ts: list[int | None] = [None] * len(self.bindings)
        self.origin: int | None = None
        self.statistics: list[tuple[int, int, float]] = []  # (binding, ts, statistic) evaluated
        machines = []
        for b in self.bindings:
            spec = b.rule.spec
            if spec.direction is None:
                pair = self.paired[b.index]
                levels = {c: LEVEL_NUMBER[c] - 0.5 for c in LEVELS if c in pair.threshold.levels}
                threshold = Threshold("above", levels, 1.0, spec.hold_s)
            else:
                threshold = Threshold("above", dict(spec.levels), spec.clear, spec.hold_s)
            channel = Channel(b.index, b.channel.sensor, b.channel.metric, b.channel.unit)
            machines.append(Binding(b.index, Rule(b.rule.id, {}, threshold), channel))
        self.machine = ReferenceThresholdDetector(machines, len(machines))

    def statistic(self, b: int, ts: int, value: float) -> float:
        spec = self.bindings[b].rule.spec
        t = (ts - self.origin) / 1000.0
        window = self.points[b]
        window.append((t, value))
        while len(window) > spec.max_points:
            window.popleft()
        recent = [(pt, pv) for pt, pv in window if pt >= t - spec.window_s]
        if len(recent) < spec.min_points:
            return math.nan
        slope, mean_t, mean_v = least_squares_slope(recent)
        if math.isnan(slope):
            return math.nan
        if spec.direction is not None:
            return slope * 60.0 * (-1.0 if spec.direction == "falling" else 1.0)
        pair = self.paired[b].threshold
        sign = 1.0 if pair.direction == "above" else -1.0
        fitted = mean_v + slope * (t - mean_t)
        level = 0
        for colour, limit in pair.levels.items():
            if value * sign >= limit * sign or slope * sign <= 0:
                continue
            eta = (limit - fitted) / slope
            if 0 <= eta <= spec.horizon_s:
                level = max(level, LEVEL_NUMBER[colour])
        return float(level)

    def update(self, batch: Batch) -> ThresholdFindings:
        if self.origin is None and len(batch):
            self.origin = int(batch.ts.min())
        bindings_of: dict[int, list[int]] = {}
        for b in self.bindings:
            bindings_of.setdefault(b.channel.index, []).append(b.index)
        stream, stamps, stats = [], [], []
        for b, ts, value in on_time_readings(batch, bindings_of, lambda b: self.last_ts[b]):
            stat = self.statistic(b, ts, value)
            self.last_ts[b] = ts if self.last_ts[b] is None else max(self.last_ts[b], ts)
            self.statistics.append((b, ts, stat))
            if not math.isnan(stat):
                stream.append(b)
                stamps.append(ts)
                stats.append(stat)
        return self.machine.update(Batch(np.array(stream, np.int32), np.array(stamps, np.int64),
                                         np.array(stats, np.float64)))
