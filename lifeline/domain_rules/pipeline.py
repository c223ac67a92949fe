"""Rule kinds of the pipeline domain detectors: specs and parsers.

* `pipe_burst`: negative-pressure-wave detection on high-rate pressure loggers and localisation
  of the burst between the two loggers bracketing it (DOMAIN.md, Pipelines).
* `mass_balance`: a district metered area's inflow minus outflow above what it normally
  consumes (a leak or burst inside it).
"""

from __future__ import annotations

from dataclasses import dataclass

from lifeline.config_checks import Checker, number, text, unknown_keys
from lifeline.rule_kinds import _int, _levels
from lifeline.yamlsource import LineDict


@dataclass(frozen=True)
class PipeBurst:
    """A sudden pressure fall (a wave front) located from its arrival times at two loggers.

    A logger sees a front when its pressure falls by at least `drop_rate` x `front` within
    `front` seconds. Levels are on the settled pressure drop (the channel's unit) at the logger
    nearest the burst. `wave_speed` (m/s) overrides the loggers' catalogue `wave_speed_mps`.
    """

    levels: dict[str, float]
    metric: str
    drop_rate: float  # channel unit per second
    front_s: float
    wave_speed: float | None
    wait_s: float  # how long (reading time) to wait for the neighbouring loggers' waveforms
    settle_s: float  # the drop is measured this long after the front


@dataclass(frozen=True)
class MassBalance:
    """Leak flow of a main's district: inflow - ratio x outflow, the ratio learnt in normal operation.

    The meter at the start of the main (smallest `position_m`) measures its inflow, the one at
    its end its outflow. Levels are on the leak flow, in the flow channel's unit.
    """

    levels: dict[str, float]
    clear: float
    hold_s: float
    metric: str
    warmup: int  # readings that form the first estimate of the ratio
    learn: float  # weight with which the ratio follows normal readings after warm-up
    stale_s: float  # an outflow reading older than this is not paired with an inflow reading


def _positive(chk: Checker, raw: LineDict, key: str, default: float, path: str) -> float | None:
    return number(chk, raw.get(key, default), raw.line_of(key), f"{path}.{key}", positive=True)


def _clear(chk: Checker, raw: LineDict, default: float, path: str) -> float | None:
    clear = _positive(chk, raw, "clear", default, path)
    if clear is not None and clear > 1:
        chk.error(raw.line_of("clear"), f"{path}.clear", f"must be in (0, 1], got {clear}")
        return None
    return clear


def _hold(chk: Checker, raw: LineDict, default: float, path: str) -> float | None:
    hold = number(chk, raw.get("for", default), raw.line_of("for"), f"{path}.for")
    if hold is not None and hold < 0:
        chk.error(raw.line_of("for"), f"{path}.for", f"must be 0 or more seconds, got {hold}")
        return None
    return hold


def parse_pipe_burst(chk: Checker, raw: LineDict, path: str) -> PipeBurst | None:
    unknown_keys(chk, raw, ("levels", "metric", "drop_rate", "front", "wave_speed", "wait", "settle"), path)
    levels = _levels(chk, raw["levels"], raw.line_of("levels"), f"{path}.levels") if "levels" in raw else \
        {"blue": 0.02, "yellow": 0.05, "orange": 0.1, "red": 0.15}
    metric = text(chk, raw.get("metric", "pressure"), raw.line_of("metric"), f"{path}.metric")
    wave_speed = _positive(chk, raw, "wave_speed", 1.0, path) if "wave_speed" in raw else None
    values = {
        "drop_rate": _positive(chk, raw, "drop_rate", 0.05, path),
        "front_s": _positive(chk, raw, "front", 0.3, path),
        "wait_s": _positive(chk, raw, "wait", 30.0, path),
        "settle_s": _positive(chk, raw, "settle", 2.0, path),
    }
    if levels is None or metric is None or None in values.values() or ("wave_speed" in raw and wave_speed is None):
        return None
    return PipeBurst(levels=levels, metric=metric, wave_speed=wave_speed, **values)


def parse_mass_balance(chk: Checker, raw: LineDict, path: str) -> MassBalance | None:
    unknown_keys(chk, raw, ("levels", "clear", "for", "metric", "warmup", "learn", "stale"), path)
    levels = _levels(chk, raw["levels"], raw.line_of("levels"), f"{path}.levels") if "levels" in raw else \
        {"blue": 50.0, "yellow": 100.0, "orange": 200.0, "red": 400.0}
    metric = text(chk, raw.get("metric", "flow"), raw.line_of("metric"), f"{path}.metric")
    learn = number(chk, raw.get("learn", 0.05), raw.line_of("learn"), f"{path}.learn")
    if learn is not None and not 0 <= learn < 1:
        chk.error(raw.line_of("learn"), f"{path}.learn", "must be in [0, 1)")
        learn = None
    values = {
        "clear": _clear(chk, raw, 0.8, path),
        "hold_s": _hold(chk, raw, 600.0, path),
        "warmup": _int(chk, raw.get("warmup", 12), raw.line_of("warmup"), f"{path}.warmup", 1),
        "stale_s": _positive(chk, raw, "stale", 900.0, path),
    }
    if levels is None or metric is None or learn is None or None in values.values():
        return None
    return MassBalance(levels=levels, metric=metric, learn=learn, **values)


PARSERS = {"pipe_burst": parse_pipe_burst, "mass_balance": parse_mass_balance}
