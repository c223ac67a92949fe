"""Injected incidents with ground truth: what the simulator makes go wrong, where and when.

An incident bends a few channels of the baseline feed for a while:

    value = baseline * (1 - w(tau)) + target(tau, baseline) * w(tau)

with tau the seconds since the incident began and w a blend weight in [0, 1] (onset, hold,
recovery). The primary channel (`sensor`, `metric`) is driven past the limit of `expected_level`
of the configuration's threshold rule for it, and never past the next higher level. Related
channels (neighbouring manholes on the same main, the other gauge of a bridge span, a tank's
temperature) move the way the physics says, but stay below every rule's lowest level, so the
only alert an incident should raise is the expected one.

Incident signatures follow DOMAIN.md: a gas leak rises fast and fluctuates strongly (biogas does
not); a water-main burst drops pressure within seconds and raises the inlet flow; a bridge
overload is a sustained strain peak on one span; an elevator over-speed is a runaway of a few
seconds stopped by the governor (the car then stays stuck, door closed); a tank over-pressure
rises over minutes with the temperature (loss of cooling), then is relieved.

These five kinds make the "default" scenario of the demo. The generated city adds more kinds
(`simulators.city_incidents`: ethane-bearing leaks, the sewer-biogas trap, bursts with negative
pressure waves, stiffness loss, entrapment, door faults, tank runaway, slow leaks) and sensor
faults (`simulators.faults`); `simulators.scenarios` combines them into scenarios.

Besides bending values, an incident can trigger waveform captures (`captures`), silence sensors
(`suppress`), take a gateway offline until it backfills (`offline_gateway`) and lower the natural
frequencies of vibration channels (`frequency`). Incidents that are not hazards (`hazard=False`:
biogas, sensor faults) carry `max_level`, the highest hazard level they may be reported at.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lifeline.config import Config, Rule, Sensor
from lifeline.levels import LEVELS
from simulators.signals import Baseline, hash_normal, sensor_key, smooth_noise

WeightFn = Callable[[np.ndarray], np.ndarray]  # tau (s since start) -> blend weight in [0, 1]
TargetFn = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (tau s, baseline) -> incident value

REPEAT_S = 900.0  # the default scenario starts a new round of incidents every 15 simulated minutes
ALARM_INTERVAL_S = 5.0  # detectors in alarm report every few seconds ("immediately on alarm")
ELEVATOR_ALARM_INTERVAL_S = 1.0  # lift monitors push events at their sampling rate (1-10 Hz)
RELATED_MARGIN = 0.88  # related channels stay within 88 % of the lowest level of their rules


@dataclass(frozen=True)
class Effect:
    """How an incident bends one channel: value = baseline * (1 - w) + target * w."""

    channel: int
    weight: WeightFn
    target: TargetFn


@dataclass(frozen=True)
class Incident:
    """One injected incident and its ground truth.

    start_ms, end_ms : epoch ms of simulated time, inclusive; the feed is back to baseline at end.
    expected_level : the level the primary channel reaches under the configuration's rule
        (None when no rule watches that channel).
    alarm_interval_s : reporting interval of the primary sensor during the incident.
    """

    id: str
    kind: str
    description: str
    sensor: Sensor
    sensor_index: int
    metric: str
    start_ms: int
    end_ms: int
    expected_level: str | None
    rule: str | None
    threshold: float | None
    peak: float
    alarm_interval_s: float
    effects: tuple[Effect, ...] = ()
    related: tuple[tuple[str, str], ...] = ()  # (sensor id, metric) of the related channels
    hazard: bool = True  # False: a false-alarm trap or a sensor fault
    detectors: tuple[str, ...] = ("threshold",)  # detector kinds that can see it (truth field)
    max_level: str | None = None  # non-hazards: the highest hazard level acceptable (None: none)
    affected: tuple[Sensor, ...] = ()  # further sensors it affects directly (truth "sensors")
    leak_location: dict[str, Any] | None = None  # leaks: where the pipe really leaks
    captures: tuple[tuple[int, int, int], ...] = ()  # (sensor index, start ms, end ms) waveform captures
    suppress: tuple[tuple[int, float], ...] = ()  # (sensor index, share of readings kept) while active
    offline_gateway: str | None = None  # a gateway that buffers everything while active
    frequency: tuple[tuple[int, WeightFn], ...] = ()  # (channel, tau -> natural-frequency factor)
    alarm_reporting: bool = True  # the primary sensor reports every alarm_interval_s while active
    details: dict[str, Any] = field(default_factory=dict)  # kind-specific truth fields

    @property
    def domain(self) -> str:
        return self.sensor.domain

    def truth(self) -> dict[str, Any]:
        """The ground-truth record (JSON-serialisable), as written to the --truth file."""
        sensors = [self.sensor, *(s for s in self.affected if s.id != self.sensor.id)]
        assets = list(dict.fromkeys(s.asset for s in sensors))
        extra: dict[str, Any] = {}
        if self.leak_location is not None:
            extra["leak_location"] = self.leak_location
        if self.offline_gateway is not None:
            extra["gateway"] = self.offline_gateway
        return {
            "id": self.id,
            "kind": self.kind,
            "domain": self.domain,
            "sensors": [s.id for s in sensors],
            "assets": assets,
            "metric": self.metric,
            "start": self.start_ms,
            "end": self.end_ms,
            "expected_level": self.expected_level,
            "location": {"lon": self.sensor.location.lon, "lat": self.sensor.location.lat},
            "rule": self.rule,
            "threshold": self.threshold,
            "peak": round(self.peak, 4) if math.isfinite(self.peak) else None,
            "description": self.description,
            "related": [{"sensor": s, "metric": m} for s, m in self.related],
            "hazard": self.hazard,
            "max_level": self.max_level,
            "detectors": list(self.detectors),
            **extra,
            **self.details,
        }

    def active_in(self, start_ms: int, end_ms: int) -> bool:
        """Whether the incident overlaps the simulated window [start_ms, end_ms]."""
        return self.start_ms <= end_ms and self.end_ms >= start_ms

    def apply(self, channels: np.ndarray, ts_ms: np.ndarray, values: np.ndarray) -> None:
        """Bend `values` in place where the incident acts.

        channels : (n,) int channel indexes; ts_ms : (n,) int64 epoch ms; values : (n,) float64.
        """
        inside = (ts_ms >= self.start_ms) & (ts_ms <= self.end_ms)
        if not inside.any():
            return
        for effect in self.effects:
            mask = inside & (channels == effect.channel)
            if not mask.any():
                continue
            tau = (ts_ms[mask] - self.start_ms) / 1000.0
            w = effect.weight(tau)
            base = values[mask]
            values[mask] = base * (1.0 - w) + effect.target(tau, base) * w

    def scale_frequency(self, channels: np.ndarray, ts_ms: np.ndarray, scale: np.ndarray) -> None:
        """Multiply `scale` ((n,) float64, natural-frequency factors) in place where it acts."""
        inside = (ts_ms >= self.start_ms) & (ts_ms <= self.end_ms)
        if not inside.any():
            return
        for channel, factor in self.frequency:
            mask = inside & (channels == channel)
            if mask.any():
                scale[mask] *= factor((ts_ms[mask] - self.start_ms) / 1000.0)


# --------------------------------------------------------------------------------------------
# Shapes
# --------------------------------------------------------------------------------------------

def _onset_exponential(time_constant_s: float, recovery_s: float, duration_s: float) -> WeightFn:
    """Fast rise 1 - exp(-tau / T), linear recovery over the last `recovery_s` seconds."""
    def weight(tau: np.ndarray) -> np.ndarray:
        rise = 1.0 - np.exp(-tau / time_constant_s)
        return rise * np.clip((duration_s - tau) / recovery_s, 0.0, 1.0)
    return weight


def _onset_ramp(ramp_s: float, recovery_s: float, duration_s: float, power: float = 1.0) -> WeightFn:
    """Ramp up over `ramp_s` (shape tau ** power), hold, linear recovery at the end."""
    def weight(tau: np.ndarray) -> np.ndarray:
        rise = np.clip(tau / ramp_s, 0.0, 1.0) ** power
        return rise * np.clip((duration_s - tau) / recovery_s, 0.0, 1.0)
    return weight


def _always(tau: np.ndarray) -> np.ndarray:
    return np.ones_like(tau)


def _fluctuating(peak: float, amplitude: float, key: np.uint64, start_s: float, scale_s: float) -> TargetFn:
    """peak +- amplitude, never beyond: smooth fluctuation on `scale_s` plus jitter through tanh."""
    keys1 = np.array([key], dtype=np.uint64)

    def target(tau: np.ndarray, base: np.ndarray) -> np.ndarray:
        keys = np.broadcast_to(keys1, tau.shape)
        t = start_s + tau
        wobble = 1.2 * smooth_noise(keys, 200, t, scale_s) + 0.5 * hash_normal(keys, 201, np.round(t * 1000.0))
        return peak + amplitude * np.tanh(wobble)
    return target


def _related_target(desired: TargetFn, upper: float, lower: float) -> TargetFn:
    """`desired`, but a rising channel stops at `upper` and a falling one at `lower` (and
    neither is pushed the other way when the baseline is already past that bound)."""
    def target(tau: np.ndarray, base: np.ndarray) -> np.ndarray:
        want = desired(tau, base)
        rising = np.maximum(base, np.minimum(want, upper))
        falling = np.minimum(base, np.maximum(want, lower))
        return np.where(want >= base, rising, falling)
    return target


# --------------------------------------------------------------------------------------------
# Levels: which level an incident aims for and how far it goes
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Limits:
    """The threshold levels watching a channel, as the incident sees them."""

    direction: str  # "above" | "below"
    levels: dict[str, float]
    rule: str | None  # None: not from the configuration (DOMAIN.md defaults)

    def aim(self, preferred: str) -> str:
        """The level to reach: `preferred` if the rule has it, else the highest below it,
        else the lowest the rule has."""
        present = [lv for lv in LEVELS if lv in self.levels]
        at_or_below = [lv for lv in present if LEVELS.index(lv) <= LEVELS.index(preferred)]
        return at_or_below[-1] if at_or_below else present[0]

    def excursion(self, level: str, overshoot: float, relative_swing: float) -> tuple[float, float]:
        """(peak, amplitude) of an excursion that crosses `level` and no higher level.

        With a higher level present, the peak sits midway between the two limits and swings
        by at most 30 % of the gap; at the top level the peak is `overshoot` x the limit and
        swings by `relative_swing` x peak, staying past the limit.
        """
        present = [lv for lv in LEVELS if lv in self.levels]
        limit = self.levels[level]
        higher = present[present.index(level) + 1:]
        if higher:
            nxt = self.levels[higher[0]]
            return (limit + nxt) / 2.0, 0.3 * abs(nxt - limit)
        peak = limit * overshoot
        return peak, min(relative_swing * abs(peak), 0.8 * abs(peak - limit))


def rule_for(config: Config, sensor: Sensor, metric: str) -> Rule | None:
    """The first threshold rule of the configuration that watches this channel."""
    owner = config.owner_of(sensor.gateway)
    for rule in config.rules:
        if rule.threshold is not None and rule.matches(sensor, owner, metric):
            return rule
    return None


def bounds(config: Config, sensor: Sensor, metric: str) -> tuple[float, float]:
    """(upper, lower): how far a related channel may go without reaching any rule's level."""
    owner = config.owner_of(sensor.gateway)
    upper, lower = math.inf, -math.inf
    for rule in config.rules:
        if rule.threshold is not None and rule.matches(sensor, owner, metric):
            lowest = min(rule.threshold.levels.values()) if rule.threshold.direction == "above" \
                else max(rule.threshold.levels.values())
            if rule.threshold.direction == "above":
                upper = min(upper, lowest * RELATED_MARGIN if lowest > 0 else lowest - abs(lowest) * 0.12)
            else:
                lower = max(lower, lowest / RELATED_MARGIN if lowest > 0 else lowest + abs(lowest) * 0.12)
    return upper, lower


# --------------------------------------------------------------------------------------------
# Incident kinds
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class IncidentKind:
    """A kind of incident: which sensors it can hit and how it unfolds."""

    name: str
    domain: str
    metric: str
    preferred_type: str  # substring of Sensor.type preferred when choosing the sensor
    preferred_level: str
    default_limits: Limits  # when no rule of the configuration watches the channel
    duration_s: float
    offset_s: float  # start within the default scenario's 15-minute round
    build: Callable[[IncidentBuilder], None] = field(repr=False)
    hazard: bool = True
    detectors: tuple[str, ...] = ("threshold",)  # detector kinds that can see it, best first
    alarm_reporting: bool = True  # fast onset: the sensor reports every few seconds in alarm
    alarm_interval_s: float | None = None  # None: ALARM_INTERVAL_S (lifts: 1 s)
    max_level: str | None = None  # non-hazards: highest acceptable hazard level
    select: Callable[[Sensor], bool] | None = field(default=None, repr=False)  # overrides domain+metric
    description: str = ""

    def fits(self, sensor: Sensor) -> bool:
        if self.select is not None:
            return self.select(sensor)
        return sensor.domain == self.domain and self.metric in sensor.metrics

    def candidates(self, sensors: Sequence[Sensor]) -> list[int]:
        """Indexes of the sensors this kind can happen to (preferred type first, if any)."""
        fit = [i for i, s in enumerate(sensors) if self.fits(s)]
        preferred = [i for i in fit if self.preferred_type in sensors[i].type]
        return preferred or fit


class IncidentBuilder:
    """Collects the effects of one incident while its kind describes them.

    Builders set `peak` (through `primary`), `description`, and may override `expected_level`
    / `threshold` (kinds whose level is not a threshold rule's, e.g. a frequency drop), and add
    `affected` sensors, a `leak_location`, waveform `captures`, `suppress`ed sensors, an
    `offline_gateway`, `frequency` factors and truth `details`.
    """

    def __init__(self, config: Config, baseline: Baseline, sensor_index: int, metric: str,
                 start_ms: int, duration_s: float, key: np.uint64, limits: Limits, level: str):
        self.config = config
        self.baseline = baseline
        self.sensor_index = sensor_index
        self.sensor = config.sensors[sensor_index]
        self.metric = metric
        self.start_ms = start_ms
        self.start_s = start_ms / 1000.0
        self.duration_s = duration_s
        self.key = key
        self.limits = limits
        self.level = level
        self.peak = math.nan
        self.effects: list[Effect] = []
        self.related: list[tuple[str, str]] = []
        self.description = ""
        self.params: dict[str, Any] = {}
        self.expected_level: str | None = level if limits.rule is not None else None
        self.threshold: float | None = limits.levels.get(level)
        self.affected: list[Sensor] = []
        self.leak_location: dict[str, Any] | None = None
        self.captures: list[tuple[int, int, int]] = []
        self.suppress: list[tuple[int, float]] = []
        self.offline_gateway: str | None = None
        self.frequency: list[tuple[int, WeightFn]] = []
        self.details: dict[str, Any] = {}

    def rng(self, stream: int) -> np.random.Generator:
        """A generator for this incident's own draws (sizes, positions), fixed by its key."""
        return np.random.default_rng([int(self.key), stream])

    def channel(self, sensor: Sensor, metric: str) -> int:
        return self.baseline.channel(sensor.id, metric)

    def effect(self, sensor: Sensor, metric: str, weight: WeightFn, target: TargetFn) -> None:
        """An unbounded effect on another channel (not listed as related)."""
        if metric in sensor.metrics:
            self.effects.append(Effect(self.channel(sensor, metric), weight, target))

    def primary(self, weight: WeightFn, target: TargetFn, peak: float) -> None:
        self.effects.append(Effect(self.baseline.channel(self.sensor.id, self.metric), weight, target))
        self.peak = peak

    def same_sensor(self, metric: str, weight: WeightFn, desired: TargetFn) -> None:
        if metric in self.sensor.metrics:
            self.related_channel(self.sensor, metric, weight, desired)

    def related_channel(self, sensor: Sensor, metric: str, weight: WeightFn, desired: TargetFn,
                        bounded: bool = True) -> None:
        upper, lower = bounds(self.config, sensor, metric) if bounded else (math.inf, -math.inf)
        target = _related_target(desired, upper, lower)
        self.effects.append(Effect(self.baseline.channel(sensor.id, metric), weight, target))
        self.related.append((sensor.id, metric))

    def nearest(self, predicate: Callable[[Sensor], bool], count: int) -> list[Sensor]:
        """Other sensors satisfying `predicate`, nearest first (equirectangular distance)."""
        here = self.sensor.location
        others = [s for s in self.config.sensors if s.id != self.sensor.id and predicate(s)]
        cos_lat = math.cos(math.radians(here.lat))

        def distance(s: Sensor) -> float:
            return math.hypot((s.location.lon - here.lon) * cos_lat, s.location.lat - here.lat)
        return sorted(others, key=distance)[:count]

    def baseline_at_start(self, metric: str) -> float:
        channel = self.baseline.channel(self.sensor.id, metric)
        value = self.baseline.values(np.array([channel]), np.array([self.start_ms], dtype=np.int64))
        return float(self.baseline.round(np.array([channel]), value)[0])


def same_field(sensor: Sensor, field_name: str) -> Callable[[Sensor], bool]:
    value = sensor.field_value(field_name)
    return lambda s: value is not None and s.field_value(field_name) == value


#: Natural gas (West-East pipeline gas) carries ethane: ppm C2H6 per %LEL of CH4 (1 %LEL = 500
#: ppm CH4; ethane 2-6 % of methane). Sewer biogas carries none.
ETHANE_PPM_PER_LEL = 500.0 * 0.04


def _ethane_of(ch4: TargetFn, ratio: float = ETHANE_PPM_PER_LEL) -> TargetFn:
    """The ethane (ppm) that comes with a natural-gas CH4 path (%LEL), same fluctuations."""
    return lambda tau, base: ratio * ch4(tau, base)


def leak_point(b: IncidentBuilder, fraction: float) -> dict[str, Any]:
    """Where a leak next to the primary manhole really is: `fraction` of the way along the main
    to its nearest neighbour on the same main (the manhole itself when it has none)."""
    here = b.sensor
    neighbour = next(iter(b.nearest(lambda s: same_field(here, "main")(s) and s.domain == here.domain, 1)), None)
    location: dict[str, Any] = {"lon": here.location.lon, "lat": here.location.lat}
    if neighbour is not None:
        location = {"lon": round(here.location.lon + fraction * (neighbour.location.lon - here.location.lon), 7),
                    "lat": round(here.location.lat + fraction * (neighbour.location.lat - here.location.lat), 7)}
        try:
            p0, p1 = float(here.extra["position_m"]), float(neighbour.extra["position_m"])
            location["position_m"] = round(p0 + fraction * (p1 - p0), 1)
        except (KeyError, ValueError):
            pass
    if here.extra.get("main"):
        location["main"] = here.extra["main"]
    return location


def _gas_leak(b: IncidentBuilder) -> None:
    """Pipeline leak into a manhole: CH4 climbs within a minute far past red and fluctuates
    strongly (leak gas, unlike biogas, comes in puffs), with its ethane; the nearest manholes on
    the same main see a weaker, delayed rise (corroboration). Ventilation/repair clears it in the
    last minute. The leak itself lies 10-40 % of the way to the nearest manhole on the main."""
    peak, amplitude = b.limits.excursion(b.level, overshoot=1.5, relative_swing=0.25)
    weight = _onset_exponential(25.0, 60.0, b.duration_s)
    ch4 = _fluctuating(peak, amplitude, b.key, b.start_s, 20.0)
    b.primary(weight, ch4, peak)
    b.effect(b.sensor, "c2h6", weight, _ethane_of(ch4))
    neighbours = b.nearest(lambda s: same_field(b.sensor, "main")(s) and "ch4" in s.metrics, 2)
    slow = _onset_exponential(60.0, 60.0, b.duration_s)
    for s in neighbours:
        b.related_channel(s, "ch4", slow, lambda tau, base: base + 2.5)
        b.effect(s, "c2h6", slow, lambda tau, base: base + 2.5 * ETHANE_PPM_PER_LEL)
    b.leak_location = leak_point(b, float(b.rng(1).uniform(0.1, 0.4)))
    main = b.sensor.extra.get("main")
    b.description = f"Gas leak at {b.sensor.asset}" + (f" on {main}" if main else "")


def _water_main_burst(b: IncidentBuilder) -> None:
    """Burst of a water main: the pressure near the burst collapses within seconds, the other
    pressure points of the main sag, the inlet flow rises and the outlet flow falls (the mass
    balance shows the leak). Isolation and repair restore it over the last 45 s.

    When the main's pressure sensors know where they are (`position_m`, as in the generated
    city), the burst is placed on the primary sensor's segment and sends a negative pressure
    wave that reaches each sensor at its own time (see `city_incidents.burst_with_wave`)."""
    if "position_m" in b.sensor.extra:
        from simulators.city_incidents import burst_with_wave

        burst_with_wave(b)
        return
    peak, amplitude = b.limits.excursion(b.level, overshoot=0.75, relative_swing=0.05)
    weight = _onset_ramp(8.0, 45.0, b.duration_s)
    b.primary(weight, _fluctuating(peak, amplitude, b.key, b.start_s, 15.0), peak)
    on_main = same_field(b.sensor, "main")
    for s in b.nearest(lambda s: on_main(s) and "pressure" in s.metrics, 2):
        b.related_channel(s, "pressure", weight, lambda tau, base: base - 0.05)
    for s in b.nearest(lambda s: on_main(s) and "flow" in s.metrics, 4):
        downstream = "OUT" in s.asset.upper() or "OUT" in s.id.upper()  # outlet meters see less
        factor = 0.85 if downstream else 1.35
        b.related_channel(s, "flow", weight, lambda tau, base, f=factor: base * f)
    main = b.sensor.extra.get("main")
    b.description = f"Water main burst near {b.sensor.asset}" + (f" on {main}" if main else "")


def _bridge_overload(b: IncidentBuilder) -> None:
    """Overload of one span (clustered heavy trucks, a jam of mixer trucks): the gauge's strain
    rises past the design value within 20 s and holds; the span's other gauges and deflection
    rise too, less. The trucks leave in the last 30 s."""
    peak, amplitude = b.limits.excursion(b.level, overshoot=1.1, relative_swing=0.03)
    weight = _onset_ramp(20.0, 30.0, b.duration_s)
    b.primary(weight, _fluctuating(peak, amplitude, b.key, b.start_s, 10.0), peak)
    on_span = same_field(b.sensor, "asset")
    for s in b.nearest(lambda s: on_span(s) and "strain" in s.metrics, 3):
        b.related_channel(s, "strain", weight, lambda tau, base: base + 150.0)
    for s in b.nearest(lambda s: on_span(s) and "deflection" in s.metrics, 2):
        b.related_channel(s, "deflection", weight, lambda tau, base: base + 12.0)
    structure = b.sensor.extra.get("structure")
    b.description = f"Overload of span {b.sensor.asset}" + (f" of {structure}" if structure else "")


def _elevator_overspeed(b: IncidentBuilder) -> None:
    """Runaway car (traction loss, brake fault): speed climbs past the rated speed in 3 s, runs
    over-speed for 6 s until the governor trips and the safety gear stops the car within 2 s.
    The car then stays stuck between floors, door closed: passengers trapped until rescue."""
    peak, amplitude = b.limits.excursion(b.level, overshoot=1.15, relative_swing=0.02)
    swing = _fluctuating(peak, amplitude, b.key, b.start_s, 2.0)

    def speed(tau: np.ndarray, base: np.ndarray) -> np.ndarray:
        over = swing(tau, base)
        ramp = over * np.clip(tau / 3.0, 0.0, 1.0)
        braking = over * np.clip((11.0 - tau) / 2.0, 0.0, 1.0)
        return np.where(tau < 3.0, ramp, np.where(tau < 9.0, over, braking))

    b.primary(_always, speed, peak)
    if "floor" in b.sensor.metrics:
        stuck = b.baseline_at_start("floor")
        b.same_sensor("floor", _always, lambda tau, base: np.full_like(base, stuck))
    if "door" in b.sensor.metrics:
        b.same_sensor("door", _always, lambda tau, base: np.zeros_like(base))
    structure = b.sensor.extra.get("structure")
    b.description = f"Over-speed of lift {b.sensor.asset}" + (f" in {structure}" if structure else "")


def _tank_overpressure(b: IncidentBuilder) -> None:
    """Loss of cooling on a liquefied-gas tank: pressure and temperature climb together over two
    minutes (the runaway signature) to past high-high, hold, then emergency venting and spray
    bring them back in the last minute."""
    peak, amplitude = b.limits.excursion(b.level, overshoot=1.1, relative_swing=0.01)
    weight = _onset_ramp(120.0, 60.0, b.duration_s, power=1.5)
    b.primary(weight, _fluctuating(peak, amplitude, b.key, b.start_s, 20.0), peak)
    b.same_sensor("temp", weight, lambda tau, base: base + 6.0)
    structure = b.sensor.extra.get("structure")
    b.description = f"Over-pressure of tank {b.sensor.asset}" + (f" at {structure}" if structure else "")


KINDS: dict[str, IncidentKind] = {
    k.name: k for k in (
        IncidentKind("gas_leak", "gas", "ch4", "manhole", "red",
                     Limits("above", {"blue": 5, "yellow": 10, "orange": 20, "red": 25}, None),
                     240.0, 15.0, _gas_leak,
                     description="CH4 (and ethane) rising fast and fluctuating in a manhole"),
        IncidentKind("water_main_burst", "pipeline", "pressure", "water", "red",
                     Limits("below", {"blue": 0.20, "yellow": 0.18, "orange": 0.16, "red": 0.14}, None),
                     180.0, 150.0, _water_main_burst,
                     description="pressure collapse on a main, inlet flow up"),
        IncidentKind("bridge_overload", "bridge", "strain", "strain", "red",
                     Limits("above", {"blue": 250, "yellow": 300, "orange": 350, "red": 400}, None),
                     150.0, 300.0, _bridge_overload,
                     description="sustained strain peak on one span"),
        IncidentKind("elevator_overspeed", "elevator", "speed", "", "orange",
                     Limits("above", {"yellow": 1.9, "orange": 2.0, "red": 2.2}, None),
                     180.0, 450.0, _elevator_overspeed,
                     description="runaway car stopped by the governor"),
        IncidentKind("tank_overpressure", "hazard", "pressure", "tank", "red",
                     Limits("above", {"yellow": 1.40, "red": 1.60}, None),
                     300.0, 600.0, _tank_overpressure,
                     description="loss of cooling: tank pressure past high-high"),
    )
}

# The "default" scenario runs these kinds in rounds of REPEAT_S, the first 15 s in; scenarios
# (named, from files, combined) are defined in `simulators.scenarios`.

FIRST_INCIDENT_S = 15.0  # a demo shows its first live alert within a minute of starting


def _limits(config: Config, kind: IncidentKind, sensor: Sensor, metric: str) -> Limits:
    rule = rule_for(config, sensor, metric)
    if rule is None:
        return kind.default_limits
    return Limits(rule.threshold.direction, dict(rule.threshold.levels), rule.id)


def primary_metric(config: Config, sensor: Sensor, wanted: str | None = None) -> str:
    """The channel a sensor-level incident (a fault) is about: `wanted` when the sensor has it,
    else the first metric a threshold rule watches, else the first metric."""
    if wanted and wanted in sensor.metrics:
        return wanted
    watched = [m for m in sensor.metrics if rule_for(config, sensor, m) is not None]
    return (watched or list(sensor.metrics))[0]


def build_incident(config: Config, baseline: Baseline, kind: IncidentKind, sensor_index: int, incident_id: str,
                   begin_ms: int, duration_s: float, *, seed: int = 1, level: str | None = None,
                   params: dict[str, Any] | None = None) -> Incident:
    """One incident of `kind` on sensor `sensor_index`, starting at `begin_ms`, with its truth.

    level : the preferred level (default: the kind's); the rule watching the channel decides
        which levels exist. params : kind-specific settings from a scenario.
    """
    sensor = config.sensors[sensor_index]
    params = dict(params or {})
    metric = kind.metric or primary_metric(config, sensor, params.get("metric"))
    limits = _limits(config, kind, sensor, metric)
    aimed = limits.aim(level or kind.preferred_level)
    builder = IncidentBuilder(config, baseline, sensor_index, metric, begin_ms, duration_s,
                              np.uint64(sensor_key(incident_id, seed)), limits, aimed)
    builder.params = params
    kind.build(builder)
    threshold_visible = builder.expected_level is not None and limits.rule is not None
    detectors = tuple(d for d in kind.detectors if d != "threshold" or threshold_visible)
    default_alarm = ELEVATOR_ALARM_INTERVAL_S if sensor.domain == "elevator" else ALARM_INTERVAL_S
    return Incident(
        id=incident_id, kind=kind.name, description=builder.description, sensor=sensor,
        sensor_index=sensor_index, metric=metric, start_ms=begin_ms,
        end_ms=begin_ms + int(duration_s * 1000), expected_level=builder.expected_level if kind.hazard else None,
        rule=limits.rule, threshold=builder.threshold if kind.hazard else None, peak=builder.peak,
        alarm_interval_s=min(sensor.interval, kind.alarm_interval_s or default_alarm),
        effects=tuple(builder.effects), related=tuple(builder.related), hazard=kind.hazard,
        detectors=detectors, max_level=kind.max_level, affected=tuple(builder.affected),
        leak_location=builder.leak_location, captures=tuple(builder.captures),
        suppress=tuple(builder.suppress), offline_gateway=builder.offline_gateway,
        frequency=tuple(builder.frequency), alarm_reporting=kind.alarm_reporting, details=builder.details)


def plan_incidents(config: Config, baseline: Baseline, scenario: Any, start_ms: int, *,
                   seed: int = 1, log: Callable[[str], Any] | None = None) -> Iterator[Incident]:
    """The incidents of a scenario in start order (see `simulators.scenarios.plan`).

    scenario : a name ("default", "quiet", a kind, a built-in suite), names joined by "+" or
        ",", a scenario file path, or a `scenarios.Scenario`.
    """
    from simulators.scenarios import plan

    return plan(config, baseline, scenario, start_ms, seed=seed, log=log)
