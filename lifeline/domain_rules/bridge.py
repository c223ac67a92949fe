"""Rule kinds of the bridge domain detectors: specs and parsers.

* `bridge_modal`: natural-frequency tracking of a span from its acceleration blocks (Welch PSD,
  peak picking, temperature compensation), levels on the drop from a learned baseline
  (DOMAIN.md: about 5 / 10 / 15 %).
* `bridge_overload`: several strain / deflection sensors of one span loaded together.

Levels against design values and slow deflection growth are `threshold` and `trend` rules.
"""

from __future__ import annotations

from dataclasses import dataclass

from lifeline.config_checks import Checker, mapping, number, text, unknown_keys
from lifeline.rule_kinds import _int, _levels
from lifeline.yamlsource import LineDict


@dataclass(frozen=True)
class Modal:
    """Natural-frequency drop of a span's first tracked mode, against its learned baseline."""

    band_hz: tuple[float, float]  # the mode's band, where the PSD peak is picked
    levels: dict[str, float]  # colour -> drop below the baseline, percent
    clear: float  # hysteresis: a level holds until the drop is below clear x its value
    hold_s: float
    segment: int  # Welch segment length, samples
    min_samples: int  # shorter blocks are not analysed
    temperature: str | None  # metric of the span's temperature channels; None: no compensation
    temp_coefficient: float  # relative frequency change per degC (-0.0015: stiffer in the cold)
    reference_temp: float  # degC the baseline is expressed at
    baseline_blocks: int  # healthy blocks whose median forms the baseline
    learn: float  # weight with which a healthy block moves the baseline afterwards


@dataclass(frozen=True)
class Overload:
    """A span whose strain / deflection sensors are loaded together beyond a share of design."""

    design: dict[str, float]  # metric -> design (limit-state) value
    sensors: int  # how many sensors of the span must be loaded together
    window_s: float  # readings this close in time count as simultaneous
    levels: dict[str, float]  # colour -> live-load share of the design margin
    clear: float
    hold_s: float
    baseline_s: float  # time constant of each sensor's learned dead-load + thermal baseline


def _clear(chk: Checker, raw: LineDict, path: str, default: float) -> float | None:
    clear = number(chk, raw.get("clear", default), raw.line_of("clear"), f"{path}.clear", positive=True)
    if clear is not None and clear > 1:
        chk.error(raw.line_of("clear"), f"{path}.clear", f"must be in (0, 1], got {clear}")
        return None
    return clear


def _hold(chk: Checker, raw: LineDict, path: str) -> float | None:
    hold = number(chk, raw.get("for", 0), raw.line_of("for"), f"{path}.for")
    if hold is not None and hold < 0:
        chk.error(raw.line_of("for"), f"{path}.for", "must be >= 0")
        return None
    return hold


def parse_modal(chk: Checker, raw: LineDict, path: str) -> Modal | None:
    unknown_keys(chk, raw, ("band", "drop", "clear", "for", "segment", "min_samples", "temperature", "baseline",
                            "learn"), path)
    band = raw.get("band", [1.0, 6.0])
    low = high = None
    if not isinstance(band, list) or len(band) != 2:
        chk.error(raw.line_of("band"), f"{path}.band", f"expected [low, high] in Hz, got {band!r}")
    else:
        line = raw.line_of("band")
        low = number(chk, band[0], line, f"{path}.band[0]", positive=True)
        high = number(chk, band[1], line, f"{path}.band[1]", positive=True)
        if low is not None and high is not None and low >= high:
            chk.error(line, f"{path}.band", "low must be below high")
            low = None
    percent = _levels(chk, raw.get("drop", {"blue": 5, "yellow": 10, "orange": 15}), raw.line_of("drop"),
                      f"{path}.drop")
    if percent is not None and max(percent.values()) >= 100:
        chk.error(raw.line_of("drop"), f"{path}.drop", "drops are percent below the baseline, under 100")
        percent = None
    segment = _int(chk, raw.get("segment", 1024), raw.line_of("segment"), f"{path}.segment", 16)
    min_samples = _int(chk, raw.get("min_samples", 512), raw.line_of("min_samples"), f"{path}.min_samples", 16)
    temperature, coefficient, reference = "temp", -0.15, 15.0
    if "temperature" in raw:
        spec = raw["temperature"]
        if spec is False or spec is None:
            temperature = None
        else:
            spec = mapping(chk, spec, raw.line_of("temperature"), f"{path}.temperature")
            if spec is None:
                return None
            unknown_keys(chk, spec, ("metric", "coefficient", "reference"), f"{path}.temperature")
            temperature = text(chk, spec.get("metric", "temp"), spec.line_of("metric"), f"{path}.temperature.metric")
            coefficient = number(chk, spec.get("coefficient", -0.15), spec.line_of("coefficient"),
                                 f"{path}.temperature.coefficient")
            reference = number(chk, spec.get("reference", 15.0), spec.line_of("reference"),
                               f"{path}.temperature.reference")
            if coefficient is None or reference is None or temperature is None:
                return None
    baseline = _int(chk, raw.get("baseline", 3), raw.line_of("baseline"), f"{path}.baseline", 1)
    learn = number(chk, raw.get("learn", 0.05), raw.line_of("learn"), f"{path}.learn")
    if learn is not None and not 0 <= learn < 1:
        chk.error(raw.line_of("learn"), f"{path}.learn", "must be in [0, 1)")
        learn = None
    clear, hold = _clear(chk, raw, path, 0.8), _hold(chk, raw, path)
    if None in (low, high, percent, segment, min_samples, baseline, learn, clear, hold):
        return None
    return Modal(band_hz=(low, high), levels=percent, clear=clear, hold_s=hold,
                 segment=segment, min_samples=min_samples, temperature=temperature,
                 temp_coefficient=coefficient / 100.0, reference_temp=reference, baseline_blocks=baseline,
                 learn=learn)


def parse_overload(chk: Checker, raw: LineDict, path: str) -> Overload | None:
    unknown_keys(chk, raw, ("design", "sensors", "window", "levels", "clear", "for", "baseline"), path)
    design_raw = mapping(chk, raw.get("design"), raw.line_of("design"), f"{path}.design")
    design: dict[str, float] = {}
    if design_raw is not None:
        for metric, value in design_raw.items():
            limit = number(chk, value, design_raw.line_of(metric), f"{path}.design.{metric}", positive=True)
            if limit is not None:
                design[str(metric)] = limit
    if not design:
        chk.error(raw.line_of("design") or raw.line, f"{path}.design",
                  "needs the design value of each metric, e.g. {strain: 400, deflection: 35}")
    sensors = _int(chk, raw.get("sensors", 2), raw.line_of("sensors"), f"{path}.sensors", 1)
    window = number(chk, raw.get("window", 30), raw.line_of("window"), f"{path}.window", positive=True)
    levels = _levels(chk, raw.get("levels", {"blue": 0.3, "yellow": 0.4, "orange": 0.6, "red": 0.8}),
                     raw.line_of("levels"), f"{path}.levels")
    baseline = number(chk, raw.get("baseline", 1800), raw.line_of("baseline"), f"{path}.baseline", positive=True)
    clear, hold = _clear(chk, raw, path, 0.8), _hold(chk, raw, path)
    if not design or None in (sensors, window, levels, baseline, clear, hold):
        return None
    return Overload(design=design, sensors=sensors, window_s=window, levels=levels, clear=clear, hold_s=hold,
                    baseline_s=baseline)



#: detector key -> parser(chk, raw, path) -> spec or None
PARSERS = {"bridge_modal": parse_modal, "bridge_overload": parse_overload}
