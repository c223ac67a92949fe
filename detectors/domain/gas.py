"""Domain detectors of the gas lifeline."""

from __future__ import annotations

#: detector key -> Detector.from_rules(catalogue, rules)
BUILDERS: dict = {}
