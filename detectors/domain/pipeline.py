"""Domain detectors of the pipeline lifeline: bursts located by their pressure wave
(`pipeline_burst`) and leaks by a district's mass balance (`pipeline_balance`)."""

from __future__ import annotations

from detectors.domain.pipeline_balance import MassBalanceDetector
from detectors.domain.pipeline_burst import PipeBurstDetector

#: detector key -> Detector.from_rules(catalogue, rules)
BUILDERS: dict = {"pipe_burst": PipeBurstDetector.from_rules, "mass_balance": MassBalanceDetector.from_rules}
