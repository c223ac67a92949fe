"""Baseline signals: what each kind of lifeline sensor reads when nothing is wrong.

Every generator is a pure function of (sensor key, time): a reading's value depends only on the
seed, the sensor id and its timestamp, never on what was generated before. So the same feed can be
regenerated exactly (tests, replays after a restart), channels of one device stay consistent with
each other (an elevator's speed, floor and door all derive from one trip schedule), and any set
of readings is computed in one vectorised call, whatever the tick layout.

Randomness comes from a counter-based hash (splitmix64 finaliser) of (seed, sensor, stream,
counter) instead of a stateful generator; "smooth" noise interpolates hashed Gaussian knots.

Time is epoch seconds (float64); daily cycles use Hefei local time (UTC+8). Values are in the units
the demo catalogue declares: %LEL, %vol, %OEL, %, degC, MPa, m3/h, m, microstrain, mm, m/s, and
for the generated city also ppm (ethane) and m/s2 (bridge acceleration, sampled at 50-100 Hz).
Baselines are tuned to stay below the lowest level of the demo rules in every season, so a
"quiet" run raises nothing.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from lifeline.config import Rule, Sensor

#: A baseline generator: (keys (n,) uint64 per reading, t (n,) float64 epoch s) -> (n,) float64 values.
SignalFn = Callable[[np.ndarray, np.ndarray], np.ndarray]

LOCAL_UTC_OFFSET_S = 8 * 3600  # China Standard Time: daily cycles follow local clocks
DAY_S = 86400.0
YEAR_DAYS = 365.2425

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


# --------------------------------------------------------------------------------------------
# Counter-based randomness
# --------------------------------------------------------------------------------------------

def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser: a bijective avalanche of uint64 values."""
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * _M1
        x = (x ^ (x >> np.uint64(27))) * _M2
        return x ^ (x >> np.uint64(31))


def sensor_key(sensor_id: str, seed: int) -> int:
    """64-bit key of a sensor under a seed: the root of all its random draws."""
    base = (zlib.crc32(sensor_id.encode("utf-8")) << 32) | zlib.crc32(sensor_id[::-1].encode("utf-8"))
    mixed = _mix64(np.array([base ^ (seed * 0x9E3779B97F4A7C15 & 0xFFFFFFFFFFFFFFFF)], dtype=np.uint64))
    return int(mixed[0])


def hash_uniform(keys: np.ndarray, stream: int, counter: np.ndarray | int) -> np.ndarray:
    """Uniform draws in [0, 1), one per (key, counter); `stream` separates independent draws.

    keys : (n,) uint64; counter : (n,) integer-valued (int64 or float64), or a scalar.
    """
    c = np.asarray(counter)
    c = c.astype(np.int64).astype(np.uint64) if c.dtype != np.uint64 else c
    with np.errstate(over="ignore"):
        h = _mix64(keys ^ _mix64(c + np.uint64(stream) * _GOLDEN))
    return (h >> np.uint64(11)).astype(np.float64) * (1.0 / 9007199254740992.0)


def hash_normal(keys: np.ndarray, stream: int, counter: np.ndarray | int) -> np.ndarray:
    """Standard normal draws per (key, counter) by the Box-Muller transform."""
    u1 = 1.0 - hash_uniform(keys, stream, counter)  # (0, 1]: log is finite
    u2 = hash_uniform(keys, stream + 0x5BD1E995, counter)
    return np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * math.pi * u2)


def smooth_noise(keys: np.ndarray, stream: int, t: np.ndarray, scale_s: float) -> np.ndarray:
    """Slowly varying noise: Gaussian knots every `scale_s` seconds, smoothstep-interpolated.

    Unit-free, standard deviation about 0.8 (interpolation averages neighbouring knots).
    """
    x = t / scale_s
    k = np.floor(x)
    f = x - k
    a = hash_normal(keys, stream, k)
    b = hash_normal(keys, stream, k + 1)
    s = f * f * (3.0 - 2.0 * f)
    return a + (b - a) * s


def sensor_uniform(keys: np.ndarray, stream: int) -> np.ndarray:
    """A fixed per-sensor draw in [0, 1): the sensor's own constant (offset, size, phase...)."""
    return hash_uniform(keys, stream, 0)


def white_noise(keys: np.ndarray, stream: int, t: np.ndarray) -> np.ndarray:
    """Independent standard normal noise per reading (counter: the millisecond timestamp)."""
    return hash_normal(keys, stream, np.round(t * 1000.0))


# --------------------------------------------------------------------------------------------
# Environment shared by many sensors: Hefei's weather and the city's demand cycle
# --------------------------------------------------------------------------------------------

_CITY = np.uint64(0xC17)  # key of city-wide processes (weather), combined with the seed


def local_hour(t: np.ndarray) -> np.ndarray:
    """Hour of the day in Hefei local time, float in [0, 24)."""
    return ((t + LOCAL_UTC_OFFSET_S) % DAY_S) / 3600.0


def season(t: np.ndarray, lag_days: float = 0.0) -> np.ndarray:
    """-1 in the coldest days (mid January), +1 in the hottest (mid July)."""
    days = t / DAY_S - 14.0 - lag_days  # 1970-01-15 is day 14: the coldest time of year
    return -np.cos(2.0 * math.pi * days / YEAR_DAYS)


def _gauss(h: np.ndarray, centre: float, width: float) -> np.ndarray:
    d = (h - centre + 12.0) % 24.0 - 12.0  # wrap around midnight
    return np.exp(-0.5 * (d / width) ** 2)


def demand_pattern(t: np.ndarray) -> np.ndarray:
    """City water/gas/traffic demand, 0 at the night minimum to about 1 at the evening peak.

    Morning peak 07:30, a smaller one at noon, evening peak 19:30 (typical residential pattern).
    """
    h = local_hour(t)
    d = 0.9 * _gauss(h, 7.5, 1.2) + 0.55 * _gauss(h, 12.0, 1.3) + 1.0 * _gauss(h, 19.5, 1.8)
    return np.clip(d, 0.0, 1.0)


def air_temperature(t: np.ndarray, seed_key: np.ndarray) -> np.ndarray:
    """Air temperature in degC: Hefei climate (January mean 3, July mean 29), daily swing
    +-4.5 with the minimum before dawn and the maximum at 14:30, plus weather of a few days."""
    h = local_hour(t)
    weather = 2.5 * smooth_noise(seed_key, 1, t, 3 * 3600.0) + 1.5 * smooth_noise(seed_key, 2, t, 2 * DAY_S)
    return 16.0 + 13.0 * season(t) + 4.5 * np.cos(2.0 * math.pi * (h - 14.5) / 24.0) + weather


def ground_temperature(t: np.ndarray, seed_key: np.ndarray) -> np.ndarray:
    """Soil temperature at manhole depth (about 1.5 m) in degC: damped, lagging the seasons by
    a month, no daily cycle."""
    return 17.0 + 8.0 * season(t, lag_days=30.0) + 0.6 * smooth_noise(seed_key, 3, t, 4 * DAY_S)


# --------------------------------------------------------------------------------------------
# Per-domain baseline models. keys: (n,) uint64 sensor keys of the readings; t: (n,) epoch s.
# Streams 10..99 are per-sensor constants, 100.. noise processes.
# --------------------------------------------------------------------------------------------

class _Models:
    """The baseline generators bound to one seed (the city's weather depends on it)."""

    def __init__(self, seed: int):
        self.city = np.array([_mix64(np.array([seed], dtype=np.uint64) ^ _CITY)[0]], dtype=np.uint64)
        self._last_trip: tuple[np.ndarray, np.ndarray, tuple[np.ndarray, ...]] | None = None

    def _city(self, t: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self.city, t.shape)

    def air(self, keys: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Outdoor air temperature at the device, degC (city air +- 0.5 local offset)."""
        return air_temperature(t, self._city(t)) + (sensor_uniform(keys, 10) - 0.5) + 0.1 * white_noise(keys, 100, t)

    def ground(self, keys: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Manhole / buried-space temperature, degC."""
        return ground_temperature(t, self._city(t)) + 1.5 * (sensor_uniform(keys, 10) - 0.5) + 0.1 * white_noise(keys, 100, t)

    def tunnel_temperature(self, keys: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Utility tunnel air, degC: ground temperature warmed by cables and ventilation."""
        return self.ground(keys, t) + 3.0

    def manhole_methane(self, keys: np.ndarray, t: np.ndarray) -> np.ndarray:
        """CH4 in a manhole, %LEL: sewer biogas only. Low, stable, rising with soil temperature
        (Hefei 2019 study: biogas follows temperature and humidity; leaks fluctuate strongly).
        Most manholes read 0-0.5, a few up to about 2.5 in summer: well under blue (5)."""
        biogas = 0.1 + 1.5 * sensor_uniform(keys, 11) ** 2
        temp_factor = 1.0 + 0.05 * (ground_temperature(t, self._city(t)) - 17.0)
        slow = 1.0 + 0.12 * smooth_noise(keys, 101, t, 1800.0)
        value = biogas * temp_factor * slow + 0.05 * white_noise(keys, 102, t)
        return np.clip(value, 0.0, None)

    def tunnel_methane(self, keys: np.ndarray, t: np.ndarray) -> np.ndarray:
        """CH4 in a utility tunnel gas compartment, %LEL: ventilated, essentially zero."""
        return np.clip(0.15 * sensor_uniform(keys, 11) + 0.05 * white_noise(keys, 102, t), 0.0, None)

    def oxygen(self, keys: np.ndarray, t: np.ndarray) -> np.ndarray:
        """O2 in a ventilated space, %vol: 20.9 with sensor offset and noise."""
        return 20.9 + 0.1 * (sensor_uniform(keys, 12) - 0.5) + 0.03 * white_noise(keys, 103, t)

    def water_pressure(self, keys: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Water main pressure, MPa: 0.33-0.35 at night, about 0.07 lower at the demand peaks;
        the per-sensor offset stands for ground elevation. Never below about 0.245 (blue 0.20)."""
        night = 0.325 + 0.025 * sensor_uniform(keys, 13)
        slow = 0.004 * smooth_noise(keys, 104, t, 600.0)
        return night - 0.065 * demand_pattern(t) + slow + 0.0015 * white_noise(keys, 105, t)

    def water_flow(self, keys: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Flow through a main / district metered area inlet, m3/h: the demand pattern over a
        minimum night flow of about a third of the peak."""
        size = 300.0 + 400.0 * sensor_uniform(keys, 14)
        slow = 1.0 + 0.03 * smooth_noise(keys, 106, t, 900.0)
        return size * (0.35 + 0.9 * demand_pattern(t)) * slow * (1.0 + 0.01 * white_noise(keys, 107, t))

    def drainage_level(self, keys: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Water depth in a drainage well, m: dry-weather sewage flow, following demand with a
        two-hour lag. (Rain is not simulated.)"""
        offset = 0.25 + 0.3 * sensor_uniform(keys, 15)
        sewage = 0.25 * demand_pattern(t - 2 * 3600.0)
        return offset + sewage + 0.03 * smooth_noise(keys, 108, t, 1200.0) + 0.005 * white_noise(keys, 109, t)

    def structure_temperature(self, keys: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Bridge deck / girder temperature, degC: air temperature plus solar gain in the
        afternoon, lagging the air by an hour."""
        lagged = air_temperature(t - 3600.0, self._city(t))
        solar = 3.0 * np.clip(np.cos(2.0 * math.pi * (local_hour(t) - 14.0) / 24.0), 0.0, None) ** 2
        return lagged + solar + 0.1 * white_noise(keys, 110, t)

    def _traffic(self, keys: np.ndarray, t: np.ndarray, stream: int) -> np.ndarray:
        """Live load seen by one gauge, 0..1 (0.8 a heavy truck right above it): light traffic
        always, heavy vehicles more often by day."""
        busy = 0.05 + 0.25 * np.clip(demand_pattern(t) + 0.3 * _gauss(local_hour(t), 14.0, 3.0), 0.0, 1.0)
        truck = hash_uniform(keys, stream, np.round(t * 1000.0)) < busy
        weight = hash_uniform(keys, stream + 1, np.round(t * 1000.0))
        light = 0.1 * hash_uniform(keys, stream + 2, np.round(t * 1000.0))
        return light + truck * (0.2 + 0.6 * weight)

    def bridge_strain(self, keys: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Strain at a girder gauge, microstrain relative to the unloaded state at 15 degC:
        per-gauge dead-load share 30-70, +1.5 per degC of girder temperature, up to about 70
        under a heavy truck. Stays under about 190 (blue 250, design value 400)."""
        offset = 30.0 + 40.0 * sensor_uniform(keys, 16)
        thermal = 1.5 * (self.structure_temperature(keys, t) - 15.0)
        live = 80.0 * self._traffic(keys, t, 111)
        return offset + thermal + live + 1.0 * white_noise(keys, 114, t)

    def bridge_deflection(self, keys: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Mid-span deflection, mm downwards: 1-3 at rest, the deck lifts 0.15 mm per degC of
        warming, up to about 5 under a heavy truck. Stays under about 10 (blue 20)."""
        offset = 1.0 + 2.0 * sensor_uniform(keys, 17)
        thermal = -0.15 * (self.structure_temperature(keys, t) - 15.0)
        live = 6.0 * self._traffic(keys, t, 115)
        return offset + thermal + live + 0.05 * white_noise(keys, 118, t)

    # Elevators: see _elevator_trip. Speed, floor and door of the same readings arrive in
    # consecutive calls with equal (keys, t): the last trip computation is kept for them.
    def _trip(self, keys: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, ...]:
        last = self._last_trip
        if last is not None and np.array_equal(last[0], keys) and np.array_equal(last[1], t):
            return last[2]
        trip = _elevator_trip(keys, t)
        self._last_trip = (keys, t, trip)
        return trip

    def elevator_speed(self, keys: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Car speed, m/s (magnitude): trapezoidal trips at the rated 1.75 m/s, 0 at rest."""
        speed = self._trip(keys, t)[0]
        moving = speed > 0
        return np.where(moving, np.clip(speed + 0.005 * white_noise(keys, 120, t), 0.0, None), 0.0)

    def elevator_floor(self, keys: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Floor shown by the car position indicator (1 = ground floor)."""
        position = self._trip(keys, t)[1]
        return np.round(position)

    def elevator_door(self, keys: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Door state: 1 open, 0 closed."""
        door = self._trip(keys, t)[2]
        return door.astype(np.float64)

    def elevator_load(self, keys: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Car load, % of rated load: the passengers of the current trip (0 when idle)."""
        return self._trip(keys, t)[3]

    def elevator_leveling(self, keys: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Levelling-zone flag: 1 while the car stands at a floor (door zone), 0 while it travels."""
        return (self._trip(keys, t)[0] <= 0).astype(np.float64)

    def zero_flag(self, keys: np.ndarray, t: np.ndarray) -> np.ndarray:
        """An event flag of a monitoring terminal (trapped, door fault...): 0 when all is well."""
        return np.zeros(len(t), dtype=np.float64)

    def ethane(self, keys: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Ethane (C2H6) in a manhole, ppm: none in sewer biogas, so background is the sensor's
        own zero offset and noise (0-0.6 ppm). Natural gas carries 2-6 % ethane relative to
        methane, so a leak shows up here and biogas does not."""
        offset = 0.3 * sensor_uniform(keys, 24)
        return np.clip(offset + 0.15 * white_noise(keys, 130, t), 0.0, None)

    def bridge_acceleration(self, keys: np.ndarray, t: np.ndarray,
                            frequency_scale: np.ndarray | None = None) -> np.ndarray:
        """Vertical deck acceleration, m/s2, at 50-100 Hz: ambient vibration of the span's first
        three bending modes excited by traffic, plus sensor noise.

        Each mode is a narrow band (damping about 2 %) of BRIDGE_MODE_COMPONENTS sinusoids around
        its natural frequency; the first mode lies at 2.2-4.5 Hz (30-40 m spans), the others at
        3.9 and 8.6 times it. Frequencies fall 0.15 % per degC of girder temperature (stiffer in
        the cold) and are multiplied by `frequency_scale` ((n,) float64, 1 = healthy; a
        stiffness loss lowers it). Phases are redrawn every BRIDGE_EPOCH_S (10 min) and time
        counts from the start of that epoch, so long epoch times never cost precision; a
        periodic acquisition block lies inside one epoch (see `run.ReadingSchedule`).
        Amplitude 0.005-0.05 m/s2, higher with daytime traffic.
        """
        epoch = np.floor(t / BRIDGE_EPOCH_S) * BRIDGE_EPOCH_S
        tau = t - epoch
        # per run of one (sensor, epoch) - a block's thousands of samples - compute temperature,
        # phases and traffic once (runs are found in O(n); a repeated pair is merely recomputed)
        starts = np.flatnonzero(np.concatenate([[True], (keys[1:] != keys[:-1]) | (epoch[1:] != epoch[:-1])]))
        marker = np.zeros(len(t), dtype=np.int64)
        marker[starts] = 1
        inverse = np.cumsum(marker) - 1
        pair_keys, pair_epoch = keys[starts], epoch[starts]
        temp = self.structure_temperature(pair_keys, pair_epoch)
        f1 = ((2.2 + 2.3 * sensor_uniform(pair_keys, 40)) * (1.0 - 0.0015 * (temp - 15.0)))[inverse]
        if frequency_scale is not None:
            f1 = f1 * frequency_scale
        k = BRIDGE_MODE_COMPONENTS
        component = np.arange(len(BRIDGE_MODE_RATIOS) * k)
        ratio = np.repeat(np.array(BRIDGE_MODE_RATIOS), k)[None, :]
        share = np.repeat(np.array(BRIDGE_MODE_SHARES), k)[None, :]
        grid = (len(pair_keys), len(component))
        pair_keys2 = np.broadcast_to(pair_keys[:, None], grid)
        spread = hash_uniform(pair_keys2, 41, np.broadcast_to(component[None, :], grid)) - 0.5
        counter = (pair_epoch / BRIDGE_EPOCH_S).astype(np.int64)[:, None] * 64 + component[None, :]
        phase = 2.0 * math.pi * hash_uniform(pair_keys2, 42, counter)
        freq = f1[:, None] * ratio * (1.0 + 4.0 * BRIDGE_DAMPING * spread[inverse])
        waves = share * np.cos(2.0 * math.pi * freq * tau[:, None] + phase[inverse])
        # each mode's response swells and fades as vehicles cross (seconds)
        modes = waves.reshape(len(t), len(BRIDGE_MODE_RATIOS), k).sum(axis=2)
        mode_no = np.arange(len(BRIDGE_MODE_RATIOS))[None, :]
        swell = 1.0 + 0.5 * np.tanh(smooth_noise(np.broadcast_to(keys[:, None], modes.shape), 43,
                                                 tau[:, None] + 7.0 * mode_no, 4.0))
        traffic = (0.3 + 0.7 * demand_pattern(pair_epoch))[inverse]
        amplitude = 0.012 * traffic * (0.6 + 0.8 * sensor_uniform(keys, 44)) / math.sqrt(k)
        return amplitude * (modes * swell).sum(axis=1) + 0.002 * white_noise(keys, 131, t)

    def tank_temperature(self, keys: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Liquid temperature in a pressurised storage tank, degC: the large thermal mass follows
        the weather of the last day, not the hour; water spray keeps summer peaks near 35."""
        city = self._city(t)
        daily_mean = 16.0 + 12.0 * season(t, lag_days=5.0) + 1.2 * smooth_noise(city, 2, t, 2 * DAY_S)
        swing = 1.0 * np.cos(2.0 * math.pi * (local_hour(t) - 17.0) / 24.0)  # lags the air by hours
        return daily_mean + swing + (sensor_uniform(keys, 18) - 0.5) + 0.05 * white_noise(keys, 121, t)

    def tank_pressure(self, keys: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Gauge pressure of a liquefied-gas tank (LPG, liquid ammonia), MPa: the vapour pressure
        of the contents, 0.72-0.80 at 20 degC and rising about 2.6 % per degC (Antoine fit),
        so 0.45 in winter to about 1.2 on the hottest days (high alarm 1.40)."""
        at_20 = 0.72 + 0.08 * sensor_uniform(keys, 19)
        temp = self.tank_temperature(keys, t)
        return at_20 * np.exp(0.026 * (temp - 20.0)) + 0.002 * white_noise(keys, 122, t)

    def tank_level(self, keys: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Fill level, % of height: filled and drawn down over a few days, 40-80 % (high 85)."""
        period = DAY_S * (2.5 + 2.0 * sensor_uniform(keys, 20))
        phase = 2.0 * math.pi * sensor_uniform(keys, 21)
        return 60.0 + 15.0 * np.sin(2.0 * math.pi * t / period + phase) + 1.5 * smooth_noise(keys, 123, t, 3 * 3600.0)

    def toxic_gas(self, keys: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Toxic gas (NH3, Cl2...) at a plant detector, %OEL: background near zero, slight drift."""
        value = 0.8 * sensor_uniform(keys, 22) + 0.6 * np.abs(smooth_noise(keys, 124, t, 1800.0)) + 0.2 * white_noise(keys, 125, t)
        return np.clip(value, 0.0, None)

    def plant_combustible(self, keys: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Combustible gas at a plant detector, %LEL: background near zero."""
        value = 0.3 * sensor_uniform(keys, 23) + 0.2 * np.abs(smooth_noise(keys, 126, t, 1800.0)) + 0.1 * white_noise(keys, 127, t)
        return np.clip(value, 0.0, None)

    def generic(self, keys: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Unknown channel: about 1.0 +- 3 %, scaled per channel to a safe nominal value."""
        return 1.0 + 0.02 * smooth_noise(keys, 128, t, 1800.0) + 0.005 * white_noise(keys, 129, t)


# Elevator trip schedule ------------------------------------------------------------------------

ELEVATOR_RATED_SPEED = 1.75  # m/s, the demo lifts' rated speed
ELEVATOR_ACCELERATION = 0.8  # m/s2, comfortable passenger acceleration
FLOOR_HEIGHT_M = 3.2
TRIP_CYCLE_S = 60.0  # one possible trip per minute: the longest trip plus door time fits in it
DOOR_OPEN_S = 8.0
_HOMING_CYCLES = 16  # an idle car parks at the ground floor after at most 16 minutes
_LOOKBACK = _HOMING_CYCLES  # so the last trip is always within this many cycles

# Bridge vibration ------------------------------------------------------------------------------

BRIDGE_EPOCH_S = 600.0  # modal phases are redrawn every 10 minutes
BRIDGE_MODE_RATIOS = (1.0, 3.9, 8.6)  # natural frequencies relative to the first bending mode
BRIDGE_MODE_SHARES = (1.0, 0.45, 0.2)  # relative response of each mode to traffic
BRIDGE_MODE_COMPONENTS = 5  # sinusoids per mode: a narrow band, not a pure tone
BRIDGE_DAMPING = 0.02  # damping ratio: the relative half-width of each band


def elevator_floors(keys: np.ndarray) -> np.ndarray:
    """Number of floors served, 12-24, per lift."""
    return 12 + np.floor(sensor_uniform(keys, 30) * 13)


def _busy_by_minute() -> np.ndarray:
    """(1440,) float64 - probability that passengers call a lift in each minute of the local day:
    0.1 at night, up to 0.85 at the morning, lunch and evening rush hours."""
    h = np.arange(1440) / 60.0
    rush = 0.9 * _gauss(h, 8.5, 1.0) + 0.7 * _gauss(h, 12.5, 1.0) + 0.9 * _gauss(h, 18.0, 1.2) + 0.5 * _gauss(h, 15.0, 3.0)
    return 0.1 + 0.75 * np.clip(rush, 0.0, 1.0)


_BUSY_BY_MINUTE = _busy_by_minute()


def _passenger_call(keys: np.ndarray, cycles: np.ndarray) -> np.ndarray:
    """Whether passengers use the car in a cycle (cycles are minutes: a table look-up by the
    local minute of the day)."""
    minute = ((cycles * TRIP_CYCLE_S + LOCAL_UTC_OFFSET_S) // 60.0 % 1440).astype(np.int64)
    return hash_uniform(keys, 31, cycles) < _BUSY_BY_MINUTE[minute]


def _trip_target(keys: np.ndarray, cycles: np.ndarray, floors: np.ndarray, called: np.ndarray) -> np.ndarray:
    """Destination floor of a cycle's trip: for a passenger trip the ground floor 40 % of the
    time, else an upper floor; a homing trip (no call) goes to the ground floor."""
    lobby = ~called | (hash_uniform(keys, 32, cycles) < 0.4)
    upper = 2 + np.floor(hash_uniform(keys, 33, cycles) * (floors - 1))
    return np.where(lobby, 1.0, np.minimum(upper, floors))


def _elevator_trip(keys: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Speed (m/s), position (floors, fractional), door-open flag and load (% of rated load) of
    lifts at times t.

    Time is cut into cycles of TRIP_CYCLE_S (with a per-lift phase). A cycle is active when a
    passenger calls the car or on every _HOMING_CYCLES-th cycle (an idle car parks at the ground
    floor). In an active cycle the car travels from the destination of the last active cycle to
    this cycle's destination with a trapezoidal speed profile (ELEVATOR_ACCELERATION,
    ELEVATOR_RATED_SPEED), then, for passengers, holds its door open for DOOR_OPEN_S; otherwise
    it waits, door closed. Pure function of (key, t): homing bounds the search for the last trip.
    """
    n = len(t)
    floors = elevator_floors(keys)
    shifted = t + TRIP_CYCLE_S * sensor_uniform(keys, 34)
    cycle = np.floor(shifted / TRIP_CYCLE_S)
    tau = shifted - cycle * TRIP_CYCLE_S
    back = cycle[:, None] - np.arange(_LOOKBACK + 1)[None, :]  # (n, L+1): this cycle, then earlier
    keys2 = np.broadcast_to(keys[:, None], back.shape)
    called = _passenger_call(keys2, back)
    active = called | (back % _HOMING_CYCLES == 0)
    j = 1 + np.argmax(active[:, 1:], axis=1)  # the last earlier active cycle (homing: always one)
    rows = np.arange(n)
    origin = _trip_target(keys, back[rows, j], floors, called[rows, j])
    now_active, now_called = active[:, 0], called[:, 0]
    target = np.where(now_active, _trip_target(keys, cycle, floors, now_called), origin)

    distance = np.abs(target - origin) * FLOOR_HEIGHT_M
    a, v = ELEVATOR_ACCELERATION, ELEVATOR_RATED_SPEED
    peak = np.minimum(v, np.sqrt(distance * a))  # triangular profile on short trips
    t_acc = peak / a
    t_cruise = np.where(peak > 0, (distance - peak * t_acc) / np.where(peak > 0, peak, 1.0), 0.0)
    duration = 2 * t_acc + t_cruise
    moving = now_active & (tau < duration) & (distance > 0)
    speed = np.where(tau < t_acc, a * tau, np.where(tau < t_acc + t_cruise, peak, a * (duration - tau)))
    travelled = np.where(
        tau < t_acc, 0.5 * a * tau ** 2,
        np.where(tau < t_acc + t_cruise, 0.5 * a * t_acc ** 2 + peak * (tau - t_acc),
                 distance - 0.5 * a * np.clip(duration - tau, 0.0, None) ** 2))
    position = np.where(moving, origin + np.sign(target - origin) * travelled / FLOOR_HEIGHT_M, target)
    door = now_called & (tau >= duration) & (tau < duration + DOOR_OPEN_S)
    # passengers ride a called trip and leave while the door is open: 5-70 % of rated load
    riders = 5.0 + 65.0 * hash_uniform(keys, 35, cycle) ** 2
    load = np.where(now_called & (tau < duration), riders,
                    np.where(door, 0.5 * riders, 0.0))
    return np.where(moving, np.clip(speed, 0.0, None), 0.0), position, door, np.round(load, 0)


# --------------------------------------------------------------------------------------------
# Choosing a model per channel
# --------------------------------------------------------------------------------------------

# (domain, metric) -> model name; then (metric) and (unit) fall-backs. Types refine a few.
_BY_DOMAIN_METRIC = {
    ("gas", "ch4"): "manhole_methane",
    ("gas", "o2"): "oxygen",
    ("gas", "temp"): "ground",
    ("pipeline", "pressure"): "water_pressure",
    ("pipeline", "flow"): "water_flow",
    ("pipeline", "level"): "drainage_level",
    ("pipeline", "temp"): "ground",
    ("bridge", "strain"): "bridge_strain",
    ("bridge", "deflection"): "bridge_deflection",
    ("bridge", "temp"): "structure_temperature",
    ("elevator", "speed"): "elevator_speed",
    ("elevator", "floor"): "elevator_floor",
    ("elevator", "door"): "elevator_door",
    ("elevator", "load"): "elevator_load",
    ("elevator", "leveling"): "elevator_leveling",
    ("elevator", "trapped"): "zero_flag",
    ("elevator", "door_fault"): "zero_flag",
    ("gas", "c2h6"): "ethane",
    ("bridge", "acc_z"): "bridge_acceleration",
    ("bridge", "acc"): "bridge_acceleration",
    ("hazard", "pressure"): "tank_pressure",
    ("hazard", "temp"): "tank_temperature",
    ("hazard", "level"): "tank_level",
    ("hazard", "lel"): "plant_combustible",
    ("hazard", "ch4"): "plant_combustible",
}
_BY_TYPE_METRIC = {
    ("tunnel_gas", "ch4"): "tunnel_methane",
    ("tunnel_gas", "temp"): "tunnel_temperature",
}
_BY_UNIT = {
    "%OEL": "toxic_gas",
    "%LEL": "plant_combustible",
    "degC": "air",
}

#: Rounding of published values, decimals by unit (what such devices actually resolve).
DECIMALS_BY_UNIT = {
    "%LEL": 1, "%OEL": 1, "%vol": 2, "%": 1, "degC": 1, "MPa": 3, "kPa": 1, "m3/h": 1,
    "m": 2, "mm": 2, "microstrain": 1, "ustrain": 1, "m/s": 2, "floor": 0, "": 3,
    "m/s2": 4, "ppm": 1, "state": 0, "flag": 0,
}
_DECIMALS_BY_METRIC = {"floor": 0, "door": 0, "leveling": 0, "trapped": 0, "door_fault": 0}


@dataclass(frozen=True)
class ChannelModel:
    """How one channel (sensor metric) is generated: model name, scale and rounding."""

    model: str
    scale: float = 1.0  # multiplies the model's output (used by the generic model)
    decimals: int = 3


def _safe_nominal(sensor: Sensor, metric: str, rules: Sequence[Rule], owner: str | None) -> float:
    """A value that no threshold rule on this channel would flag: 40 % of the lowest `above`
    limit, or 150 % of the highest `below` limit; 1.0 when no rule applies."""
    thresholds = [r.threshold for r in rules if r.threshold is not None and r.matches(sensor, owner, metric)]
    above = [min(th.levels.values()) for th in thresholds if th.direction == "above"]
    below = [max(th.levels.values()) for th in thresholds if th.direction == "below"]
    nominal = 1.0
    if below:
        nominal = 1.5 * max(below) if max(below) > 0 else 1.0
    if above:
        nominal = min(nominal, 0.4 * min(above)) if min(above) > 0 else min(above) - 1.0
    return nominal


def channel_model(sensor: Sensor, metric: str, rules: Sequence[Rule] = (), owner: str | None = None) -> ChannelModel:
    """Pick the baseline model of one channel from its domain, type, metric and unit."""
    unit = sensor.metrics.get(metric, "")
    decimals = _DECIMALS_BY_METRIC.get(metric, DECIMALS_BY_UNIT.get(unit, 3))
    name = (_BY_TYPE_METRIC.get((sensor.type, metric))
            or _BY_DOMAIN_METRIC.get((sensor.domain, metric))
            or _BY_UNIT.get(unit))
    if name is None:
        return ChannelModel("generic", _safe_nominal(sensor, metric, rules, owner), decimals)
    return ChannelModel(name, 1.0, decimals)


class Baseline:
    """Baseline values for the channels of a sensor catalogue.

    Channels are numbered sensor by sensor in the order of each sensor's `metrics` (the order of
    `lifeline.catalogue.Catalogue`). `sensor_channel_start[s]`, `sensor_channel_count[s]` locate
    the channels of sensor s; `channel_sensor`, `channel_metric`, `channel_decimals` describe
    each channel.
    """

    def __init__(self, sensors: Sequence[Sensor], *, seed: int = 1, rules: Sequence[Rule] = (),
                 owners: dict[str, str] | None = None):
        self.sensors = tuple(sensors)
        self.seed = seed
        self._models = _Models(seed)
        owners = owners or {}
        self.sensor_keys = np.array([sensor_key(s.id, seed) for s in self.sensors], dtype=np.uint64)
        counts = [len(s.metrics) for s in self.sensors]
        #: (sensors,) int64 - index of each sensor's first channel, number of its channels
        self.sensor_channel_count = np.array(counts, dtype=np.int64)
        self.sensor_channel_start = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64) \
            if counts else np.zeros(0, np.int64)
        self.channel_sensor = np.repeat(np.arange(len(self.sensors)), counts).astype(np.int64)
        self.channel_metric: list[str] = [m for s in self.sensors for m in s.metrics]
        specs = [channel_model(s, m, rules, owners.get(s.gateway)) for s in self.sensors for m in s.metrics]
        self.channel_specs: tuple[ChannelModel, ...] = tuple(specs)
        names = sorted({c.model for c in specs})
        self._model_names = names
        self.channel_model = np.array([names.index(c.model) for c in specs], dtype=np.int64)
        self.channel_scale = np.array([c.scale for c in specs], dtype=np.float64)
        self.channel_decimals = np.array([c.decimals for c in specs], dtype=np.int64)
        self._index = {(s.id, m): i for i, (s, m) in enumerate((s, m) for s in self.sensors for m in s.metrics)}

    def channel(self, sensor_id: str, metric: str) -> int:
        """Channel index of a sensor's metric (KeyError when it has no such metric)."""
        return self._index[(sensor_id, metric)]

    def values(self, channels: np.ndarray, ts_ms: np.ndarray, frequency_scale: np.ndarray | None = None) -> np.ndarray:
        """Baseline values, unrounded.

        channels : (n,) int, channel indexes; ts_ms : (n,) int64 epoch ms.
        frequency_scale : (n,) float64 or None - multiplies the natural frequencies of vibration
            channels (1 = healthy structure); other channels ignore it.
        Returns (n,) float64 in each channel's unit.
        """
        channels = np.asarray(channels, dtype=np.int64)
        t = np.asarray(ts_ms, dtype=np.float64) / 1000.0
        out = np.empty(len(channels), dtype=np.float64)
        if not len(channels):
            return out
        keys = self.sensor_keys[self.channel_sensor[channels]]
        model_of = self.channel_model[channels]
        for code in np.unique(model_of):
            mask = model_of == code
            name = self._model_names[code]
            if name == "bridge_acceleration":
                scale = None if frequency_scale is None else frequency_scale[mask]
                out[mask] = self._models.bridge_acceleration(keys[mask], t[mask], scale)
                continue
            fn: SignalFn = getattr(self._models, name)
            out[mask] = fn(keys[mask], t[mask])
        return out * self.channel_scale[channels]

    def round(self, channels: np.ndarray, values: np.ndarray) -> np.ndarray:
        """Values rounded to each channel's published resolution (see DECIMALS_BY_UNIT)."""
        out = values.copy()
        decimals = self.channel_decimals[channels]
        for d in np.unique(decimals):
            mask = decimals == d
            out[mask] = np.round(values[mask], int(d))
        return out
