"""Domain detectors of the bridge lifeline."""

from __future__ import annotations

#: detector key -> Detector.from_rules(catalogue, rules)
BUILDERS: dict = {}
