"""Scalar reference of the threshold detector: one reading at a time, plain Python.

This is the specification of `detectors.threshold.ThresholdDetector` written to be read, not
to be fast; the tests check that the vectorised detector produces exactly the same findings
and state for random rules and batches. It has the same interface (`from_rules`, `update`,
`restore`, `level`).

Detectors see each channel's readings in timestamp order; a reading older than the newest one
already evaluated for the channel is archived but not evaluated. Here that means: the readings
of one binding in one batch are evaluated sorted by (ts, batch row); a reading whose ts is
older than the newest ts evaluated for the binding in an earlier batch is skipped, one with an
equal ts is evaluated.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from detectors.threshold import Binding, ThresholdFindings, bind_rules
from ingest.batch import Batch
from lifeline.catalogue import Catalogue
from lifeline.config import Rule
from lifeline.levels import LEVEL_NUMBER


def on_time_readings(batch: Batch, bindings_of: dict[int, list[int]],
                     last_ts_of: Callable[[int], int | None]) -> Iterator[tuple[int, int, float]]:
    """(binding, ts, value) of a batch one at a time: bindings ascending, each binding's readings
    in (ts, row) order, late ones (older than the binding's newest evaluated ts when its turn
    comes) left out. The plain form of `detectors.batching.rounds` shared by the references."""
    readings: dict[int, list[tuple[int, int, float]]] = {}  # binding -> [(ts, row, value)]
    for row in range(len(batch)):
        for b in bindings_of.get(int(batch.channel[row]), []):
            readings.setdefault(b, []).append((int(batch.ts[row]), row, float(batch.value[row])))
    for b in sorted(readings):
        newest_before = last_ts_of(b)
        for ts, _row, value in sorted(readings[b]):
            if newest_before is not None and ts < newest_before:
                continue  # late: archived elsewhere, not evaluated
            yield b, ts, value


def findings_of(rows: list[tuple]) -> ThresholdFindings:
    """Finding rows (binding, ts, before, after, value, limit, started_at) as columns."""
    columns = list(zip(*rows, strict=True)) if rows else [()] * 7
    dtypes = (np.int32, np.int64, np.int8, np.int8, np.float64, np.float64, np.int64)
    return ThresholdFindings(*(np.array(col, dtype=dt) for col, dt in zip(columns, dtypes, strict=True)))

@dataclass
class LevelSpec:
    """One level a rule defines."""

    level: int  # 1 blue .. 4 red
    limit: float  # reached when value >= limit ("above") / value <= limit ("below")
    clear_value: float  # still held while value >= clear_value ("above") / <= ("below")


@dataclass
class BindingState:
    level: int = 0  # confirmed level, 0 = none
    # since[L] for L in 1..4 (index 0 unused): ts of the first reading of the current unbroken
    # run of readings whose candidate level is >= L, or None when there is no such run.
    since: list[int | None] = field(default_factory=lambda: [None] * 5)
    last_ts: int | None = None  # newest ts evaluated in an earlier batch


def level_specs(rule: Rule) -> list[LevelSpec]:
    """The rule's defined levels, lowest first, with their clear values (CONTRACT §2).

    The |limit| form keeps the hysteresis on the safe side when a limit is negative; for a
    positive limit it is ``clear * limit`` ("above") and ``limit / clear`` ("below").
    """
    threshold = rule.threshold
    specs = []
    for colour, limit in threshold.levels.items():
        if threshold.direction == "above":
            clear_value = limit - (1.0 - threshold.clear) * abs(limit)
        else:
            clear_value = limit + abs(limit) * (1.0 / threshold.clear - 1.0)
        specs.append(LevelSpec(LEVEL_NUMBER[colour], float(limit), clear_value))
    return sorted(specs, key=lambda spec: spec.level)


class ReferenceThresholdDetector:
    """Same semantics as `ThresholdDetector`, one reading at a time."""

    def __init__(self, bindings: Sequence[Binding], n_channels: int):
        self.bindings: tuple[Binding, ...] = tuple(bindings)
        self.n_channels = n_channels
        self.specs = [level_specs(b.rule) for b in self.bindings]
        self.hold_ms = [round(b.rule.threshold.hold_s * 1000) for b in self.bindings]
        self.above = [b.rule.threshold.direction == "above" for b in self.bindings]
        self.states = [BindingState() for _ in self.bindings]
        self.bindings_of: dict[int, list[int]] = {}
        for b in self.bindings:
            self.bindings_of.setdefault(b.channel.index, []).append(b.index)

    @classmethod
    def from_rules(cls, catalogue: Catalogue, rules: Sequence[Rule]) -> ReferenceThresholdDetector:
        return cls(bind_rules(catalogue, rules), len(catalogue))

    def level(self) -> np.ndarray:
        """(bindings,) int8 - confirmed level of each binding."""
        return np.array([s.level for s in self.states], dtype=np.int8)

    def restore(self, binding: int, level: int, started_at: int, last_ts: int) -> None:
        """Confirm `level` as if its condition (at every level up to it) began at `started_at`."""
        defined = {spec.level for spec in self.specs[binding]}
        if level != 0 and level not in defined:
            raise ValueError(f"level {level} is not defined by the rule")
        if level != 0 and started_at > last_ts:
            raise ValueError(f"started_at {started_at} is after last_ts {last_ts}")
        state = self.states[binding]
        state.level = level
        state.since = [None] + [started_at if n <= level else None for n in range(1, 5)]
        state.last_ts = last_ts

    def update(self, batch: Batch) -> ThresholdFindings:
        """Evaluate every binding's readings in (ts, row) order; findings in (binding, ts) order."""
        rows: list[tuple] = []
        for b, ts, value in on_time_readings(batch, self.bindings_of, lambda b: self.states[b].last_ts):
            change = self.evaluate(b, ts, value)
            if change is not None:
                rows.append(change)
            state = self.states[b]
            state.last_ts = ts if state.last_ts is None else max(state.last_ts, ts)
        return findings_of(rows)

    def evaluate(self, b: int, t: int, v: float) -> tuple | None:
        """Evaluate one reading of binding `b`; the finding row if the confirmed level changed."""
        state = self.states[b]
        specs = self.specs[b]
        above = self.above[b]

        def reaches(spec: LevelSpec) -> bool:
            return v >= spec.limit if above else v <= spec.limit

        def holds(spec: LevelSpec) -> bool:
            return v >= spec.clear_value if above else v <= spec.clear_value

        raise_level = max((s.level for s in specs if reaches(s)), default=0)
        band_level = max((s.level for s in specs if holds(s)), default=0)
        # A value in the hysteresis band keeps the current level but cannot raise one.
        candidate = max(raise_level, min(band_level, state.level))

        since_before = list(state.since)
        for n in range(1, 5):
            if candidate >= n:
                if state.since[n] is None:
                    state.since[n] = t
            else:
                state.since[n] = None

        # Raising waits for the hold; keeping or lowering a level does not.
        new_level = 0
        for spec in specs:
            n = spec.level
            if n > candidate:
                continue
            since = state.since[n]
            if n <= state.level or (since is not None and t - since >= self.hold_ms[b]):
                new_level = max(new_level, n)

        if new_level == state.level:
            return None
        lowest = specs[0].level
        if new_level > 0:
            limit = next(s.limit for s in specs if s.level == new_level)
            started_at = state.since[lowest]
        else:
            limit = next(s.limit for s in specs if s.level == state.level)
            started_at = since_before[lowest]
        row = (b, t, state.level, new_level, v, limit, started_at)
        state.level = new_level
        return row
