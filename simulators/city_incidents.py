"""Incident kinds of the generated city, beyond the demo's five (see `incidents` for the model).

Each follows a signature from DOMAIN.md, so that the detectors have to tell it apart:

* `sewer_biogas` (a trap, not a hazard): CH4 builds up over 40 minutes to a stable 6-8 %LEL that
  follows the manhole's temperature and the sewage flow, with no ethane; it never reaches yellow.
* `slow_leak`: a natural-gas leak that creeps up over hours (with ethane) and only crosses yellow
  near its end; a trend detector sees it long before a threshold does.
* `water_main_burst` on a main whose loggers know their positions: `burst_with_wave` (a negative
  pressure wave reaching each logger at |x - x_burst| / a, then a lower settled pressure and a
  higher inlet flow, so also a higher minimum night flow).
* `bridge_stiffness_loss`: the natural frequencies of a span's vibration drop by 11-14 % (cracking,
  a failed bearing); only modal tracking of the acceleration blocks sees it.
* `elevator_entrapment`: the car stops between floors with people inside, door closed; the lift
  terminal raises its trapped flag after 30 s, until the rescue.
* `elevator_door_fault`: the door keeps failing to close; the terminal flags it after 3 attempts.
* `tank_runaway`: loss of cooling with an exothermic reaction: temperature accelerates upwards and
  the pressure follows it (vapour pressure), both rising together before either limit.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from lifeline.config import Sensor
from simulators.incidents import (
    IncidentBuilder,
    IncidentKind,
    Limits,
    _ethane_of,
    _fluctuating,
    _onset_ramp,
    leak_point,
    same_field,
)
from simulators.signals import demand_pattern, smooth_noise

VAPOUR_PRESSURE_PER_DEGC = 0.026  # relative rise of a liquefied gas's vapour pressure per degC
PIPE_WAVE_SPEED_MPS = 1200.0  # ductile iron water main, when the catalogue does not say
CAPTURE_BEFORE_S, CAPTURE_AFTER_S = 5.0, 25.0  # a transient logger's triggered capture
FRONT_S = 0.1  # rise time of the negative pressure wave's front at a logger
TRAPPED_CONFIRM_S = 30.0  # the lift terminal declares an entrapment after 30 s stopped with people
DOOR_ATTEMPT_S, DOOR_ATTEMPTS = 6.0, 3  # a door re-tries every 6 s; flagged after 3 failures


def _window(duration_s: float, recovery_s: float) -> Any:
    """1 inside the incident, falling linearly to 0 over its last `recovery_s`."""
    return lambda tau: np.clip((duration_s - tau) / recovery_s, 0.0, 1.0)


def _position(sensor: Sensor) -> float:
    return float(sensor.extra["position_m"])


# --------------------------------------------------------------------------------------------
# Water main burst with a negative pressure wave
# --------------------------------------------------------------------------------------------

def burst_with_wave(b: IncidentBuilder) -> None:
    """Burst between the primary logger and its downstream neighbour (upstream for the last).

    The burst lies 15-45 % of the segment from the primary logger, at x metres from the main's
    inlet. Each logger on the main sees the wave front at start + |p - x| / a (a: the main's
    `wave_speed_mps`), a drop within FRONT_S with a ringing undershoot (period 4L/a, decaying in about
    1.5 s), then the settled lower pressure: the primary's at the scenario's level (the
    undershoot can pass the next level for a second or two; rules hold for 10 s), the others
    sagging less with distance. Loggers with waveform blocks capture 30 s around the wave. The
    inlet flow rises by the burst flow and the outlet's falls. Repair restores it over 45 s.
    """
    here = b.sensor
    main = here.extra.get("main")
    loggers = sorted((s for s in b.config.sensors
                      if s.extra.get("main") == main and "pressure" in s.metrics and "position_m" in s.extra),
                     key=_position)
    k = next(i for i, s in enumerate(loggers) if s.id == here.id)
    neighbour = loggers[k + 1] if k + 1 < len(loggers) else (loggers[k - 1] if k > 0 else None)
    rng = b.rng(2)
    a = float(here.extra.get("wave_speed_mps") or PIPE_WAVE_SPEED_MPS)
    fraction = float(rng.uniform(0.15, 0.45))
    p_here = _position(here)
    p_other = _position(neighbour) if neighbour is not None else p_here + 1000.0
    x = p_here + fraction * (p_other - p_here)
    length = abs(p_other - p_here)
    ring_period = 4.0 * max(length, 200.0) / a

    peak, amplitude = b.limits.excursion(b.level, overshoot=0.75, relative_swing=0.05)
    settle = _fluctuating(peak, amplitude, b.key, b.start_s, 15.0)

    def front(delay: float) -> Any:
        recovery = _window(b.duration_s, 45.0)
        return lambda tau: np.clip((tau - delay) / FRONT_S, 0.0, 1.0) * recovery(tau)

    def ring(tau: np.ndarray, delay: float) -> np.ndarray:
        since = np.clip(tau - delay, 0.0, None)
        return np.exp(-since / 1.5) * np.cos(2.0 * math.pi * since / ring_period)

    arrivals: dict[str, int] = {}
    delay_here = abs(p_here - x) / a
    arrivals[here.id] = b.start_ms + round(delay_here * 1000)

    def primary(tau: np.ndarray, base: np.ndarray, d: float = delay_here) -> np.ndarray:
        drop = np.clip(base - peak, 0.0, None)
        return settle(tau, base) - 0.3 * drop * ring(tau, d)

    b.primary(front(delay_here), primary, peak)
    for s in loggers:
        if s.id == here.id:
            continue
        delay = abs(_position(s) - x) / a
        arrivals[s.id] = b.start_ms + round(delay * 1000)
        sag = 0.05 * math.exp(-abs(_position(s) - x) / 4000.0)

        def sagging(tau: np.ndarray, base: np.ndarray, d: float = delay, sag: float = sag) -> np.ndarray:
            return base - sag * (1.0 + 0.3 * ring(tau, d))
        b.related_channel(s, "pressure", front(delay), sagging)
    for s in loggers:
        if "rate_hz" in s.extra:
            b.captures.append((b.config.sensors.index(s), b.start_ms - int(CAPTURE_BEFORE_S * 1000),
                               b.start_ms + int(CAPTURE_AFTER_S * 1000)))
    burst_flow = float(b.params.get("flow_m3h", rng.uniform(150.0, 400.0)))
    flow_weight = _onset_ramp(30.0, 45.0, b.duration_s)
    for s in b.config.sensors:
        if s.extra.get("main") == main and "flow" in s.metrics:
            outlet = "OUT" in s.asset.upper() or "OUT" in s.id.upper()
            change = -0.3 * burst_flow if outlet else burst_flow
            b.related_channel(s, "flow", flow_weight, lambda tau, base, c=change: base + c, bounded=False)

    if neighbour is not None:
        b.affected.append(neighbour)
        up, down = (here, neighbour) if p_here <= p_other else (neighbour, here)
        t = (x - _position(up)) / max(_position(down) - _position(up), 1e-9)
        b.leak_location = {
            "lon": round(up.location.lon + t * (down.location.lon - up.location.lon), 7),
            "lat": round(up.location.lat + t * (down.location.lat - up.location.lat), 7),
            "main": main, "position_m": round(x, 1), "segment": up.extra.get("segment", up.asset)}
        b.details = {"wave_speed_mps": a, "segment_length_m": round(length, 1),
                     "upstream": up.id, "downstream": down.id, "burst_flow_m3h": round(burst_flow, 1),
                     "arrivals": arrivals}
        where = f"between {up.id} and {down.id}, {x - _position(up):.0f} m from {up.id}"
    else:
        b.leak_location = {"lon": here.location.lon, "lat": here.location.lat, "main": main, "position_m": x}
        where = f"near {here.id}"
    b.description = f"Burst of water main {main} {where}"


# --------------------------------------------------------------------------------------------
# Gas: the biogas trap and the slow leak
# --------------------------------------------------------------------------------------------

def _sewer_biogas(b: IncidentBuilder) -> None:
    """Biogas from a sewer collecting in the manhole: stable, no ethane, following temperature.

    The level settles at 15-50 % of the way from the lowest to the second level of the CH4 rule
    (6-7.5 %LEL with the city's rules), grows 4 % per degC of the manhole's own temperature and
    up to 8 % with the sewage flow (demand two hours earlier), with slow +-3 % wander; it never
    exceeds 88 % of the second level. Builds up over 40 minutes, flushed away in the last 20.
    """
    levels = sorted(b.limits.levels.values(), reverse=b.limits.direction == "below")
    lowest = levels[0]
    second = levels[1] if len(levels) > 1 else lowest * 2.0
    rng = b.rng(3)
    settled = float(b.params.get("level", lowest + rng.uniform(0.15, 0.5) * (second - lowest)))
    cap = second * 0.88
    temp_channel = b.channel(b.sensor, "temp") if "temp" in b.sensor.metrics else None
    temp_start = b.baseline_at_start("temp") if temp_channel is not None else 17.0
    keys1 = np.array([b.key], dtype=np.uint64)

    def biogas(tau: np.ndarray, base: np.ndarray) -> np.ndarray:
        ts = b.start_ms + np.round(tau * 1000.0).astype(np.int64)
        t = ts / 1000.0
        if temp_channel is not None:
            temp = b.baseline.values(np.full(len(ts), temp_channel), ts)
        else:
            temp = np.full(len(ts), temp_start)
        keys = np.broadcast_to(keys1, tau.shape)
        value = settled * (1.0 + 0.04 * (temp - temp_start)) * (1.0 + 0.08 * demand_pattern(t - 7200.0))
        value *= 1.0 + 0.03 * np.tanh(smooth_noise(keys, 210, t, 900.0))
        return np.clip(value, 0.0, cap)

    b.primary(_onset_ramp(2400.0, 1200.0, b.duration_s), biogas, settled)
    b.expected_level = None
    b.threshold = None
    b.details = {"ethane": False, "settled_ch4": round(settled, 2)}
    b.description = f"Sewer biogas in {b.sensor.asset}: stable CH4 near {settled:.1f} following temperature, no ethane"


def _slow_leak(b: IncidentBuilder) -> None:
    """A small natural-gas leak (a corroded joint): CH4 climbs steadily over 80 % of the incident
    to the middle of the aimed level (yellow: 15 %LEL), with +-8 % puffs and its ethane; the
    detector reports at its normal interval. Repair brings it back over the last 10 %."""
    peak, _ = b.limits.excursion(b.level, overshoot=1.2, relative_swing=0.1)
    weight = _onset_ramp(0.8 * b.duration_s, 0.1 * b.duration_s, b.duration_s)
    ch4 = _fluctuating(peak, 0.08 * peak, b.key, b.start_s, 600.0)
    b.primary(weight, ch4, peak)
    b.effect(b.sensor, "c2h6", weight, _ethane_of(ch4))
    b.leak_location = leak_point(b, float(b.rng(4).uniform(0.05, 0.3)))
    main = b.sensor.extra.get("main")
    b.details = {"ramp_s": round(0.8 * b.duration_s)}
    b.description = f"Slow gas leak at {b.sensor.asset}" + (f" on {main}" if main else "") + ", rising over hours"


# --------------------------------------------------------------------------------------------
# Bridge, elevator, tank
# --------------------------------------------------------------------------------------------

def _stiffness_loss(b: IncidentBuilder) -> None:
    """Damage to a span: the natural frequencies of every accelerometer on the span drop by
    `drop` (11-14 %) at once (a crack opening, a bearing giving way) and stay down until the end
    (repair). Expected level from DOMAIN.md's frequency-drop levels 5 / 10 / 15 % (blue / yellow /
    orange). A triggered acquisition records the vibration a minute after the event. (A gradual
    drop would sweep the phase of the vibration model, which counts time from its 10-minute
    epoch: blocks during the sweep would show frequencies far below the new one.)"""
    drop = float(b.params.get("drop", b.rng(5).uniform(0.11, 0.14)))
    on_span = same_field(b.sensor, "asset")
    span_sensors = [b.sensor, *(s for s in b.config.sensors
                                if s.id != b.sensor.id and on_span(s) and b.metric in s.metrics)]

    def factor(tau: np.ndarray) -> np.ndarray:
        return np.full_like(tau, 1.0 - drop)
    for s in span_sensors:
        b.frequency.append((b.channel(s, b.metric), factor))
        if "block_s" in s.extra:
            block_ms = int(float(s.extra["block_s"]) * 1000)
            b.captures.append((b.config.sensors.index(s), b.start_ms + 60_000, b.start_ms + 60_000 + block_ms))
    b.affected.extend(span_sensors[1:])
    steps = [("blue", 0.05), ("yellow", 0.10), ("orange", 0.15)]
    reached = [lv for lv, limit in steps if drop >= limit]
    b.expected_level = reached[-1] if reached else None
    b.threshold = dict(steps).get(b.expected_level) if b.expected_level else None
    b.peak = drop
    b.details = {"frequency_drop": round(drop, 4)}
    structure = b.sensor.extra.get("structure")
    b.description = (f"Stiffness loss of span {b.sensor.asset}" + (f" of {structure}" if structure else "")
                     + f": natural frequencies {100 * drop:.0f} % lower")


def _entrapment(b: IncidentBuilder) -> None:
    """Car stopped between floors with passengers, door closed (power or safety-circuit fault):
    speed 0, position frozen, out of the levelling zone, load steady; the terminal raises its
    trapped flag after TRAPPED_CONFIRM_S until the rescue at the end."""
    floor = b.baseline_at_start("floor") if "floor" in b.sensor.metrics else None
    riders = float(b.rng(6).uniform(20.0, 60.0))
    stopped = {"speed": 0.0, "door": 0.0, "leveling": 0.0, "load": round(riders)}
    if floor is not None:
        stopped["floor"] = floor
    for metric, value in stopped.items():
        b.effect(b.sensor, metric, _always, lambda tau, base, v=value: np.full_like(base, v))
    b.primary(_always, lambda tau, base: np.where(tau >= TRAPPED_CONFIRM_S, 1.0, base), 1.0)
    structure = b.sensor.extra.get("structure")
    b.details = {"confirm_after_s": TRAPPED_CONFIRM_S}
    b.description = f"Passengers trapped in lift {b.sensor.asset}" + (f" in {structure}" if structure else "")


def _door_fault(b: IncidentBuilder) -> None:
    """The door fails to close (obstruction, worn door operator): it re-opens every
    DOOR_ATTEMPT_S (open 4.5 s of each attempt), the car cannot leave (speed 0, at a floor); the
    terminal flags the door fault after DOOR_ATTEMPTS failed attempts, until maintenance."""
    b.effect(b.sensor, "speed", _always, lambda tau, base: np.zeros_like(base))
    b.effect(b.sensor, "leveling", _always, lambda tau, base: np.ones_like(base))
    b.effect(b.sensor, "door", _always,
             lambda tau, base: ((tau % DOOR_ATTEMPT_S) < 0.75 * DOOR_ATTEMPT_S).astype(np.float64))
    b.primary(_always, lambda tau, base: np.where(tau >= DOOR_ATTEMPT_S * DOOR_ATTEMPTS, 1.0, base), 1.0)
    structure = b.sensor.extra.get("structure")
    b.description = f"Door fault of lift {b.sensor.asset}" + (f" in {structure}" if structure else "")


def _tank_runaway(b: IncidentBuilder) -> None:
    """Runaway in a liquefied-gas tank (loss of cooling, exothermic contamination): the liquid
    temperature accelerates upwards (exponential, three e-foldings over the rise), the pressure
    follows it as vapour pressure (x exp(0.026 per degC)) up to the aimed level's peak; venting
    holds it there, then emergency cooling brings both back over the last quarter. Both rise
    together long before either crosses its limit: a combined detector's early warning."""
    peak, _ = b.limits.excursion(b.level, overshoot=1.1, relative_swing=0.01)
    start_pressure = max(b.baseline_at_start("pressure"), 0.05)
    rise_max = max(math.log(max(peak, start_pressure * 1.05) / start_pressure) / VAPOUR_PRESSURE_PER_DEGC, 3.0)
    rise_s = min(0.6 * b.duration_s, 2400.0)
    cool_s = 0.25 * b.duration_s
    growth = rise_s / 3.0

    def warming(tau: np.ndarray) -> np.ndarray:
        rising = np.expm1(np.clip(tau, 0.0, rise_s) / growth) / math.expm1(rise_s / growth)
        cooling = np.clip((b.duration_s - tau) / cool_s, 0.0, 1.0)
        return rise_max * np.where(tau < rise_s, rising, 1.0) * cooling

    b.primary(_always, lambda tau, base: base * np.exp(VAPOUR_PRESSURE_PER_DEGC * warming(tau)), peak)
    b.effect(b.sensor, "temp", _always, lambda tau, base: base + warming(tau))
    b.details = {"temperature_rise_degC": round(rise_max, 1), "rise_s": round(rise_s)}
    structure = b.sensor.extra.get("structure")
    b.description = (f"Runaway in tank {b.sensor.asset}" + (f" at {structure}" if structure else "")
                     + f": temperature +{rise_max:.0f} degC with the pressure")


def _always(tau: np.ndarray) -> np.ndarray:
    return np.ones_like(tau)


def _is_waveform(sensor: Sensor, metric: str) -> bool:
    return metric in sensor.metrics and "rate_hz" in sensor.extra


_GAS = Limits("above", {"blue": 5, "yellow": 10, "orange": 20, "red": 25}, None)

CITY_KINDS: dict[str, IncidentKind] = {k.name: k for k in (
    IncidentKind("sewer_biogas", "gas", "ch4", "manhole", "blue", _GAS, 3 * 3600.0, 15.0, _sewer_biogas,
                 hazard=False, detectors=(), alarm_reporting=False, max_level="blue",
                 description="false-alarm trap: stable biogas CH4 without ethane"),
    IncidentKind("slow_leak", "gas", "ch4", "manhole", "yellow", _GAS, 3 * 3600.0, 15.0, _slow_leak,
                 detectors=("trend", "threshold"), alarm_reporting=False,
                 description="gas leak creeping up over hours"),
    IncidentKind("bridge_stiffness_loss", "bridge", "acc_z", "accelerometer", "yellow",
                 Limits("below", {"blue": 0.95, "yellow": 0.90, "orange": 0.85}, None), 3 * 3600.0, 15.0,
                 _stiffness_loss, detectors=("modal",), alarm_reporting=False,
                 select=lambda s: s.domain == "bridge" and _is_waveform(s, "acc_z"),
                 description="natural frequency drop of a span"),
    IncidentKind("elevator_entrapment", "elevator", "trapped", "", "red", Limits("above", {"red": 1.0}, None),
                 1800.0, 15.0, _entrapment, detectors=("threshold", "elevator"), alarm_interval_s=5.0,
                 description="passengers trapped between floors"),
    IncidentKind("elevator_door_fault", "elevator", "door_fault", "", "yellow", Limits("above", {"yellow": 1.0}, None),
                 1200.0, 15.0, _door_fault, detectors=("threshold", "elevator"), alarm_interval_s=5.0,
                 description="door fails to close"),
    IncidentKind("tank_runaway", "hazard", "pressure", "tank", "red", Limits("above", {"yellow": 1.40, "red": 1.60}, None),
                 3000.0, 15.0, _tank_runaway, detectors=("threshold", "combined"),
                 description="temperature and pressure rising together"),
)}

