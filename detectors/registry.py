"""Every detector kind the configuration asks for, built from the rules, in evaluation order."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from detectors.base import Detector
from detectors.change import ChangeDetector
from detectors.deadman import DeadmanDetector
from detectors.domain import build_domain_detectors
from detectors.domain.hazard import hazard_grades
from detectors.quality import QualityDetector
from detectors.threshold import ThresholdDetector
from detectors.trend import TrendDetector
from lifeline.catalogue import Catalogue
from lifeline.config import Rule


@dataclass
class DetectorSet:
    """Quality runs first so hazard findings of a faulty channel can be marked; silence is
    evaluated on arrivals and on a timer."""

    quality: QualityDetector
    hazards: list[Detector]
    deadman: DeadmanDetector
    #: sensor id -> hazard source grade {"r", "level"}, carried by every alert of the sensor
    grades: dict[str, dict] = field(default_factory=dict)

    def all(self) -> list[Detector]:
        return [self.quality, *self.hazards, self.deadman]


def build_detectors(catalogue: Catalogue, rules: Sequence[Rule], clock: Callable[[], int] | None = None
                    ) -> DetectorSet:
    hazards: list[Detector] = [ThresholdDetector.from_rules(catalogue, rules),
                               TrendDetector.from_rules(catalogue, rules),
                               ChangeDetector.from_rules(catalogue, rules),
                               *build_domain_detectors(catalogue, rules)]
    deadman = DeadmanDetector(catalogue, rules) if clock is None else DeadmanDetector(catalogue, rules, clock)
    return DetectorSet(quality=QualityDetector.from_rules(catalogue, rules), hazards=hazards, deadman=deadman,
                       grades=hazard_grades(catalogue, rules))
