"""The seam between detectors and the alert lifecycle.

A detector holds state for its bindings (one rule on one channel, or on one sensor for
silence) and reports level changes as columnar ThresholdFindings rows indexed by binding.
The pipeline turns rows into alert findings with the detector's message and details.
"""

from __future__ import annotations

from typing import Protocol

from detectors.threshold import Binding, ThresholdFindings
from ingest.batch import Batch


class Detector(Protocol):
    kind: str  # rule kind: threshold, trend, change, deadman, quality
    bindings: tuple[Binding, ...]

    def update(self, batch: Batch) -> ThresholdFindings:
        """Evaluate a batch of accepted readings; level changes in (binding, ts) order."""
        ...

    def restore(self, binding: int, level: int, started_at: int, last_ts: int) -> None:
        """Resume a binding at the level of its open alert after a restart."""
        ...

    def details(self, binding: int) -> dict:
        """Extra alert fields from the binding's latest evaluation (e.g. forecast, fault)."""
        ...

    def message(self, binding: int, level_before: int, level_after: int, value: float, limit: float) -> str:
        """What an operator reads: the value, what it crossed, and why it matters."""
        ...
