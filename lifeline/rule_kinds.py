"""Rule kinds beyond `threshold`: their parameters and validation (CONTRACT §2 shape).

Every rule is `id`, `match` and exactly one detector key; this module owns the detector keys
`trend`, `change`, `deadman` and `quality`. Levels are always named by colour.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lifeline.config_checks import Checker, mapping, number, text, unknown_keys
from lifeline.levels import LEVELS
from lifeline.yamlsource import LineDict


@dataclass(frozen=True)
class Trend:
    """Least-squares slope over a sliding time window.

    Either slope levels (`rising` or `falling`, units per minute) or a `forecast`: the time
    until the channel's threshold rule reaches its next level at the current slope, raised
    as a forecast alert when under `horizon_s`.
    """

    window_s: float
    min_points: int
    direction: str | None  # "rising" | "falling" for slope levels; None for a forecast rule
    levels: dict[str, float]  # colour -> |slope| per minute
    clear: float
    hold_s: float
    forecast_rule: str | None  # threshold rule id; None = the threshold rule on the same channel
    horizon_s: float
    max_points: int


@dataclass(frozen=True)
class Change:
    """Shift detection on a learned baseline: CUSUM (Page 1954) or EWMA control limits.

    Levels are in units of the baseline's standard deviation: the CUSUM statistic for
    `cusum`, the EWMA's distance from the mean in multiples of its own sigma for `ewma`.
    """

    method: str  # cusum | ewma
    levels: dict[str, float]
    k: float  # CUSUM allowance, sigma units
    lam: float  # EWMA weight
    warmup: int  # readings that form the initial baseline
    learn: float  # weight with which the baseline follows normal readings after warm-up
    direction: str  # up | down | both
    hold_s: float
    clear: float = 0.8  # hysteresis: an alarm holds until the statistic is below clear x its level


@dataclass(frozen=True)
class Deadman:
    """Silence: no reading from a sensor (or a whole gateway) for `after` x its interval."""

    after: float
    level: str
    gateway_level: str | None  # None: no gateway-level alert
    grace_s: float | None  # after start-up; None = after x interval


@dataclass(frozen=True)
class Quality:
    """Sensor faults (maintenance alerts): range, stuck, spikes, impossible rate of change."""

    range_min: float | None
    range_max: float | None
    stuck_readings: int | None
    stuck_seconds: float | None
    stuck_tolerance: float
    spike_window: int | None
    spike_threshold: float
    max_rate_per_s: float | None
    level: str
    on_fault: str  # mark | suppress: what happens to hazard alerts of a faulty channel
    clear_after: int  # good readings in a row that end a fault


def _levels(chk: Checker, raw: Any, line: int | None, path: str, *, positive: bool = True,
            increasing: bool = True) -> dict[str, float] | None:
    if not isinstance(raw, dict) or not raw:
        chk.error(line, path, "expected a mapping of level colour to value")
        return None
    levels: dict[str, float] = {}
    for colour, value in raw.items():
        where = raw.line_of(colour) if isinstance(raw, LineDict) else line
        if colour not in LEVELS:
            chk.error(where, f"{path}.{colour}", f"unknown level (expected {', '.join(LEVELS)})")
            continue
        number_ = number(chk, value, where, f"{path}.{colour}", positive=positive)
        if number_ is not None:
            levels[colour] = number_
    ordered = [levels[c] for c in LEVELS if c in levels]
    if increasing and not all(a < b for a, b in zip(ordered, ordered[1:], strict=False)):
        chk.error(line, path, "level values must strictly increase from blue to red")
        return None
    return levels or None


def _level_name(chk: Checker, value: Any, line: int | None, path: str) -> str | None:
    if value not in LEVELS:
        chk.error(line, path, f"expected a level colour ({', '.join(LEVELS)}), got {value!r}")
        return None
    return str(value)


def _int(chk: Checker, value: Any, line: int | None, path: str, minimum: int = 1) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        chk.error(line, path, f"expected a whole number >= {minimum}, got {value!r}")
        return None
    return value


def parse_trend(chk: Checker, raw: LineDict, path: str) -> Trend | None:
    unknown_keys(chk, raw, ("window", "min_points", "max_points", "rising", "falling", "clear", "for",
                            "forecast"), path)
    window = number(chk, raw.get("window"), raw.line_of("window"), f"{path}.window", positive=True)
    min_points = _int(chk, raw.get("min_points", 3), raw.line_of("min_points"), f"{path}.min_points", 2)
    max_points = _int(chk, raw.get("max_points", 64), raw.line_of("max_points"), f"{path}.max_points", 2)
    modes = [k for k in ("rising", "falling", "forecast") if k in raw]
    if len(modes) != 1:
        chk.error(raw.line, path, "needs exactly one of rising:, falling: or forecast: (use two rules for both)")
        return None
    mode = modes[0]
    levels: dict[str, float] | None = {}
    forecast_rule = None
    horizon = 0.0
    if mode == "forecast":
        spec = mapping(chk, raw["forecast"], raw.line_of("forecast"), f"{path}.forecast")
        if spec is None:
            return None
        unknown_keys(chk, spec, ("threshold", "horizon"), f"{path}.forecast")
        if "threshold" in spec:
            forecast_rule = text(chk, spec["threshold"], spec.line_of("threshold"), f"{path}.forecast.threshold")
        horizon = number(chk, spec.get("horizon"), spec.line_of("horizon"), f"{path}.forecast.horizon",
                         positive=True) or 0.0
        if not horizon:
            return None
    else:
        levels = _levels(chk, raw[mode], raw.line_of(mode), f"{path}.{mode}")
    clear = number(chk, raw.get("clear", 0.8), raw.line_of("clear"), f"{path}.clear", positive=True)
    if clear is not None and clear > 1:
        chk.error(raw.line_of("clear"), f"{path}.clear", f"must be in (0, 1], got {clear}")
        clear = None
    hold = number(chk, raw.get("for", 0), raw.line_of("for"), f"{path}.for")
    if None in (window, min_points, max_points, levels, clear, hold) or (hold or 0) < 0:
        return None
    if max_points < min_points:
        chk.error(raw.line_of("max_points"), f"{path}.max_points", "must be at least min_points")
        return None
    return Trend(window_s=window, min_points=min_points, direction=None if mode == "forecast" else mode,
                 levels=levels or {}, clear=clear, hold_s=hold, forecast_rule=forecast_rule, horizon_s=horizon,
                 max_points=max_points)


def parse_change(chk: Checker, raw: LineDict, path: str) -> Change | None:
    unknown_keys(chk, raw, ("method", "levels", "k", "lambda", "warmup", "learn", "direction", "for", "clear"),
                 path)
    method = raw.get("method", "cusum")
    if method not in ("cusum", "ewma"):
        chk.error(raw.line_of("method"), f"{path}.method", f"expected cusum or ewma, got {method!r}")
        return None
    default_levels = {"yellow": 5.0, "orange": 8.0, "red": 12.0} if method == "cusum" else {
        "yellow": 3.0, "orange": 4.0, "red": 5.0}
    levels = _levels(chk, raw["levels"], raw.line_of("levels"), f"{path}.levels") if "levels" in raw \
        else default_levels
    k = number(chk, raw.get("k", 0.5), raw.line_of("k"), f"{path}.k")
    lam = number(chk, raw.get("lambda", 0.2), raw.line_of("lambda"), f"{path}.lambda", positive=True)
    if lam is not None and lam > 1:
        chk.error(raw.line_of("lambda"), f"{path}.lambda", "must be in (0, 1]")
        lam = None
    warmup = _int(chk, raw.get("warmup", 30), raw.line_of("warmup"), f"{path}.warmup", 2)
    learn = number(chk, raw.get("learn", 0.01), raw.line_of("learn"), f"{path}.learn")
    if learn is not None and not 0 <= learn < 1:
        chk.error(raw.line_of("learn"), f"{path}.learn", "must be in [0, 1)")
        learn = None
    direction = raw.get("direction", "both")
    if direction not in ("up", "down", "both"):
        chk.error(raw.line_of("direction"), f"{path}.direction", f"expected up, down or both, got {direction!r}")
        return None
    hold = number(chk, raw.get("for", 0), raw.line_of("for"), f"{path}.for")
    clear = number(chk, raw.get("clear", 0.8), raw.line_of("clear"), f"{path}.clear", positive=True)
    if clear is not None and clear > 1:
        chk.error(raw.line_of("clear"), f"{path}.clear", f"must be in (0, 1], got {clear}")
        clear = None
    if None in (levels, k, lam, warmup, learn, hold, clear):
        return None
    return Change(method=method, levels=levels, k=k, lam=lam, warmup=warmup, learn=learn, direction=direction,
                  hold_s=hold, clear=clear)


def parse_deadman(chk: Checker, raw: LineDict, path: str) -> Deadman | None:
    unknown_keys(chk, raw, ("after", "level", "gateway_level", "grace"), path)
    after = number(chk, raw.get("after", 3), raw.line_of("after"), f"{path}.after", positive=True)
    level = _level_name(chk, raw.get("level", "yellow"), raw.line_of("level"), f"{path}.level")
    gateway_level = None
    if raw.get("gateway_level") is not None:
        gateway_level = _level_name(chk, raw["gateway_level"], raw.line_of("gateway_level"), f"{path}.gateway_level")
        if gateway_level is None:
            return None
    grace = None
    if "grace" in raw:
        grace = number(chk, raw["grace"], raw.line_of("grace"), f"{path}.grace")
        if grace is None:
            return None
    if after is None or level is None:
        return None
    return Deadman(after=after, level=level, gateway_level=gateway_level, grace_s=grace)


def parse_quality(chk: Checker, raw: LineDict, path: str) -> Quality | None:
    unknown_keys(chk, raw, ("range", "stuck", "spike", "max_rate", "level", "on_fault", "clear_after"), path)
    ok = True
    range_min = range_max = None
    if "range" in raw:
        spec = mapping(chk, raw["range"], raw.line_of("range"), f"{path}.range")
        if spec is None:
            return None
        unknown_keys(chk, spec, ("min", "max"), f"{path}.range")
        if "min" in spec:
            range_min = number(chk, spec["min"], spec.line_of("min"), f"{path}.range.min")
        if "max" in spec:
            range_max = number(chk, spec["max"], spec.line_of("max"), f"{path}.range.max")
        if range_min is not None and range_max is not None and range_min >= range_max:
            chk.error(raw.line_of("range"), f"{path}.range", "min must be below max")
            ok = False
    stuck_readings = stuck_seconds = None
    tolerance = 0.0
    if "stuck" in raw:
        spec = mapping(chk, raw["stuck"], raw.line_of("stuck"), f"{path}.stuck")
        if spec is None:
            return None
        unknown_keys(chk, spec, ("readings", "seconds", "tolerance"), f"{path}.stuck")
        stuck_readings = _int(chk, spec.get("readings", 20), spec.line_of("readings"), f"{path}.stuck.readings", 2)
        if "seconds" in spec:
            stuck_seconds = number(chk, spec["seconds"], spec.line_of("seconds"), f"{path}.stuck.seconds",
                                   positive=True)
        tolerance = number(chk, spec.get("tolerance", 0.0), spec.line_of("tolerance"), f"{path}.stuck.tolerance") \
            or 0.0
        ok = ok and stuck_readings is not None
    spike_window = None
    spike_threshold = 8.0
    if "spike" in raw:
        spec = mapping(chk, raw["spike"], raw.line_of("spike"), f"{path}.spike")
        if spec is None:
            return None
        unknown_keys(chk, spec, ("window", "threshold"), f"{path}.spike")
        # Defaults measured on Gaussian noise: window 25 / threshold 8 flags about 1e-5 of
        # readings; window 9 / threshold 6 would flag about 1 %.
        spike_window = _int(chk, spec.get("window", 25), spec.line_of("window"), f"{path}.spike.window", 3)
        spike_threshold = number(chk, spec.get("threshold", 8.0), spec.line_of("threshold"),
                                 f"{path}.spike.threshold", positive=True) or 8.0
        ok = ok and spike_window is not None
    max_rate = None
    if "max_rate" in raw:
        max_rate = number(chk, raw["max_rate"], raw.line_of("max_rate"), f"{path}.max_rate", positive=True)
        ok = ok and max_rate is not None
    level = _level_name(chk, raw.get("level", "blue"), raw.line_of("level"), f"{path}.level")
    on_fault = raw.get("on_fault", "mark")
    if on_fault not in ("mark", "suppress"):
        chk.error(raw.line_of("on_fault"), f"{path}.on_fault", f"expected mark or suppress, got {on_fault!r}")
        ok = False
    clear_after = _int(chk, raw.get("clear_after", 3), raw.line_of("clear_after"), f"{path}.clear_after", 1)
    if not any(k in raw for k in ("range", "stuck", "spike", "max_rate")):
        chk.error(raw.line, path, "needs at least one check: range, stuck, spike or max_rate")
        ok = False
    if not ok or level is None or clear_after is None:
        return None
    return Quality(range_min=range_min, range_max=range_max, stuck_readings=stuck_readings,
                   stuck_seconds=stuck_seconds, stuck_tolerance=tolerance, spike_window=spike_window,
                   spike_threshold=spike_threshold, max_rate_per_s=max_rate, level=level, on_fault=on_fault,
                   clear_after=clear_after)


#: detector key -> parser of its parameters
PARSERS = {"trend": parse_trend, "change": parse_change, "deadman": parse_deadman, "quality": parse_quality}
