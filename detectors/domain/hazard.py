"""Domain detectors of the hazard-source lifeline: the runaway warning (temperature and
pressure rising together), carrying the source's hazard grade."""

from __future__ import annotations

from detectors.domain.hazard_runaway import RunawayDetector

#: detector key -> Detector.from_rules(catalogue, rules)
BUILDERS: dict = {"runaway": RunawayDetector.from_rules}
