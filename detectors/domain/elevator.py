"""Domain detector of the elevator lifeline: a per-lift event state machine.

A lift terminal reports all its channels together (speed, floor, door, levelling zone, load and
its own trapped / door-fault flags); readings of one lift at one timestamp form a *frame*.
Channels missing from a frame keep their last value. Each frame is compared with the lift's
previous one to see the events of GB/T 24476 (see `elevator_events`):

* entrapment: the terminal's trapped flag, or the car stopped outside the door zone with the
  door closed and someone inside (load >= `occupied`) for `confirm` seconds - earlier than a
  terminal that waits 30 s, and for terminals without the flag;
* stop outside the door zone: stopped outside the zone for `confirm` seconds, not an entrapment;
* over-speed: speed / rated speed, graded (the governor trips at 115 %);
* door open while running; unintended movement (the car leaves the landing with the door open);
* door fault: the terminal's flag, or `door_openings` re-openings of a held car within
  `door_window` seconds;
* position lost: a floor change faster than the car can travel.

All frames of a batch are evaluated at once (carry-forward, previous-frame comparisons and the
window counts are array operations), and each (lift, event) statistic feeds a LevelMachine
stream. One alert per (rule, lift, event): the binding's metric is the event's code.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from detectors.batching import BindingIndex
from detectors.domain.elevator_events import EVENTS
from detectors.level_machine import LevelMachine, flag_threshold
from detectors.threshold import Binding, ThresholdFindings, empty_findings
from ingest.batch import Batch
from lifeline.catalogue import Catalogue, Channel
from lifeline.config import Rule, Sensor, Threshold
from lifeline.domain_rules.elevator import EVENT_LEVELS, ROLES, Elevator
from lifeline.levels import level_name

_NO_TS = np.iinfo(np.int64).min
_NO_SINCE = np.iinfo(np.int64).max
EVENT_CODES = tuple(EVENT_LEVELS)
SPEED, FLOOR, DOOR, LOAD, LEVELING, TRAPPED, DOOR_FAULT = range(len(ROLES))
(ENTRAPMENT, OVERSPEED, DOOR_OPEN_MOVING, UNINTENDED, STOP_OUTSIDE, DOOR_FAULT_EVENT,
 POSITION_LOST) = range(len(EVENT_CODES))
POSITION_MARGIN = 1.25  # the car cannot travel faster than 125 % of its rated speed between frames


class ElevatorDetector:
    """Event levels for every (elevator rule, lift, event) binding."""

    kind = "elevator"

    def __init__(self, lifts: Sequence[tuple[Rule, Sensor, dict[str, Channel]]], n_channels: int):
        """lifts : (rule, sensor, role -> channel) per watched lift."""
        self.lifts = tuple(lifts)
        n_lifts = len(self.lifts)
        n_events = len(EVENT_CODES)
        bindings: list[Binding] = []
        #: (lifts, events) binding of each watched event, -1 where the rule does not watch it
        self._binding_of = np.full((n_lifts, n_events), -1, np.int64)
        thresholds: list[Threshold] = []
        slot_channel, slot_lift, slot_role = [], [], []
        rated = []
        specs: list[Elevator] = []
        lift_of_binding: list[int] = []
        for lift, (rule, sensor, channels) in enumerate(self.lifts):
            spec: Elevator = rule.spec
            specs.append(spec)
            rated.append(sensor.number("rated_speed", spec.rated_speed))
            anchor = channels.get("speed", next(iter(channels.values())))
            for e, code in enumerate(EVENT_CODES):
                if code not in spec.levels:
                    continue
                self._binding_of[lift, e] = len(bindings)
                lift_of_binding.append(lift)
                # one alert per event of the lift: the binding's metric is the event's code
                bindings.append(Binding(len(bindings), rule, replace(anchor, metric=code, unit="")))
                thresholds.append(Threshold("above", dict(spec.overspeed), 0.95, 0.0) if e == OVERSPEED
                                  else flag_threshold(spec.levels[code]))
            for r, role in enumerate(ROLES):
                if role in channels:
                    slot_channel.append(channels[role].index)
                    slot_lift.append(lift)
                    slot_role.append(r)
        self.bindings = tuple(bindings)
        self._lift_of = np.array(lift_of_binding, np.int64)
        self._specs = specs
        self._slot_lift = np.array(slot_lift, np.int64)
        self._slot_role = np.array(slot_role, np.int64)
        self._index = BindingIndex(np.array(slot_channel, np.int64), n_channels)
        self._machine = LevelMachine([(b.rule, b.channel) for b in self.bindings], thresholds)
        self._rated = np.array(rated, np.float64)
        self._moving = np.array([s.moving_speed for s in specs])
        self._occupied = np.array([s.occupied_load for s in specs])
        self._confirm_ms = np.array([s.confirm_s * 1000.0 for s in specs])
        self._openings = np.array([s.door_openings for s in specs], np.int64)
        self._door_window_ms = np.array([s.door_window_s * 1000.0 for s in specs])
        self._floor_height = np.array([s.floor_height_m for s in specs])
        # lift state
        self.state = np.full((n_lifts, len(ROLES)), np.nan)  # latest value of each role
        self._last_ts = np.full(n_lifts, _NO_TS, np.int64)
        self._stop_onset = np.full(n_lifts, _NO_SINCE, np.int64)  # stopped outside the zone since
        depth = int(self._openings.max()) if n_lifts else 1
        self._door_opened = np.full((n_lifts, depth), _NO_TS, np.int64)  # the newest re-opening times
        #: (bindings, roles) the lift's frame at each binding's latest level change (its message)
        self._at_change = np.full((len(self.bindings), len(ROLES)), np.nan)

    @classmethod
    def from_rules(cls, catalogue: Catalogue, rules: Sequence[Rule]) -> ElevatorDetector:
        """A lift per sensor whose speed channel an elevator rule matches."""
        lifts = []
        for rule in rules:
            if rule.kind != "elevator":
                continue
            spec: Elevator = rule.spec
            for sensor in catalogue.sensors:
                by_metric = catalogue.channels_of[sensor.id]
                speed = spec.metrics["speed"]
                if speed not in by_metric or not rule.matches(sensor, catalogue.owner_of(sensor), speed):
                    continue
                channels = {role: catalogue.channels[by_metric[spec.metrics[role]]] for role in ROLES
                            if spec.metrics[role] in by_metric}
                lifts.append((rule, sensor, channels))
        return cls(lifts, len(catalogue))

    # -- evaluation ----------------------------------------------------------------------------
    def update(self, batch: Batch) -> ThresholdFindings:
        """All frames of the batch at once: each lift's frames follow its state row, missing
        channels are carried forward, and every comparison with the previous frame is a shift."""
        if len(batch) == 0 or not self.bindings:
            return empty_findings()
        slot, row = self._index.expand(batch.channel)
        if slot.size == 0:
            return empty_findings()
        lift, role = self._slot_lift[slot], self._slot_role[slot]
        ts, value = np.asarray(batch.ts, np.int64)[row], np.asarray(batch.value, np.float64)[row]
        on_time = ts >= self._last_ts[lift]  # a late reading is archived, not evaluated
        lift, role, ts, value = lift[on_time], role[on_time], ts[on_time], value[on_time]
        if lift.size == 0:
            return empty_findings()
        # frames: the readings of one lift at one timestamp, after a state row per lift
        lifts = np.unique(lift)
        order = np.lexsort((ts, lift))
        lift, role, ts, value = lift[order], role[order], ts[order], value[order]
        new = np.r_[True, (lift[1:] != lift[:-1]) | (ts[1:] != ts[:-1])]
        frame_lift = np.r_[lifts, lift[new]]
        frame_ts = np.r_[self._last_ts[lifts], ts[new]]
        is_state = np.r_[np.ones(lifts.size, bool), np.zeros(int(new.sum()), bool)]
        values = np.full((frame_lift.size, len(ROLES)), np.nan)
        values[:lifts.size] = self.state[lifts]
        values[lifts.size + np.cumsum(new) - 1, role] = value
        rows = np.lexsort((~is_state, frame_lift))  # stable: frames stay in time order after their state row
        frame_lift, frame_ts, is_state, values = frame_lift[rows], frame_ts[rows], is_state[rows], values[rows]
        index = np.arange(frame_lift.size)
        for r in range(len(ROLES)):  # carry forward; a state row starts each lift, so no lift leaks into the next
            column = values[:, r]
            values[:, r] = column[np.maximum.accumulate(np.where(is_state | ~np.isnan(column), index, 0))]
        previous = np.roll(values, 1, axis=0)
        previous_ts = np.roll(frame_ts, 1)
        frames = np.flatnonzero(~is_state)
        fl, t, now, before, t_before = frame_lift[frames], frame_ts[frames], values[frames], previous[frames], \
            previous_ts[frames]

        speed, floor, door, load = now[:, SPEED], now[:, FLOOR], now[:, DOOR], now[:, LOAD]
        moving = speed > self._moving[fl]
        door_open = door >= 0.5
        occupied = load >= self._occupied[fl]
        was_moving = before[:, SPEED] > self._moving[fl]
        was_open = before[:, DOOR] >= 0.5
        was_in_zone = ~(before[:, LEVELING] < 0.5)  # unknown counts as in the zone
        known_before = t_before != _NO_TS

        # the stop outside the door zone began at the first frame of the run it belongs to, or
        # (a run continued from the last batch) at the lift's remembered onset
        stopped_out = ~moving & (now[:, LEVELING] < 0.5)
        boundary = np.ones(frame_lift.size, bool)
        boundary[frames] = ~stopped_out
        last_boundary = np.maximum.accumulate(np.where(boundary, index, 0))[frames]
        run_start_ts = frame_ts[np.minimum(last_boundary + 1, frame_lift.size - 1)]
        from_state = is_state[last_boundary] & (self._stop_onset[fl] != _NO_SINCE)
        onset = np.where(stopped_out, np.where(from_state, self._stop_onset[fl], run_start_ts), _NO_SINCE)
        held = stopped_out & (t - onset >= self._confirm_ms[fl])
        entrapment = (now[:, TRAPPED] >= 0.5) | (held & ~door_open & occupied)
        left_landing_open = known_before & was_open & ~was_moving & was_in_zone
        opened = door_open & ~was_open & ~moving & ~was_moving & known_before & ~np.isnan(before[:, DOOR])
        recent = self._door_openings_within(lifts, fl, t, opened)
        elapsed_s = np.where(known_before, (t - t_before) / 1000.0, np.inf)
        reach = POSITION_MARGIN * self._rated[fl] * elapsed_s / self._floor_height[fl] + 1.0
        with np.errstate(invalid="ignore"):
            jumped = np.abs(floor - before[:, FLOOR]) > reach  # NaN (unknown floor) compares False

        statistic = np.zeros((fl.size, len(EVENT_CODES)))
        statistic[:, ENTRAPMENT] = entrapment
        statistic[:, OVERSPEED] = speed / self._rated[fl]
        statistic[:, DOOR_OPEN_MOVING] = moving & door_open & ~left_landing_open
        statistic[:, UNINTENDED] = moving & door_open & left_landing_open
        statistic[:, STOP_OUTSIDE] = held & ~entrapment
        statistic[:, DOOR_FAULT_EVENT] = (now[:, DOOR_FAULT] >= 0.5) | (recent >= self._openings[fl])
        statistic[:, POSITION_LOST] = jumped

        last = np.r_[fl[1:] != fl[:-1], True]  # each lift's newest frame is its new state
        self.state[fl[last]] = now[last]
        self._last_ts[fl[last]] = t[last]
        self._stop_onset[fl[last]] = onset[last]

        binding = self._binding_of[fl]
        frame_of, events = np.nonzero(binding >= 0)
        b = binding[frame_of, events]
        found = self._machine.update(b, t[frame_of], statistic[frame_of, events])
        if not len(found):
            return found
        # each change's frame: what its message reports; raised_at is when the condition began
        # (the start of the stop for the `confirm`ed events), not when it was confirmed
        started = found.started_at.copy()
        for i, (changed, at) in enumerate(zip(found.binding.tolist(), found.ts.tolist(), strict=True)):
            k = frame_of[np.flatnonzero((b == changed) & (t[frame_of] == at))[-1]]
            self._at_change[changed] = now[k]
            stop_event = events[np.flatnonzero(b == changed)[0]] in (ENTRAPMENT, STOP_OUTSIDE)
            if stop_event and found.level_before[i] == 0 and found.level_after[i] > 0 and onset[k] < started[i]:
                started[i] = onset[k]
        return ThresholdFindings(found.binding, found.ts, found.level_before, found.level_after, found.value,
                                 found.limit, started)

    def _door_openings_within(self, lifts: np.ndarray, fl: np.ndarray, t: np.ndarray, opened: np.ndarray
                              ) -> np.ndarray:
        """(frames,) re-openings of each frame's lift within its door window up to the frame,
        counting the remembered ones; remembers the newest `door_openings` of each lift."""
        depth = self._door_opened.shape[1]
        kept = self._door_opened[lifts]
        old_lift = np.repeat(lifts, depth)[kept.ravel() != _NO_TS]
        old_t = kept.ravel()[kept.ravel() != _NO_TS]
        all_lift, all_t = np.r_[old_lift, fl[opened]], np.r_[old_t, t[opened]]
        if all_lift.size == 0:
            return np.zeros(fl.size, np.int64)
        order = np.lexsort((all_t, all_lift))
        all_lift, all_t = all_lift[order], all_t[order]
        origin = min(int(all_t.min()), int(t.min()) - int(self._door_window_ms.max(initial=0))) - 1
        span = max(int(all_t.max()), int(t.max())) - origin + 2
        keys = all_lift * span + (all_t - origin)
        upto = np.searchsorted(keys, fl * span + (t - origin), side="right")
        since = np.searchsorted(keys, fl * span + (t - self._door_window_ms[fl]).astype(np.int64) - origin, side="left")
        # remember each lift's newest `depth` openings
        ends = np.flatnonzero(np.r_[all_lift[1:] != all_lift[:-1], True])
        counts = np.diff(np.r_[-1, ends])
        position = np.arange(all_lift.size) - np.repeat(ends - counts + 1, counts)  # index within its lift
        skip = np.repeat(np.maximum(counts - depth, 0), counts)
        newest = position >= skip
        self._door_opened[lifts] = _NO_TS
        self._door_opened[all_lift[newest], (position - skip)[newest]] = all_t[newest]
        return upto - since

    # -- Detector protocol -----------------------------------------------------------------------
    def restore(self, binding: int, level: int, started_at: int, last_ts: int) -> None:
        self._machine.restore(binding, level, started_at, last_ts)

    def details(self, binding: int) -> dict:
        lift = int(self._lift_of[binding])
        event = EVENTS[self.bindings[binding].metric]
        sensor = self.lifts[lift][1]
        body: dict = {"kind": "elevator", "event": event.as_dict(), "lift": sensor.asset}
        if sensor.extra.get("structure"):
            body["building"] = sensor.extra["structure"]
        for role, key, digits in (("floor", "floor", 0), ("speed", "speed", 2), ("load", "load", 0)):
            value = self._at_change[binding, ROLES.index(role)]
            if np.isfinite(value):
                body[key] = round(float(value), digits) if digits else int(value)
        return body

    def message(self, binding: int, level_before: int, level_after: int, value: float, limit: float) -> str:
        lift = int(self._lift_of[binding])
        code = self.bindings[binding].metric
        event = EVENTS[code]
        sensor = self.lifts[lift][1]
        where = address(sensor)
        state = self._at_change[binding]
        if level_after == 0:
            return f"{event.en} ({event.zh}) cleared: lift {sensor.asset} at {where}"
        floor = f" near floor {int(state[FLOOR])}" if np.isfinite(state[FLOOR]) else ""
        if code == "overspeed":
            observed = (f"speed {value * self._rated[lift]:.2f} m/s = {100 * value:.0f} % of rated {self._rated[lift]:g} m/s "
                        f"(>= {level_name(level_after)} {100 * limit:.0f} %)")
        elif code == "entrapment":
            load = f", load {state[LOAD]:.0f} %" if np.isfinite(state[LOAD]) else ""
            observed = f"car stopped{floor} outside the door zone, door closed{load}"
        else:
            observed = f"car{floor}, speed {state[SPEED]:.2f} m/s, door {'open' if state[DOOR] >= 0.5 else 'closed'}"
        return f"{event.en} ({event.zh}): lift {sensor.asset} at {where}: {observed}; {event.action}"


def address(sensor: Sensor) -> str:
    """Where rescuers go: the building, its district and the coordinates."""
    parts = [sensor.extra[k] for k in ("structure", "district") if sensor.extra.get(k)]
    parts.append(f"{sensor.location.lat:.5f} N {sensor.location.lon:.5f} E")
    return ", ".join(parts)


#: detector key -> Detector.from_rules(catalogue, rules)
BUILDERS: dict = {"elevator": ElevatorDetector.from_rules}
