"""Domain detectors of the pipeline lifeline."""

from __future__ import annotations

#: detector key -> Detector.from_rules(catalogue, rules)
BUILDERS: dict = {}
