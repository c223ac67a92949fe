"""A simulated city: a catalogue of N sensors over the five lifeline domains, laid out the way
real networks are, around Hefei's centre (117.27 E, 31.86 N).

* gas: methane detectors (CH4 %LEL, ethane ppm, temperature) in the manholes along gas mains,
  numbered in neighbour order (`main`, `seq`, `position_m` along the main), and utility-tunnel gas
  compartments (CH4, O2, temperature);
* pipeline: water mains cut into segments of known length between transient pressure loggers
  (`main`, `segment`, `position_m`, `wave_speed_mps`; 50 Hz waveform blocks), inlet and outlet
  flow meters of each main's district metered area, and drainage wells on sewers;
* bridge: bridges of 2-5 spans (`structure`, asset = span, `span_length_m`), each span with two
  strain gauges, a deflection gauge and an accelerometer (100 Hz waveform blocks);
* elevator: lifts in buildings (`structure`), with speed, floor, door, load, levelling zone and
  the monitoring terminal's trapped / door-fault flags;
* hazard: chemical plants (`structure`) with liquefied-gas tanks (pressure, temperature, level),
  toxic (NH3 %OEL) and combustible gas (%LEL) detectors.

Sensors report through gateways of their operators (gas companies, the water utility, the
drainage company, bridge management, elevator maintenance firms, each plant). Waveform sensors
carry `rate_hz` and `block_s`: they send a block of `block_s` seconds sampled at `rate_hz` every
`interval` seconds (the period a silence detector should expect).

The layout is a pure function of (N, seed): `lifeline simulate --city N` and
`--write-config DIR` with the same N and seed describe the same city.
"""

from __future__ import annotations

import csv
import math
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lifeline.config import Config, load_config

CENTRE_LON, CENTRE_LAT = 117.27, 31.86
M_PER_DEG_LAT = 111_320.0
M_PER_DEG_LON = M_PER_DEG_LAT * math.cos(math.radians(CENTRE_LAT))
MIN_SENSORS = 20

#: Share of the catalogue per domain (Hefei's network is dominated by gas and water devices).
DOMAIN_SHARES = {"gas": 0.34, "pipeline": 0.22, "bridge": 0.18, "elevator": 0.16, "hazard": 0.10}

DISTRICTS = (  # name, centre lon, lat
    ("Luyang", 117.285, 31.880), ("Shushan", 117.235, 31.850), ("Baohe", 117.300, 31.815),
    ("Yaohai", 117.330, 31.870), ("Jingkai", 117.205, 31.785), ("Gaoxin", 117.150, 31.835),
    ("Xinzhan", 117.330, 31.910), ("Binhu", 117.290, 31.745),
)
GAS_OWNERS = ("Hefei Gas Group", "Hefei China Resources Gas")
WATER_OWNER = "Hefei Water Supply Group"
DRAIN_OWNER = "Hefei Urban Drainage Co."
TUNNEL_OWNER = "Hefei Utility Tunnel Operation Co."
BRIDGE_OWNER = "Hefei Municipal Bridge Management"
LIFT_OWNERS = ("Anhui Hengshun Elevator Maintenance Co.", "Hefei Otis Elevator Service",
               "Mitsubishi Elevator Hefei Service")
ROADS = ("Changjiang", "Huangshan", "Jinzhai", "Wuhu", "Tongling", "Fanhua", "Shouchun", "Huaihe",
         "Ma'anshan", "Qianshan", "Feixi", "Wangjiang", "Tianehu", "Suzhou", "Beijing", "Fuyang")
BUILDINGS = ("Wanda Plaza Tower", "Hefei Tiandi Office Building", "Binhu Century City Block",
             "Luyang District Hospital Inpatient Building", "Intime Center Tower",
             "Anhui Provincial Library", "Swan Lake Residence Block", "Hefei Railway Station Hotel",
             "Science Island Laboratory Building", "Baohe Wanda Apartments Block")
PLANTS = ("Hefei Tianyuan Chemical Co.", "Anhui Jinhe LPG Depot", "Hefei Linde Industrial Gases",
          "Anhui Huaihe Ammonia Works", "Hefei Xinghua Fine Chemicals")

#: The waveform sensors' acquisition: (rate_hz, block_s, interval_s).
TRANSIENT_PRESSURE = (50, 1.0, 60.0)  # a 1 s block every minute; triggered 30 s captures on transients
ACCELERATION = (100, 20.0, 600.0)  # a 20 s block every 10 minutes for modal tracking

CSV_COLUMNS = ("id", "gateway", "domain", "type", "asset", "lon", "lat", "metrics", "interval", "district",
               "main", "seq", "position_m", "segment", "wave_speed_mps", "structure", "span_length_m",
               "rate_hz", "block_s")


@dataclass
class CitySensor:
    """One row of the generated catalogue (the CSV columns; empty extras are left out)."""

    id: str
    gateway: str
    domain: str
    type: str
    asset: str
    lon: float
    lat: float
    metrics: dict[str, str]
    interval: float
    extra: dict[str, str] = field(default_factory=dict)

    def row(self) -> dict[str, str]:
        cells = {"id": self.id, "gateway": self.gateway, "domain": self.domain, "type": self.type,
                 "asset": self.asset, "lon": f"{self.lon:.6f}", "lat": f"{self.lat:.6f}",
                 "metrics": ";".join(f"{m}:{u}" for m, u in self.metrics.items()),
                 "interval": f"{self.interval:g}"}
        return {c: cells.get(c, self.extra.get(c, "")) for c in CSV_COLUMNS}


@dataclass
class City:
    """A generated catalogue: gateways (id, owner) and sensors, in file order."""

    n: int
    seed: int
    gateways: list[tuple[str, str]]
    sensors: list[CitySensor]

    def by_domain(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for s in self.sensors:
            counts[s.domain] = counts.get(s.domain, 0) + 1
        return counts


# --------------------------------------------------------------------------------------------
# Geometry
# --------------------------------------------------------------------------------------------

def _offset(lon: float, lat: float, east_m: float, north_m: float) -> tuple[float, float]:
    return lon + east_m / M_PER_DEG_LON, lat + north_m / M_PER_DEG_LAT


def _polyline(rng: np.random.Generator, lon: float, lat: float, spacing: np.ndarray) -> list[tuple[float, float]]:
    """Points along a gently bending street from (lon, lat), `spacing` metres apart."""
    heading = rng.uniform(0.0, 2.0 * math.pi)
    points = [(lon, lat)]
    for step in spacing:
        heading += rng.normal(0.0, 0.12)  # streets bend a little
        lon, lat = _offset(lon, lat, step * math.cos(heading), step * math.sin(heading))
        points.append((lon, lat))
    return points


def _site(rng: np.random.Generator, spread_m: float = 6000.0) -> tuple[str, float, float]:
    """A district and a point in it (districts lie within about 15 km of the centre)."""
    name, lon, lat = DISTRICTS[int(rng.integers(len(DISTRICTS)))]
    lon, lat = _offset(lon, lat, rng.normal(0.0, spread_m / 3), rng.normal(0.0, spread_m / 3))
    return name, lon, lat


def _split(total: int, shares: dict[str, float]) -> dict[str, int]:
    """Largest-remainder split of `total` by `shares`, at least 2 per domain."""
    raw = {k: total * v / sum(shares.values()) for k, v in shares.items()}
    counts = {k: max(2, int(math.floor(v))) for k, v in raw.items()}
    order = sorted(raw, key=lambda k: raw[k] - math.floor(raw[k]), reverse=True)
    i = 0
    while sum(counts.values()) < total:
        counts[order[i % len(order)]] += 1
        i += 1
    while sum(counts.values()) > total:  # the minimum of 2 pushed a small city over
        largest = max(counts, key=lambda k: counts[k])
        counts[largest] -= 1
    return counts


# --------------------------------------------------------------------------------------------
# Domains: each yields sensors until told to stop (the caller takes exactly its share)
# --------------------------------------------------------------------------------------------

class _Gateways:
    """Gateway ids per (prefix, owner), a new gateway every `per_gateway` sensors."""

    def __init__(self) -> None:
        self.gateways: list[tuple[str, str]] = []
        self._count: dict[str, int] = {}
        self._current: dict[tuple[str, str], tuple[str, int]] = {}

    def take(self, prefix: str, owner: str, per_gateway: int) -> str:
        key = (prefix, owner)
        current = self._current.get(key)
        if current is None or current[1] >= per_gateway:
            number = self._count.get(prefix, 0) + 1
            self._count[prefix] = number
            gateway_id = f"gw-{prefix}-{number:02d}"
            self.gateways.append((gateway_id, owner))
            current = (gateway_id, 0)
        self._current[key] = (current[0], current[1] + 1)
        return current[0]


def _gas(rng: np.random.Generator, gw: _Gateways) -> Iterator[CitySensor]:
    main_no = 0
    while True:
        main_no += 1
        # every fourth structure is a utility tunnel's gas compartment row
        if main_no % 4 == 0:
            district, lon, lat = _site(rng)
            tunnel = f"UT-{main_no:02d}"
            road = ROADS[main_no % len(ROADS)]
            for k, (x, y) in enumerate(_polyline(rng, lon, lat, np.full(3, 600.0)), start=1):
                yield CitySensor(f"TUN-{main_no:02d}-{k:02d}", gw.take("tunnel", TUNNEL_OWNER, 40), "gas",
                                 "tunnel_gas", f"{tunnel}-GAS-{k}", x, y,
                                 {"ch4": "%LEL", "o2": "%vol", "temp": "degC"}, 30.0,
                                 {"district": district, "main": tunnel, "seq": str(k),
                                  "structure": f"{road} Rd utility tunnel"})
            continue
        district, lon, lat = _site(rng)
        dn = int(rng.choice([200, 300, 400, 500]))
        road = ROADS[main_no % len(ROADS)]
        main = f"GM-{main_no:02d}-DN{dn}"
        manholes = int(rng.integers(8, 16))
        spacing = rng.uniform(150.0, 400.0, manholes - 1)
        position = np.concatenate([[0.0], np.cumsum(spacing)])
        owner = GAS_OWNERS[main_no % len(GAS_OWNERS)]
        interval = float(rng.choice([120.0, 300.0]))  # battery NB-IoT detectors: every few minutes
        for k, (x, y) in enumerate(_polyline(rng, lon, lat, spacing), start=1):
            yield CitySensor(f"GAS-{main_no:02d}-{k:02d}", gw.take("gas", owner, 60), "gas", "manhole_methane",
                             f"MH-{main_no:02d}-{k:02d}", x, y, {"ch4": "%LEL", "c2h6": "ppm", "temp": "degC"},
                             interval, {"district": district, "main": main, "seq": str(k),
                                        "position_m": f"{position[k - 1]:.0f}",
                                        "structure": f"{road} Rd gas main"})


def _pipeline(rng: np.random.Generator, gw: _Gateways) -> Iterator[CitySensor]:
    main_no = 0
    while True:
        main_no += 1
        district, lon, lat = _site(rng)
        if main_no % 3 == 0:  # a sewer with drainage wells
            sewer = f"DS-{ROADS[main_no % len(ROADS)].replace(chr(39), '')}-Rd"
            for k, (x, y) in enumerate(_polyline(rng, lon, lat, rng.uniform(200.0, 500.0, 3)), start=1):
                yield CitySensor(f"DRN-{main_no:02d}-{k:02d}", gw.take("drain", DRAIN_OWNER, 40), "pipeline",
                                 "drainage_level", f"DW-{main_no:02d}-{k:02d}", x, y, {"level": "m"}, 120.0,
                                 {"district": district, "main": sewer, "seq": str(k)})
            continue
        dn = int(rng.choice([600, 800, 1000, 1200]))
        main = f"WM-{main_no:02d}-DN{dn}"
        points = int(rng.integers(3, 6))  # pressure loggers: segments between consecutive ones
        spacing = rng.uniform(1200.0, 2500.0, points - 1)
        position = np.concatenate([[0.0], np.cumsum(spacing)])
        line = _polyline(rng, lon, lat, spacing)
        wave_speed = float(rng.choice([1100, 1150, 1200, 1250]))  # ductile iron / steel mains
        gateway = gw.take("water", WATER_OWNER, 30)
        common = {"district": district, "main": main, "wave_speed_mps": f"{wave_speed:g}"}
        inlet = _offset(*line[0], -40.0, 0.0)
        yield CitySensor(f"WF-{main_no:02d}-IN", gateway, "pipeline", "water_flow", f"{main}-INLET", *inlet,
                         {"flow": "m3/h"}, 300.0, {**common, "position_m": "0"})
        rate, block, every = TRANSIENT_PRESSURE
        for k, (x, y) in enumerate(line, start=1):
            segment = f"{main}-S{min(k, points - 1):02d}"  # the segment downstream of the logger
            yield CitySensor(f"WP-{main_no:02d}-{k:02d}", gw.take("water", WATER_OWNER, 30), "pipeline",
                             "transient_pressure", segment, x, y, {"pressure": "MPa"}, every,
                             {**common, "seq": str(k), "segment": segment, "position_m": f"{position[k - 1]:.0f}",
                              "rate_hz": str(rate), "block_s": f"{block:g}"})
        outlet = _offset(*line[-1], 40.0, 0.0)
        yield CitySensor(f"WF-{main_no:02d}-OUT", gateway, "pipeline", "water_flow", f"{main}-OUTLET", *outlet,
                         {"flow": "m3/h"}, 300.0, {**common, "position_m": f"{position[-1]:.0f}"})


def _bridges(rng: np.random.Generator, gw: _Gateways) -> Iterator[CitySensor]:
    bridge_no = 0
    while True:
        bridge_no += 1
        district, lon, lat = _site(rng, 4000.0)
        road = ROADS[(bridge_no * 5) % len(ROADS)]
        kind = "Viaduct" if bridge_no % 2 else "Bridge"
        code = f"B{bridge_no:02d}"
        name = f"{road} Rd {kind}"
        gateway = f"gw-bridge-{bridge_no:02d}"
        gw.gateways.append((gateway, BRIDGE_OWNER))
        spans = int(rng.integers(2, 6))
        lengths = rng.choice([30.0, 35.0, 40.0], spans)
        heading = rng.uniform(0.0, 2.0 * math.pi)
        along = np.concatenate([[0.0], np.cumsum(lengths)])
        rate, block, every = ACCELERATION
        for s in range(spans):
            mid = along[s] + lengths[s] / 2
            x, y = _offset(lon, lat, mid * math.cos(heading), mid * math.sin(heading))
            span = f"{code}-S{s + 1}"
            common = {"district": district, "structure": name, "span_length_m": f"{lengths[s]:g}"}
            for g in (1, 2):
                gx, gy = _offset(x, y, 0.0, (g - 1.5) * 8.0)
                yield CitySensor(f"BR-{span}-SG{g}", gateway, "bridge", "strain_gauge", span, gx, gy,
                                 {"strain": "microstrain", "temp": "degC"}, 10.0, dict(common))
            yield CitySensor(f"BR-{span}-DF", gateway, "bridge", "deflection_gauge", span, x, y,
                             {"deflection": "mm"}, 10.0, dict(common))
            yield CitySensor(f"BR-{span}-ACC", gateway, "bridge", "accelerometer", span, *_offset(x, y, 2.0, 0.0),
                             {"acc_z": "m/s2"}, every, {**common, "rate_hz": str(rate), "block_s": f"{block:g}"})


def _elevators(rng: np.random.Generator, gw: _Gateways) -> Iterator[CitySensor]:
    building_no = 0
    while True:
        building_no += 1
        district, lon, lat = _site(rng, 5000.0)
        name = f"{BUILDINGS[(building_no - 1) % len(BUILDINGS)]} {chr(65 + (building_no - 1) // len(BUILDINGS) % 26)}"
        owner = LIFT_OWNERS[building_no % len(LIFT_OWNERS)]
        code = f"L{building_no:02d}"
        for k in range(1, int(rng.integers(2, 7)) + 1):
            x, y = _offset(lon, lat, 4.0 * k, 0.0)
            yield CitySensor(f"EL-{code}-{k:02d}", gw.take("lift", owner, 40), "elevator", "traction_elevator",
                             f"LIFT-{code}-{k}", x, y,
                             {"speed": "m/s", "floor": "floor", "door": "state", "load": "%", "leveling": "flag",
                              "trapped": "flag", "door_fault": "flag"}, 15.0,
                             {"district": district, "structure": name})


def _hazards(rng: np.random.Generator, gw: _Gateways) -> Iterator[CitySensor]:
    plant_no = 0
    while True:
        plant_no += 1
        name = PLANTS[(plant_no - 1) % len(PLANTS)] + ("" if plant_no <= len(PLANTS) else f" site {plant_no}")
        # chemical parks lie at the city's edge (northeast Xinzhan, southwest Jingkai)
        park = ("Xinzhan", 117.385, 31.920) if plant_no % 2 else ("Jingkai", 117.165, 31.765)
        lon, lat = _offset(park[1], park[2], rng.normal(0, 800), rng.normal(0, 800))
        gateway = f"gw-chem-{plant_no:02d}"
        gw.gateways.append((gateway, name))
        common = {"district": park[0], "structure": name}
        tanks = int(rng.integers(2, 5))
        for k in range(1, tanks + 1):
            x, y = _offset(lon, lat, 60.0 * k, 0.0)
            yield CitySensor(f"HZ-{plant_no:02d}-T{k:02d}", gateway, "hazard", "storage_tank", f"T-{plant_no:02d}{k:02d}",
                             x, y, {"pressure": "MPa", "temp": "degC", "level": "%"}, 10.0, dict(common))
        for k in range(1, tanks + 1):
            x, y = _offset(lon, lat, 60.0 * k, 35.0)
            metric, unit, kind = (("nh3", "%OEL", "toxic_gas_detector") if k % 2 else
                                  ("lel", "%LEL", "combustible_gas_detector"))
            yield CitySensor(f"HZ-{plant_no:02d}-{metric.upper()}{k:02d}", gateway, "hazard", kind,
                             f"T-{plant_no:02d}{k:02d}", x, y, {metric: unit}, 30.0, dict(common))


_DOMAINS = {"gas": _gas, "pipeline": _pipeline, "bridge": _bridges, "elevator": _elevators, "hazard": _hazards}


def generate_city(n: int, seed: int = 1) -> City:
    """A catalogue of exactly `n` sensors (n >= MIN_SENSORS) split by DOMAIN_SHARES."""
    if n < MIN_SENSORS:
        raise ValueError(f"a city needs at least {MIN_SENSORS} sensors, got {n}")
    counts = _split(n, DOMAIN_SHARES)
    gateways = _Gateways()
    sensors: list[CitySensor] = []
    for number, (domain, make) in enumerate(_DOMAINS.items()):
        rng = np.random.default_rng([seed, number, n])
        produced = make(rng, gateways)
        sensors.extend(next(produced) for _ in range(counts[domain]))
    used = {s.gateway for s in sensors}
    return City(n, seed, [g for g in gateways.gateways if g[0] in used], sensors)


# --------------------------------------------------------------------------------------------
# The configuration file
# --------------------------------------------------------------------------------------------

#: The city's rules, like the demo's: (comment, id, match, threshold). The holds keep a single
#: wild reading (a spiking sensor reports every few minutes, every 5 s in alarm) from raising an
#: alert, and ignore the short undershoot of a pressure transient.
RULES: tuple[tuple[str, str, dict[str, str], str], ...] = (
    ("Gas: methane in manholes next to gas mains. 1 %LEL = 500 ppm CH4; red at 25 %LEL is the\n"
     "level-1 alarm of GB/T 50493-2019 cl. 5.5.2.", "gas-manhole-ch4",
     {"domain": "gas", "type": "manhole_methane", "metric": "ch4"},
     "{above: {blue: 5, yellow: 10, orange: 20, red: 25}, clear: 0.9, for: 20}"),
    ("Utility tunnel gas compartment: GB 50838-2015 alarms at <= 20 %LEL.", "tunnel-gas-ch4",
     {"domain": "gas", "type": "tunnel_gas", "metric": "ch4"}, "{above: {blue: 5, yellow: 10, red: 20}, clear: 0.9, for: 10}"),
    ("Oxygen deficiency in the tunnel: below 19.5 %vol (GB/T 50493-2019).", "tunnel-oxygen-low",
     {"domain": "gas", "type": "tunnel_gas", "metric": "o2"}, "{below: {yellow: 19.5, red: 18.0}, clear: 0.99, for: 30}"),
    ("Water mains: 0.14 MPa is the usual minimum service pressure; the settled pressure decides.",
     "water-main-pressure-low", {"domain": "pipeline", "metric": "pressure"},
     "{below: {blue: 0.20, yellow: 0.18, orange: 0.16, red: 0.14}, clear: 0.9, for: 10}"),
    ("Drainage wells (about 3 m deep): rising water means blockage or waterlogging.", "drainage-well-level-high",
     {"domain": "pipeline", "type": "drainage_level", "metric": "level"},
     "{above: {blue: 1.5, yellow: 2.0, orange: 2.4, red: 2.7}, clear: 0.9, for: 60}"),
    ("Bridges: girder strain against the design value (400 microstrain).", "bridge-strain",
     {"domain": "bridge", "metric": "strain"}, "{above: {blue: 250, yellow: 300, orange: 350, red: 400}, clear: 0.9, for: 5}"),
    ("Mid-span deflection (mm, downwards) of the 30-40 m spans.", "bridge-deflection",
     {"domain": "bridge", "metric": "deflection"}, "{above: {blue: 20, yellow: 25, orange: 30, red: 35}, clear: 0.9, for: 5}"),
    ("Elevators rated 1.75 m/s: the governor must trip at 115 % (2.01 m/s).", "elevator-overspeed",
     {"domain": "elevator", "metric": "speed"}, "{above: {yellow: 1.9, orange: 2.0, red: 2.2}, clear: 0.95}"),
    ("The lift terminal's event flags (GB/T 24476): passengers trapped (96333 at once)...", "elevator-trapped",
     {"domain": "elevator", "metric": "trapped"}, "{above: {red: 1}, clear: 0.5}"),
    ("... and a door that fails to open or close.", "elevator-door-fault",
     {"domain": "elevator", "metric": "door_fault"}, "{above: {yellow: 1}, clear: 0.5}"),
    ("Major hazard sources: liquefied-gas tanks, high / high-high from the plant's design.", "tank-pressure-high",
     {"domain": "hazard", "type": "storage_tank", "metric": "pressure"}, "{above: {yellow: 1.40, red: 1.60}, clear: 0.95, for: 10}"),
    ("", "tank-temperature-high", {"domain": "hazard", "type": "storage_tank", "metric": "temp"},
     "{above: {yellow: 40, red: 50}, clear: 0.95, for: 10}"),
    ("", "tank-level-high", {"domain": "hazard", "type": "storage_tank", "metric": "level"},
     "{above: {yellow: 85, red: 90}, clear: 0.98, for: 10}"),
    ("Toxic gas: level-1 alarm <= 100 %OEL, level-2 <= 200 %OEL.", "toxic-gas-oel",
     {"domain": "hazard", "metric": "nh3"}, "{above: {blue: 50, yellow: 100, red: 200}, clear: 0.9, for: 10}"),
    ("Combustible gas in the tank farm: level-1 alarm 25 %LEL, level-2 50 %LEL.", "plant-combustible-gas",
     {"domain": "hazard", "metric": "lel"}, "{above: {yellow: 25, red: 50}, clear: 0.9, for: 10}"),
)


#: Domain detector rules (issue 8): (comment, id, match, detector key, spec). A generic platform
#: has only RULES; `--rules threshold` writes the city without these, as the scoring baseline.
DOMAIN_RULES: tuple[tuple[str, str, dict[str, str], str, str], ...] = (
    ("Bridges: natural frequency of each span from its 100 Hz acceleration blocks (Welch PSD, first\n"
     "mode 1-6 Hz), corrected to 15 degC with the span's girder temperature; drops of 5 / 10 / 15 %\n"
     "from the learned baseline.", "bridge-modal", {"domain": "bridge", "type": "accelerometer"}, "bridge_modal",
     "{band: [1.0, 6.0], drop: {blue: 5, yellow: 10, orange: 15}, clear: 0.8,\n"
     "                  temperature: {metric: temp, coefficient: -0.15}, baseline: 3}"),
    ("Span overload: two or more gauges of one span loaded together (share of the design margin).",
     "bridge-span-overload", {"domain": "bridge"}, "bridge_overload",
     "{design: {strain: 400, deflection: 35}, sensors: 2, window: 30,\n"
     "                     levels: {blue: 0.3, yellow: 0.4, orange: 0.6, red: 0.8}, clear: 0.8}"),
    ("Elevators: the lift's event state machine (GB/T 24476): entrapment inferred from a car stopped\n"
     "outside the door zone, door closed, people inside (10 s) or the terminal's flag -> red at once,\n"
     "for the 96333 route; over-speed against the rated 1.75 m/s; door and position events.",
     "elevator-events", {"domain": "elevator"}, "elevator",
     "{rated_speed: 1.75, overspeed: {yellow: 1.08, orange: 1.15, red: 1.25}, confirm: 10, occupied: 5}"),
    ("Major hazard sources: runaway warning, tank temperature and pressure rising together (joint\n"
     "slope over 10 min in multiples of 0.1 degC/min and 0.002 MPa/min), before either reaches\n"
     "high-high. Grades R = alpha * sum(beta q / Q) (GB 18218-2018) travel with the alerts.",
     "tank-runaway", {"domain": "hazard", "type": "storage_tank"}, "runaway",
     "{temperature: temp, pressure: pressure, window: 600, rates: {temp: 0.1, pressure: 0.002},\n"
     "             levels: {yellow: 1, orange: 3, red: 6}, clear: 0.8, limits: {temp: 50, pressure: 1.6},\n"
     "             grade: {by: structure, sources: {\n"
     "               Anhui Jinhe LPG Depot: {alpha: 2.0, substances: [{name: LPG, q: 400, Q: 50, beta: 1.5}]},\n"
     "               Anhui Huaihe Ammonia Works: {alpha: 2.0, substances: [{name: ammonia, q: 300, Q: 10, beta: 2}]}},\n"
     "               default: {alpha: 1.5, substances: [{name: liquefied gas, q: 120, Q: 50, beta: 1.5}]}}}"),
    ("Early warning: methane rising in a manhole (%LEL per minute over 5 minutes)...", "gas-manhole-ch4-rising",
     {"domain": "gas", "type": "manhole_methane", "metric": "ch4"}, "trend",
     "{window: 300, rising: {yellow: 2, orange: 4, red: 8}, clear: 0.8}"),
    ("... and the time until it reaches the threshold rule's next level.", "gas-manhole-ch4-forecast",
     {"domain": "gas", "type": "manhole_methane", "metric": "ch4"}, "trend",
     "{window: 300, forecast: {threshold: gas-manhole-ch4, horizon: 600}}"),
    ("", "tank-pressure-forecast", {"domain": "hazard", "type": "storage_tank", "metric": "pressure"}, "trend",
     "{window: 600, forecast: {threshold: tank-pressure-high, horizon: 900}}"),
    ("Silence: 3 intervals without a reading; a quiet gateway is one alert.", "silence", {}, "deadman",
     "{after: 3, level: yellow, gateway_level: orange}"),
    ("Sensor faults are maintenance work: hazard alerts of a faulty channel are marked low confidence.",
     "gas-detector-fault", {"domain": "gas", "metric": "ch4"}, "quality",
     "{range: {min: 0, max: 100}, stuck: {readings: 30}, max_rate: 20}"),
    ("Gas leak or sewer biogas? Ethane, fluctuation, trend, temperature tracking and the neighbouring\n"
     "manholes on the main give a leak likelihood; levels on leak gas = likelihood x CH4 (%LEL).",
     "gas-main-leak", {"domain": "gas", "type": "manhole_methane"}, "gas_leak",
     "{levels: {blue: 1, yellow: 3, orange: 12, red: 20}, clear: 0.8, for: 10, window: 900, neighbours: 2}"),
    ("Water main burst: negative pressure wave on the 50 Hz loggers, located between the two\n"
     "loggers bracketing it; levels on the pressure drop (MPa) at the logger nearest the burst.",
     "water-main-burst", {"domain": "pipeline", "type": "transient_pressure"}, "pipe_burst",
     "{drop_rate: 0.05, front: 0.3, levels: {blue: 0.02, yellow: 0.05, orange: 0.1, red: 0.15}}"),
    ("District mass balance: inflow minus the outflow scaled by the district's own consumption\n"
     "ratio (m3/h); a burst or leak in the district shows as flow that goes nowhere.",
     "water-district-balance", {"domain": "pipeline", "type": "water_flow"}, "mass_balance",
     "{levels: {blue: 50, yellow: 100, orange: 200, red: 400}, clear: 0.8, for: 600, warmup: 12}"),
)

#: What `config_yaml(rules=...)` may write: every rule, or the plain thresholds only.
RULE_SETS = ("domain", "threshold")


def _matches(match: dict[str, str], sensor: CitySensor) -> bool:
    fields = {"domain": sensor.domain, "type": sensor.type}
    return all(v in sensor.metrics if k == "metric" else fields.get(k) == v for k, v in match.items())


def _rule_yaml(comment: str, rule_id: str, match: dict[str, str], spec: str, key: str = "threshold") -> str:
    lines = [f"  # {line}" for line in comment.splitlines() if line]
    lines.append(f"  - id: {rule_id}")
    lines.append("    match: {" + ", ".join(f"{k}: {v}" for k, v in match.items()) + "}")
    lines.append(f"    {key}: {spec}")
    return "\n".join(lines)


def config_yaml(city: City, rules: str = "domain") -> str:
    """The lifeline.yaml of a generated city (sensors in sensors.csv beside it), with the RULES
    (and, unless `rules` is "threshold", the DOMAIN_RULES) that watch some sensor of this city."""
    if rules not in RULE_SETS:
        raise ValueError(f"rules must be one of {RULE_SETS}, not {rules!r}")
    chosen = [_rule_yaml(*rule) for rule in RULES if any(_matches(rule[2], s) for s in city.sensors)]
    if rules == "domain":
        chosen += [_rule_yaml(comment, rule_id, match, spec, key) for comment, rule_id, match, key, spec in DOMAIN_RULES
                   if not match or any(_matches(match, s) for s in city.sensors)]
    counts = ", ".join(f"{d} {c}" for d, c in city.by_domain().items())
    lines = [
        f"# Simulated city: {city.n} sensors ({counts}), seed {city.seed}.",
        f"# Written by `lifeline simulate --city {city.n} --seed {city.seed} --write-config DIR`;",
        "# sensors.csv holds the catalogue. Its extra columns: district; main, seq (neighbour order)",
        "# and position_m (metres along the main) for manholes and pipe sensors; segment and",
        "# wave_speed_mps for water-main pressure loggers; structure (bridge, building, plant) and",
        "# span_length_m; rate_hz and block_s for waveform sensors, which send a block of block_s",
        "# seconds at rate_hz every `interval` seconds.",
        "",
        "mqtt: {topic_prefix: lifeline, client_id: lifeline-core}",
        "http: {host: 127.0.0.1, port: 8000}",
        "",
        "gateways:",
        *[f'  - {{id: {g}, owner: "{owner}"}}' for g, owner in city.gateways],
        "",
        "sensor_files: [sensors.csv]",
        "",
        "rules:",
        "\n".join(chosen),
        "",
    ]
    return "\n".join(lines)


def write_city(city: City, folder: Path, rules: str = "domain") -> Path:
    """Write lifeline.yaml and sensors.csv into `folder` (created); returns the config path."""
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "sensors.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS, lineterminator="\n")
        writer.writeheader()
        for sensor in city.sensors:
            writer.writerow(sensor.row())
    path = folder / "lifeline.yaml"
    path.write_text(config_yaml(city, rules), encoding="utf-8")
    return path


def city_config(n: int, seed: int = 1, rules: str = "domain") -> Config:
    """The generated city loaded (and so validated) exactly as `lifeline up` would load it."""
    with tempfile.TemporaryDirectory(prefix="lifeline-city-") as tmp:
        return load_config(write_city(generate_city(n, seed), Path(tmp), rules))
