"""Scenarios: which incidents happen, on which sensors, when. Built-in names, YAML files, and
combinations of both ("gas_leak+sewer_biogas", "suite+scenarios/gas-drill.yaml").

A scenario file:

    name: gas-drill
    description: A leak on a main next to a sewer-biogas trap.
    length: 2h            # simulated length of a run (default: the last incident's end + 10 min)
    repeat: 0             # > 0: start over every `repeat`, on newly drawn sensors (open-ended run)
    incidents:
      - kind: gas_leak          # one of KIND_NAMES
        at: 10m                 # seconds ("600"), with a unit (90s, 10m, 2h, 1h30m) or "HH:MM" Hefei time
        duration: 40m           # default: the kind's, +-15 %
        where: {main: GM-03-DN300}   # catalogue fields the sensor must have (a list: any of)
        sensor: GAS-03-07       # or exactly this sensor
        level: red              # preferred level (the rule decides which exist)
        params: {}              # kind-specific (drop, level, magnitude, keep, flow_m3h, metric)

Sensors are drawn from the kind's candidates (filtered by `where`) with the run's seed; an
incident never lands on a sensor or asset already busy with another incident at that time.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from lifeline.config import Config, Sensor
from lifeline.levels import LEVELS
from simulators.city_incidents import CITY_KINDS
from simulators.faults import FAULT_KINDS
from simulators.incidents import FIRST_INCIDENT_S, KINDS, REPEAT_S, Incident, IncidentKind, build_incident
from simulators.signals import DAY_S, LOCAL_UTC_OFFSET_S, Baseline

ALL_KINDS: dict[str, IncidentKind] = {**KINDS, **CITY_KINDS, **FAULT_KINDS}
KIND_NAMES = tuple(ALL_KINDS)
LATER_ROUND_JITTER_S = 20.0
LENGTH_MARGIN_S = 600.0


@dataclass(frozen=True)
class ScenarioItem:
    """One incident of a scenario (per round, when the scenario repeats)."""

    kind: str
    at_s: float | None = None  # seconds after the start; None: the kind's offset
    at_local: str | None = None  # "HH:MM" Hefei local time: the first such time after the start
    duration_s: float | None = None  # None: the kind's duration, +-15 %
    sensor: str | None = None
    where: dict[str, tuple[str, ...]] = field(default_factory=dict)
    level: str | None = None
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Scenario:
    """A named set of incidents; `repeat_s` restarts it in rounds (an open-ended run)."""

    name: str
    items: tuple[ScenarioItem, ...]
    repeat_s: float | None = None
    length_s: float | None = None  # simulated seconds a run needs; None: open-ended
    description: str = ""
    first_at_s: float | None = None  # the first usable item starts here (the demo: 15 s)

    def __add__(self, other: Scenario) -> Scenario:
        repeat = max(self.repeat_s, other.repeat_s) if self.repeat_s and other.repeat_s else None
        lengths = [x for x in (self.length_s, other.length_s) if x is not None]
        return Scenario(f"{self.name}+{other.name}", self.items + other.items, repeat,
                        None if repeat else (max(lengths) if lengths else None),
                        "; ".join(x for x in (self.description, other.description) if x))


# --------------------------------------------------------------------------------------------
# Built-in scenarios
# --------------------------------------------------------------------------------------------

def _single(name: str) -> Scenario:
    kind = ALL_KINDS[name]
    period = max(REPEAT_S, math.ceil((FIRST_INCIDENT_S + 1.15 * kind.duration_s + 60.0) / 60.0) * 60.0)
    return Scenario(name, (ScenarioItem(name, at_s=FIRST_INCIDENT_S),), repeat_s=period,
                    description=kind.description or name)


#: The scenario suite: every kind once over six simulated hours on the generated city; CI runs
#: it compressed (tests/test_scenarios.py). (kind, at, duration, where)
SUITE_ITEMS: tuple[tuple[str, str, str, dict[str, str]], ...] = (
    ("gas_leak", "10m", "40m", {"type": "manhole_methane"}),
    ("sewer_biogas", "15m", "3h", {"type": "manhole_methane"}),
    ("sensor_stuck", "20m", "2h", {"type": "manhole_methane"}),
    ("water_main_burst", "30m", "2h", {"type": "transient_pressure"}),
    ("sensor_drift", "40m", "4h", {"type": "manhole_methane"}),
    ("sensor_spikes", "50m", "2h", {"type": "strain_gauge"}),
    ("bridge_overload", "1h", "15m", {"type": "strain_gauge"}),
    ("bridge_stiffness_loss", "1h10m", "3h", {}),
    ("elevator_entrapment", "1h30m", "30m", {}),
    ("sensor_dropout", "1h40m", "1h", {"type": "manhole_methane"}),
    ("elevator_door_fault", "2h", "20m", {}),
    ("tank_runaway", "2h30m", "50m", {"type": "storage_tank"}),
    ("slow_leak", "3h", "2h30m", {"type": "manhole_methane"}),
    ("elevator_overspeed", "3h30m", "3m", {}),
    ("gateway_offline", "4h", "40m", {"type": "drainage_level"}),
    ("tank_overpressure", "4h50m", "5m", {"type": "storage_tank"}),
)
SUITE_LENGTH = "6h"


def _suite(name: str, keep: Callable[[IncidentKind], bool], description: str) -> Scenario:
    items = tuple(ScenarioItem(kind, at_s=parse_seconds(at), duration_s=parse_seconds(duration),
                               where={k: (v,) for k, v in where.items()})
                  for kind, at, duration, where in SUITE_ITEMS if keep(ALL_KINDS[kind]))
    return Scenario(name, items, None, parse_seconds(SUITE_LENGTH), description)


def builtin_scenarios() -> dict[str, Scenario]:
    default = Scenario("default", tuple(ScenarioItem(k, at_s=kind.offset_s) for k, kind in KINDS.items()),
                       repeat_s=REPEAT_S, description="the demo: one incident per domain every 15 minutes",
                       first_at_s=FIRST_INCIDENT_S)
    return {
        "default": default,
        "quiet": Scenario("quiet", (), description="no incidents: baseline traffic only"),
        "suite": _suite("suite", lambda k: True, "every kind once over 6 simulated hours (hazards, traps, faults)"),
        "hazards": _suite("hazards", lambda k: k.hazard, "the suite's hazard incidents only"),
        "traps": _suite("traps", lambda k: not k.hazard, "the suite's biogas trap and sensor faults only"),
        **{name: _single(name) for name in ALL_KINDS},
    }


# --------------------------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------------------------

_DURATION = re.compile(r"^\s*(?:(\d+(?:\.\d+)?)\s*h)?\s*(?:(\d+(?:\.\d+)?)\s*m)?\s*(?:(\d+(?:\.\d+)?)\s*s)?\s*$")


def parse_seconds(value: Any) -> float:
    """Seconds from a number or a string such as "90", "90s", "10m", "2h", "1h30m"."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration, got {value!r}")
    if isinstance(value, int | float):
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"expected a duration of 0 s or more, got {value!r}")
        return float(value)
    text = str(value).strip()
    try:
        return parse_seconds(float(text))
    except ValueError:
        pass
    match = _DURATION.match(text)
    if not match or not any(match.groups()):
        raise ValueError(f"expected a duration like 90, 90s, 10m, 2h or 1h30m, got {value!r}")
    hours, minutes, seconds = (float(g) if g else 0.0 for g in match.groups())
    return hours * 3600.0 + minutes * 60.0 + seconds


def _local_clock(value: str) -> str:
    match = re.match(r"^\s*(\d{1,2}):(\d{2})\s*$", value)
    if not match or int(match.group(1)) > 23 or int(match.group(2)) > 59:
        raise ValueError(f"expected HH:MM, got {value!r}")
    return f"{int(match.group(1)):02d}:{match.group(2)}"


def scenario_from_dict(raw: Any, name: str = "scenario") -> Scenario:
    """Validate a scenario document (the YAML file's content); ValueError lists every problem."""
    problems: list[str] = []
    if not isinstance(raw, dict):
        raise ValueError(f"{name}: expected a mapping with 'incidents:'")
    unknown = set(raw) - {"name", "description", "length", "repeat", "incidents"}
    if unknown:
        problems.append(f"unknown key(s) {sorted(unknown)} (expected name, description, length, repeat, incidents)")
    items: list[ScenarioItem] = []
    incidents = raw.get("incidents") or []
    if not isinstance(incidents, list):
        problems.append("incidents: expected a list")
        incidents = []
    for i, entry in enumerate(incidents):
        where = f"incidents[{i}]"
        if not isinstance(entry, dict):
            problems.append(f"{where}: expected a mapping")
            continue
        bad = set(entry) - {"kind", "at", "duration", "sensor", "where", "level", "params"}
        if bad:
            problems.append(f"{where}: unknown key(s) {sorted(bad)}")
        kind = entry.get("kind")
        if kind not in ALL_KINDS:
            problems.append(f"{where}.kind: {kind!r} is not one of {', '.join(KIND_NAMES)}")
            continue
        at_s = at_local = duration_s = None
        try:
            at = entry.get("at")
            if isinstance(at, str) and ":" in at:
                at_local = _local_clock(at)
            elif at is not None:
                at_s = parse_seconds(at)
        except ValueError as exc:
            problems.append(f"{where}.at: {exc}")
        try:
            duration_s = parse_seconds(entry["duration"]) if entry.get("duration") is not None else None
        except ValueError as exc:
            problems.append(f"{where}.duration: {exc}")
        level = entry.get("level")
        if level is not None and level not in LEVELS:
            problems.append(f"{where}.level: {level!r} is not one of {', '.join(LEVELS)}")
        match = entry.get("where") or {}
        if not isinstance(match, dict):
            problems.append(f"{where}.where: expected a mapping of catalogue field to value(s)")
            match = {}
        params = entry.get("params") or {}
        if not isinstance(params, dict):
            problems.append(f"{where}.params: expected a mapping")
            params = {}
        items.append(ScenarioItem(
            kind, at_s, at_local, duration_s, str(entry["sensor"]) if entry.get("sensor") is not None else None,
            {str(k): tuple(str(x) for x in (v if isinstance(v, list) else [v])) for k, v in match.items()},
            level, dict(params)))
    repeat = length = None
    try:
        repeat = parse_seconds(raw["repeat"]) or None if raw.get("repeat") is not None else None
        length = parse_seconds(raw["length"]) if raw.get("length") is not None else None
    except ValueError as exc:
        problems.append(str(exc))
    if problems:
        raise ValueError(f"{name}: " + "; ".join(problems))
    if length is None and repeat is None and items:
        length = max((it.at_s if it.at_s is not None else DAY_S if it.at_local else ALL_KINDS[it.kind].offset_s)
                     + (it.duration_s if it.duration_s is not None else 1.15 * ALL_KINDS[it.kind].duration_s)
                     for it in items) + LENGTH_MARGIN_S
    return Scenario(str(raw.get("name") or name), tuple(items), repeat, length, str(raw.get("description") or ""))


def load_scenario_file(path: Path) -> Scenario:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValueError(f"cannot read scenario file {path}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: YAML syntax: {exc}") from None
    return scenario_from_dict(raw, path.stem)


def resolve(scenario: str | Scenario) -> Scenario:
    """A Scenario from a name, a file path, or parts joined by '+' or ','; ValueError if unknown."""
    if isinstance(scenario, Scenario):
        return scenario
    builtins = builtin_scenarios()
    parts = [p.strip() for p in re.split(r"[+,]", scenario) if p.strip()]
    if not parts:
        raise ValueError("empty scenario name")
    resolved: list[Scenario] = []
    for part in parts:
        if part in builtins:
            resolved.append(builtins[part])
        elif part.endswith((".yaml", ".yml")) or Path(part).is_file():
            resolved.append(load_scenario_file(Path(part)))
        else:
            raise ValueError(f"unknown scenario {part!r} (expected one of: {', '.join(builtins)}, "
                             "or a scenario file .yaml)")
    combined = resolved[0]
    for other in resolved[1:]:
        combined = combined + other
    return combined


# --------------------------------------------------------------------------------------------
# Planning
# --------------------------------------------------------------------------------------------

def _offset_s(item: ScenarioItem, kind: IncidentKind, start_ms: int) -> float:
    if item.at_local is not None:
        hours, minutes = (int(x) for x in item.at_local.split(":"))
        local_s = (start_ms / 1000.0 + LOCAL_UTC_OFFSET_S) % DAY_S
        return (hours * 3600.0 + minutes * 60.0 - local_s) % DAY_S
    return item.at_s if item.at_s is not None else kind.offset_s


def _candidates(config: Config, kind: IncidentKind, item: ScenarioItem) -> list[int]:
    if item.sensor is not None:
        return [i for i, s in enumerate(config.sensors) if s.id == item.sensor and kind.fits(s)]
    fit = kind.candidates(config.sensors)
    if item.where:
        fit = [i for i in fit if all(config.sensors[i].field_value(f) in accepted for f, accepted in item.where.items())]
    return fit


def _footprint(config: Config, incident: Incident) -> set[str]:
    """Sensor ids and assets an incident occupies: nothing else may happen there meanwhile."""
    truth = incident.truth()
    busy = set(truth["sensors"]) | set(truth["assets"]) | {r["sensor"] for r in truth["related"]}
    if incident.offline_gateway:
        busy |= {s.id for s in config.sensors if s.gateway == incident.offline_gateway}
    return busy


def _is_free(sensor: Sensor, kind: IncidentKind, config: Config, busy: set[str]) -> bool:
    if sensor.id in busy or sensor.asset in busy:
        return False
    if kind.name == "gateway_offline":
        return not any(s.gateway == sensor.gateway and (s.id in busy or s.asset in busy) for s in config.sensors)
    return True


def plan(config: Config, baseline: Baseline, scenario: str | Scenario, start_ms: int, *, seed: int = 1,
         log: Callable[[str], Any] | None = None) -> Iterator[Incident]:
    """The incidents of a scenario in start order (forever when it repeats).

    Round r begins at start_ms + r * repeat_s; each usable item starts at its offset in the
    round (later rounds jittered by +-20 s, default durations by +-15 %), on a sensor drawn from
    its candidates, skipping sensors busy with an overlapping incident. Deterministic given
    (config, scenario, seed, start_ms). Items without a candidate sensor are skipped (logged).
    """
    scn = resolve(scenario)
    usable: list[tuple[ScenarioItem, IncidentKind, list[int]]] = []
    for item in scn.items:
        kind = ALL_KINDS[item.kind]
        candidates = _candidates(config, kind, item)
        if candidates:
            usable.append((item, kind, candidates))
        elif log:
            what = item.sensor or (", ".join(f"{k}={'|'.join(v)}" for k, v in item.where.items()) or
                                   f"{kind.domain} sensor with metric {kind.metric!r}")
            log(f"scenario {scn.name}: no sensor for {kind.name} ({what}), skipped")
    if not usable:
        return
    offsets = [_offset_s(item, kind, start_ms) for item, kind, _ in usable]
    if scn.first_at_s is not None:
        offsets[0] = scn.first_at_s
    sequence = 0
    occupied: list[tuple[int, int, set[str]]] = []  # (start, end, footprint) of planned incidents
    rounds = itertools.count() if scn.repeat_s else iter([0])
    for round_no in rounds:
        round_start_ms = start_ms + int(round_no * (scn.repeat_s or 0.0) * 1000)
        drafts = []
        for item_no, ((item, kind, candidates), offset) in enumerate(zip(usable, offsets, strict=True)):
            rng = np.random.default_rng([seed, round_no, item_no])
            pick = int(rng.integers(len(candidates)))
            jitter = 0.0 if round_no == 0 else float(rng.uniform(-LATER_ROUND_JITTER_S, LATER_ROUND_JITTER_S))
            duration = item.duration_s if item.duration_s is not None else kind.duration_s * float(rng.uniform(0.85, 1.15))
            begin_ms = round_start_ms + int((offset + jitter) * 1000)
            drafts.append((begin_ms, item_no, item, kind, candidates, pick, duration))
        drafts.sort(key=lambda d: (d[0], d[1]))
        for begin_ms, _, item, kind, candidates, pick, duration in drafts:
            end_ms = begin_ms + int(duration * 1000)
            occupied = [o for o in occupied if o[1] >= begin_ms]
            busy = set().union(*(o[2] for o in occupied if o[0] <= end_ms)) if occupied else set()
            order = candidates[pick:] + candidates[:pick]
            free = [i for i in order if _is_free(config.sensors[i], kind, config, busy)]
            if not free:
                if log:
                    log(f"scenario {scn.name}: every sensor for {kind.name} is busy at that time, skipped")
                continue
            sequence += 1
            incident = build_incident(config, baseline, kind, free[0], f"inc-{sequence:04d}", begin_ms, duration,
                                      seed=seed, level=item.level, params=item.params)
            occupied.append((incident.start_ms, incident.end_ms, _footprint(config, incident)))
            yield incident


SCENARIO_NAMES = tuple(builtin_scenarios())
