"""Graded levels with hysteresis and hold time over any derived value.

The threshold detector's state machine (levels, clear values, hold, findings) is exactly
what the other detectors need on top of the statistic they compute - a slope, a CUSUM sum,
a fault flag - so they feed that statistic, one stream per binding, into a LevelMachine
instead of re-implementing levels.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from detectors.threshold import Binding, ThresholdDetector, ThresholdFindings
from lifeline.catalogue import Channel
from lifeline.config import Rule, Threshold


class LevelMachine:
    """One level state per stream; stream i belongs to `owners[i]` (rule and channel)."""

    def __init__(self, owners: Sequence[tuple[Rule, Channel]], thresholds: Sequence[Threshold]):
        bindings = [Binding(i, Rule(rule.id, {}, threshold), Channel(i, channel.sensor, channel.metric, channel.unit))
                    for i, ((rule, channel), threshold) in enumerate(zip(owners, thresholds, strict=True))]
        self._machine = ThresholdDetector(bindings, len(bindings))

    def __len__(self) -> int:
        return len(self._machine.bindings)

    def update(self, stream: np.ndarray, ts: np.ndarray, value: np.ndarray) -> ThresholdFindings:
        """Evaluate derived values; rows with a non-finite value are skipped (no verdict yet)."""
        keep = np.isfinite(value)
        if not keep.all():
            stream, ts, value = stream[keep], ts[keep], value[keep]
        return self._machine.update_bindings(stream, ts, value)

    def level(self) -> np.ndarray:
        return self._machine.level()

    def restore(self, stream: int, level: int, started_at: int, last_ts: int) -> None:
        self._machine.restore(stream, level, started_at, last_ts)


def flag_threshold(level: str, hold_s: float = 0.0) -> Threshold:
    """A threshold on a 0/1 flag that raises `level` while the flag is 1."""
    return Threshold(direction="above", levels={level: 0.5}, clear=1.0, hold_s=hold_s)
