"""Domain detectors (issue 8): detectors that understand one lifeline.

Each domain module exports BUILDERS, detector key -> `from_rules(catalogue, rules)` returning a
`detectors.base.Detector`. Domain detectors combine several channels of a structure (a
manhole's CH4 and ethane, a segment's two pressure loggers, a lift's speed, door and zone) and
report under an alert key of their own choosing: a binding's `metric` may name an event
(`entrapment`) rather than a channel.
"""

from __future__ import annotations

from collections.abc import Sequence

from detectors.base import Detector
from detectors.domain import bridge, elevator, gas, hazard, pipeline
from lifeline.catalogue import Catalogue
from lifeline.config import Rule

BUILDERS = {**gas.BUILDERS, **pipeline.BUILDERS, **bridge.BUILDERS, **elevator.BUILDERS, **hazard.BUILDERS}


def build_domain_detectors(catalogue: Catalogue, rules: Sequence[Rule]) -> list[Detector]:
    """One detector per domain detector key that some rule uses, in BUILDERS order."""
    used = {rule.kind for rule in rules}
    return [build(catalogue, rules) for kind, build in BUILDERS.items() if kind in used]
