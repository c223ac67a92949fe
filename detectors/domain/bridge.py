"""Domain detectors of the bridge lifeline: natural-frequency tracking and span overload."""

from __future__ import annotations

from detectors.domain.bridge_modal import ModalDetector
from detectors.domain.bridge_overload import OverloadDetector

#: detector key -> Detector.from_rules(catalogue, rules)
BUILDERS: dict = {"bridge_modal": ModalDetector.from_rules, "bridge_overload": OverloadDetector.from_rules}
