"""Rule kinds of the gas domain detectors: specs and parsers.

`gas_leak` fuses, per manhole, the evidence that CH4 comes from a leaking gas main rather than
from sewer biogas (DOMAIN.md, Gas): the ethane signature, the CH4 level, its fluctuation and
trend, whether it merely follows the manhole's temperature, and corroboration by neighbouring
manholes on the same main. The alert's statistic is the *leak gas*: likelihood x CH4 (%LEL).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lifeline.config_checks import Checker, mapping, number, text, unknown_keys
from lifeline.rule_kinds import _int, _levels
from lifeline.yamlsource import LineDict

#: Log-odds each piece of evidence adds to the leak likelihood (see detectors.domain.gas).
DEFAULT_WEIGHTS = {
    "bias": -3.0,  # no evidence: a leak is unlikely
    "ethane": 3.5,  # C2H6 with the CH4: natural gas
    "no_ethane": -4.0,  # an ethane channel that shows none: biogas
    "level": 1.0,  # per level_ref %LEL of CH4, up to twice
    "fluctuation": 1.0,  # leak gas comes in puffs
    "trend": 1.0,  # rising
    "neighbour": 1.0,  # per neighbouring manhole on the main with gas evidence
    "temperature": 1.0,  # subtracted when CH4 merely follows the manhole temperature
}


@dataclass(frozen=True)
class GasLeak:
    """Leak likelihood and location per manhole; levels on the leak gas (likelihood x CH4, %LEL)."""

    levels: dict[str, float]
    clear: float
    hold_s: float
    ch4: str  # metric names on the manhole's sensor
    ethane: str
    temp: str
    window_s: float  # look-back of fluctuation, trend and temperature tracking
    neighbours: int  # manholes either side on the same main that may corroborate
    ethane_ratio: float  # C2H6 / CH4 by volume at or above which the gas is natural gas
    ethane_min_ppm: float  # and at least this much C2H6 (the sensor's noise floor)
    level_ref: float  # %LEL of CH4 worth one `level` weight
    fluctuation_ref: float  # %LEL standard deviation of successive changes worth one `fluctuation`
    trend_ref: float  # %LEL per minute worth one `trend`
    rise: float  # %LEL above its window's minimum at which a neighbour's CH4 counts as rising
    stale_s: float  # a neighbour's reading older than this does not count
    weights: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))


def _positive(chk: Checker, raw: LineDict, key: str, default: float, path: str) -> float | None:
    return number(chk, raw.get(key, default), raw.line_of(key), f"{path}.{key}", positive=True)


def parse_gas_leak(chk: Checker, raw: LineDict, path: str) -> GasLeak | None:
    unknown_keys(chk, raw, ("levels", "clear", "for", "metrics", "window", "neighbours", "ethane_ratio",
                            "ethane_min", "level_ref", "fluctuation_ref", "trend_ref", "rise", "stale",
                            "weights"), path)
    levels = _levels(chk, raw["levels"], raw.line_of("levels"), f"{path}.levels") if "levels" in raw else \
        {"blue": 1.0, "yellow": 3.0, "orange": 12.0, "red": 20.0}
    clear = _positive(chk, raw, "clear", 0.8, path)
    if clear is not None and clear > 1:
        chk.error(raw.line_of("clear"), f"{path}.clear", f"must be in (0, 1], got {clear}")
        clear = None
    hold = number(chk, raw.get("for", 10), raw.line_of("for"), f"{path}.for")
    if hold is not None and hold < 0:
        chk.error(raw.line_of("for"), f"{path}.for", f"must be 0 or more seconds, got {hold}")
        hold = None
    names = {"ch4": "ch4", "ethane": "c2h6", "temp": "temp"}
    metrics = mapping(chk, raw.get("metrics"), raw.line_of("metrics"), f"{path}.metrics")
    if metrics is None:
        return None
    unknown_keys(chk, metrics, tuple(names), f"{path}.metrics")
    for role in names:
        if role in metrics:
            names[role] = text(chk, metrics[role], metrics.line_of(role), f"{path}.metrics.{role}") or names[role]
    weights = dict(DEFAULT_WEIGHTS)
    given = mapping(chk, raw.get("weights"), raw.line_of("weights"), f"{path}.weights")
    if given is None:
        return None
    unknown_keys(chk, given, tuple(DEFAULT_WEIGHTS), f"{path}.weights")
    for name in DEFAULT_WEIGHTS:
        if name in given:
            value = number(chk, given[name], given.line_of(name), f"{path}.weights.{name}")
            if value is not None:
                weights[name] = value
    values = {
        "window_s": _positive(chk, raw, "window", 900.0, path),
        "neighbours": _int(chk, raw.get("neighbours", 2), raw.line_of("neighbours"), f"{path}.neighbours", 0),
        "ethane_ratio": _positive(chk, raw, "ethane_ratio", 0.005, path),
        "ethane_min_ppm": _positive(chk, raw, "ethane_min", 5.0, path),
        "level_ref": _positive(chk, raw, "level_ref", 5.0, path),
        "fluctuation_ref": _positive(chk, raw, "fluctuation_ref", 2.0, path),
        "trend_ref": _positive(chk, raw, "trend_ref", 1.0, path),
        "rise": _positive(chk, raw, "rise", 1.5, path),
        "stale_s": _positive(chk, raw, "stale", 900.0, path),
    }
    if levels is None or clear is None or hold is None or None in values.values():
        return None
    return GasLeak(levels=levels, clear=clear, hold_s=hold, ch4=names["ch4"], ethane=names["ethane"],
                   temp=names["temp"], weights=weights, **values)


PARSERS = {"gas_leak": parse_gas_leak}
