"""Rule kinds of the hazard-source domain detectors: specs and parsers.

* `runaway`: temperature and pressure of a tank or reactor rising together (a joint slope),
  the early warning of a runaway before either reaches its high-high limit.
* `grade:` (inside a hazard rule): the major hazard source's grade, R = alpha * sum(beta_i q_i /
  Q_i) (GB 18218-2018), level I-IV, carried with every alert of the rule.

Process limits (high / high-high, low / low-low), toxic gas in %OEL and combustible gas in %LEL
are `threshold` rules.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lifeline.config_checks import Checker, mapping, number, text, unknown_keys
from lifeline.rule_kinds import _int, _levels
from lifeline.yamlsource import LineDict

#: grade -> lowest R of that grade (practice: I >= 100, II 50-100, III 10-50, IV < 10)
GRADE_LEVELS = {"I": 100.0, "II": 50.0, "III": 10.0}


@dataclass(frozen=True)
class Grade:
    """A hazard source's R value and grade (I most serious)."""

    r: float
    level: str

    def as_dict(self) -> dict[str, Any]:
        return {"r": round(self.r, 1), "level": self.level}


@dataclass(frozen=True)
class HazardGrades:
    """Grades of the hazard sources a rule watches, by the catalogue field naming the source."""

    by: str  # catalogue field (structure: the plant)
    sources: dict[str, Grade]
    default: Grade | None

    def of(self, value: str | None) -> Grade | None:
        return self.sources.get(value or "", self.default)


@dataclass(frozen=True)
class Runaway:
    """Temperature and pressure of one unit (asset) rising together."""

    temperature: str  # metric names on the unit
    pressure: str
    window_s: float  # least-squares window of each slope
    min_points: int
    rates: dict[str, float]  # metric -> rise per minute that counts as 1 (the joint index unit)
    levels: dict[str, float]  # colour -> joint index: both slopes at least this multiple of their rate
    clear: float
    hold_s: float
    limits: dict[str, float]  # metric -> high-high limit, for the time to it in the message
    grades: HazardGrades | None


def grade_of(alpha: float, substances: list[tuple[float, float, float]], bounds: dict[str, float]) -> Grade:
    """R = alpha * sum(beta * q / Q) over (beta, q, Q) and its grade (GB 18218-2018)."""
    r = alpha * sum(beta * q / big_q for beta, q, big_q in substances)
    for level in ("I", "II", "III"):
        if r >= bounds[level]:
            return Grade(r, level)
    return Grade(r, "IV")


def _source(chk: Checker, raw: Any, line: int | None, path: str, bounds: dict[str, float]) -> Grade | None:
    spec = mapping(chk, raw, line, path)
    if spec is None:
        return None
    unknown_keys(chk, spec, ("alpha", "substances"), path)
    alpha = number(chk, spec.get("alpha", 1.0), spec.line_of("alpha"), f"{path}.alpha", positive=True)
    items = spec.get("substances")
    if not isinstance(items, list) or not items:
        chk.error(spec.line_of("substances") or spec.line, f"{path}.substances",
                  "expected a list of {name, q, Q, beta} (tonnes on site, critical quantity, correction)")
        return None
    substances = []
    for i, item in enumerate(items):
        where = f"{path}.substances[{i}]"
        entry = mapping(chk, item, spec.line_of("substances"), where)
        if entry is None:
            return None
        unknown_keys(chk, entry, ("name", "q", "Q", "beta"), where)
        q = number(chk, entry.get("q"), entry.line_of("q"), f"{where}.q")
        big_q = number(chk, entry.get("Q"), entry.line_of("Q"), f"{where}.Q", positive=True)
        beta = number(chk, entry.get("beta", 1.0), entry.line_of("beta"), f"{where}.beta", positive=True)
        if None in (q, big_q, beta):
            return None
        substances.append((beta, q, big_q))
    if alpha is None:
        return None
    return grade_of(alpha, substances, bounds)


def parse_grades(chk: Checker, raw: Any, line: int | None, path: str) -> HazardGrades | None:
    spec = mapping(chk, raw, line, path)
    if spec is None:
        return None
    unknown_keys(chk, spec, ("by", "levels", "sources", "default"), path)
    by = text(chk, spec.get("by", "structure"), spec.line_of("by"), f"{path}.by")
    bounds = dict(GRADE_LEVELS)
    if "levels" in spec:
        given = mapping(chk, spec["levels"], spec.line_of("levels"), f"{path}.levels")
        for level, value in (given or {}).items():
            if level not in GRADE_LEVELS:
                chk.error(given.line_of(level), f"{path}.levels.{level}", "expected I, II or III (IV is the rest)")
                continue
            bound = number(chk, value, given.line_of(level), f"{path}.levels.{level}", positive=True)
            if bound is not None:
                bounds[level] = bound
        if not bounds["I"] > bounds["II"] > bounds["III"]:
            chk.error(spec.line_of("levels"), f"{path}.levels", "must decrease from I to III")
            return None
    sources: dict[str, Grade] = {}
    given = mapping(chk, spec.get("sources"), spec.line_of("sources"), f"{path}.sources")
    for name, entry in (given or {}).items():
        grade = _source(chk, entry, given.line_of(name), f"{path}.sources.{name}", bounds)
        if grade is not None:
            sources[str(name)] = grade
    default = None
    if spec.get("default") is not None:
        default = _source(chk, spec["default"], spec.line_of("default"), f"{path}.default", bounds)
    if by is None:
        return None
    return HazardGrades(by=by, sources=sources, default=default)


def parse_runaway(chk: Checker, raw: LineDict, path: str) -> Runaway | None:
    unknown_keys(chk, raw, ("temperature", "pressure", "window", "min_points", "rates", "levels", "clear", "for",
                            "limits", "grade"), path)
    temperature = text(chk, raw.get("temperature", "temp"), raw.line_of("temperature"), f"{path}.temperature")
    pressure = text(chk, raw.get("pressure", "pressure"), raw.line_of("pressure"), f"{path}.pressure")
    window = number(chk, raw.get("window", 600), raw.line_of("window"), f"{path}.window", positive=True)
    min_points = _int(chk, raw.get("min_points", 6), raw.line_of("min_points"), f"{path}.min_points", 3)
    rates = mapping(chk, raw.get("rates"), raw.line_of("rates"), f"{path}.rates")
    rate_values: dict[str, float] = {}
    for metric in (temperature, pressure):
        if rates is None or metric is None:
            break
        if metric not in rates:
            chk.error(raw.line_of("rates") or raw.line, f"{path}.rates",
                      f"needs the rise per minute of {metric!r} that counts as rising, e.g. {{temp: 0.1}}")
            continue
        value = number(chk, rates[metric], rates.line_of(metric), f"{path}.rates.{metric}", positive=True)
        if value is not None:
            rate_values[metric] = value
    levels = _levels(chk, raw.get("levels", {"yellow": 1, "orange": 3, "red": 6}), raw.line_of("levels"),
                     f"{path}.levels")
    clear = number(chk, raw.get("clear", 0.8), raw.line_of("clear"), f"{path}.clear", positive=True)
    if clear is not None and clear > 1:
        chk.error(raw.line_of("clear"), f"{path}.clear", f"must be in (0, 1], got {clear}")
        clear = None
    hold = number(chk, raw.get("for", 0), raw.line_of("for"), f"{path}.for")
    limits: dict[str, float] = {}
    given = mapping(chk, raw.get("limits"), raw.line_of("limits"), f"{path}.limits")
    for metric, value in (given or {}).items():
        limit = number(chk, value, given.line_of(metric), f"{path}.limits.{metric}")
        if limit is not None:
            limits[str(metric)] = limit
    grades = parse_grades(chk, raw["grade"], raw.line_of("grade"), f"{path}.grade") if "grade" in raw else None
    if len(rate_values) != 2 or None in (temperature, pressure, window, min_points, levels, clear, hold) \
            or ("grade" in raw and grades is None):
        return None
    if temperature == pressure:
        chk.error(raw.line_of("pressure"), f"{path}.pressure", "must name another metric than temperature")
        return None
    return Runaway(temperature=temperature, pressure=pressure, window_s=window, min_points=min_points,
                   rates=rate_values, levels=levels, clear=clear, hold_s=max(hold, 0.0), limits=limits,
                   grades=grades)


#: detector key -> parser(chk, raw, path) -> spec or None
PARSERS = {"runaway": parse_runaway}
