"""Domain detectors of the hazard-source lifeline: the runaway warning (temperature and
pressure rising together), carrying the source's hazard grade."""

from __future__ import annotations

from collections.abc import Sequence

from detectors.domain.hazard_runaway import RunawayDetector
from lifeline.catalogue import Catalogue
from lifeline.config import Rule
from lifeline.domain_rules.hazard import Runaway

#: detector key -> Detector.from_rules(catalogue, rules)
BUILDERS: dict = {"runaway": RunawayDetector.from_rules}


def hazard_grades(catalogue: Catalogue, rules: Sequence[Rule]) -> dict[str, dict]:
    """Sensor id -> {"r", "level"}: the grade of the hazard source each hazard sensor belongs to,
    from the `grade:` blocks of the runaway rules.

    A source's grade says how much is at stake there, so an operator weighs every alert of the
    source with it (a toxic gas alarm or a tank's high-high limit, not only the runaway warning):
    every sensor of the hazard domain whose grading field (`by`, usually `structure`: the plant)
    names a graded source carries that grade. The rule's `default` grade is the grade of the
    sources the rule watches without naming them, and so of every hazard sensor of those sources.
    """
    grades: dict[str, dict] = {}
    hazard_sensors = [s for s in catalogue.sensors if s.domain == "hazard"]
    for rule in rules:
        spec = rule.spec
        if rule.kind != "runaway" or not isinstance(spec, Runaway) or spec.grades is None:
            continue
        by = spec.grades.by
        source_grade = dict(spec.grades.sources)
        if spec.grades.default is not None:
            for sensor in hazard_sensors:
                source = sensor.field_value(by)
                if source and source not in source_grade and any(
                        rule.matches(sensor, catalogue.owner_of(sensor), metric) for metric in sensor.metrics):
                    source_grade[source] = spec.grades.default
        for sensor in hazard_sensors:
            grade = source_grade.get(sensor.field_value(by) or "")
            if grade is not None:
                grades.setdefault(sensor.id, grade.as_dict())
    return grades
