"""Rule kind of the elevator domain detector: the per-lift event state machine.

`elevator` watches one lift (sensor) through its speed, floor, door, levelling-zone, load and
the terminal's event flags, and raises one alert per event (GB/T 24476-style): entrapment,
over-speed, door open while running, unintended movement, stop outside the door zone, repeated
door faults, floor position lost. Each event's level is configurable.
"""

from __future__ import annotations

from dataclasses import dataclass

from lifeline.config_checks import Checker, mapping, number, text, unknown_keys
from lifeline.rule_kinds import _int, _level_name, _levels
from lifeline.yamlsource import LineDict

#: the lift's channels the state machine reads, by role; a rule may rename them (`metrics:`)
ROLES = ("speed", "floor", "door", "load", "leveling", "trapped", "door_fault")
#: events in alert order, with their default level
EVENT_LEVELS = {"entrapment": "red", "overspeed": "orange", "door_open_moving": "red",
                "unintended_movement": "red", "stop_outside_zone": "orange", "door_fault": "yellow",
                "position_lost": "orange"}


@dataclass(frozen=True)
class Elevator:
    """Parameters of the lift state machine (defaults: a 1.75 m/s traction lift)."""

    rated_speed: float  # m/s; a lift's catalogue field `rated_speed` overrides it
    overspeed: dict[str, float]  # colour -> multiple of the rated speed (governor trips at 1.15)
    moving_speed: float  # m/s above which the car is moving
    occupied_load: float  # % of rated load from which someone is in the car
    confirm_s: float  # a stop outside the door zone (with people: entrapment) counts after this
    door_openings: int  # re-openings of a held car within door_window_s that make a door fault
    door_window_s: float
    floor_height_m: float  # for the fastest possible floor change (position lost)
    levels: dict[str, str]  # event -> colour; an event left out is not watched (except overspeed)
    metrics: dict[str, str]  # role -> metric name


def parse_elevator(chk: Checker, raw: LineDict, path: str) -> Elevator | None:
    unknown_keys(chk, raw, ("rated_speed", "overspeed", "moving", "occupied", "confirm", "door_openings",
                            "door_window", "floor_height", "events", "metrics"), path)
    rated = number(chk, raw.get("rated_speed", 1.75), raw.line_of("rated_speed"), f"{path}.rated_speed", positive=True)
    overspeed = _levels(chk, raw.get("overspeed", {"yellow": 1.08, "orange": 1.15, "red": 1.25}),
                        raw.line_of("overspeed"), f"{path}.overspeed")
    moving = number(chk, raw.get("moving", 0.05), raw.line_of("moving"), f"{path}.moving", positive=True)
    occupied = number(chk, raw.get("occupied", 5), raw.line_of("occupied"), f"{path}.occupied", positive=True)
    confirm = number(chk, raw.get("confirm", 10), raw.line_of("confirm"), f"{path}.confirm")
    openings = _int(chk, raw.get("door_openings", 3), raw.line_of("door_openings"), f"{path}.door_openings", 2)
    window = number(chk, raw.get("door_window", 60), raw.line_of("door_window"), f"{path}.door_window", positive=True)
    height = number(chk, raw.get("floor_height", 3.2), raw.line_of("floor_height"), f"{path}.floor_height",
                    positive=True)
    levels = dict(EVENT_LEVELS)
    if "events" in raw:
        events = mapping(chk, raw["events"], raw.line_of("events"), f"{path}.events")
        if events is None:
            return None
        for event, colour in events.items():
            where = events.line_of(event)
            if event not in EVENT_LEVELS:
                chk.error(where, f"{path}.events.{event}", f"unknown event (expected {', '.join(EVENT_LEVELS)})")
            elif colour in (False, None, "off"):
                levels.pop(event)
            else:
                level = _level_name(chk, colour, where, f"{path}.events.{event}")
                if level is not None:
                    levels[event] = level
    metrics = {role: role for role in ROLES}
    if "metrics" in raw:
        names = mapping(chk, raw["metrics"], raw.line_of("metrics"), f"{path}.metrics")
        if names is None:
            return None
        for role, metric in names.items():
            if role not in ROLES:
                chk.error(names.line_of(role), f"{path}.metrics.{role}", f"unknown role (expected {', '.join(ROLES)})")
            else:
                name = text(chk, metric, names.line_of(role), f"{path}.metrics.{role}")
                if name is not None:
                    metrics[role] = name
    if confirm is not None and confirm < 0:
        chk.error(raw.line_of("confirm"), f"{path}.confirm", "must be >= 0")
        confirm = None
    if None in (rated, overspeed, moving, occupied, confirm, openings, window, height):
        return None
    return Elevator(rated_speed=rated, overspeed=overspeed, moving_speed=moving, occupied_load=occupied,
                    confirm_s=confirm, door_openings=openings, door_window_s=window, floor_height_m=height,
                    levels=levels, metrics=metrics)


#: detector key -> parser(chk, raw, path) -> spec or None
PARSERS = {"elevator": parse_elevator}
