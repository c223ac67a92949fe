"""Which worker process serves which gateways.

Sensors belong to exactly one gateway, so a gateway's channels - their detector state, last
values and archive blocks - are all handled by the one worker that subscribes to its
telemetry topic. Gateways are spread by channel count, largest first to the least loaded
worker (the LPT rule), so that the workers get similar shares of the readings.

Domain detectors combine sensors of one structure: the manholes along a gas main, the loggers
and flow meters of a water main, the gauges of a bridge span, the sensors of a tank. Those may
report through different gateways, so gateways whose sensors share a TOPOLOGY_FIELDS value (in
the same domain) are placed together, as one unit, and a detector always sees the whole
structure.

A worker is sent the configuration as it sees it (`config_for`), not the whole one: unpickled,
a described sensor costs over a kilobyte, and every worker holding all of them was most of its
memory. Its own gateways' sensors keep their full description; every other sensor becomes a
stand-in that keeps only what the worker needs of it - its id and gateway, so that a reading
for it is still refused as "belongs to another gateway" rather than "not in the catalogue",
and its metric names, so that the worker's channel numbers are those of the whole catalogue
(the shared last-values block and the archive speak those numbers). Repeated values (gateway
ids, domains, metric names, units, locations) are shared, which pickling preserves.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Hashable, Sequence
from typing import TypeVar

from lifeline.catalogue import Catalogue
from lifeline.config import Config, Location, Rule, Sensor

#: Catalogue fields that name a structure several sensors belong to (CONTRACT §2 `asset`; the
#: `main` and `structure` columns of a catalogue file).
TOPOLOGY_FIELDS = ("asset", "main", "structure")


def linked_gateways(catalogue: Catalogue) -> list[tuple[str, ...]]:
    """The gateways in units that must share a worker: connected through sensors of one structure."""
    parent = {g.id: g.id for g in catalogue.gateways}

    def root(gateway: str) -> str:
        while parent[gateway] != gateway:
            parent[gateway] = parent[parent[gateway]]
            gateway = parent[gateway]
        return gateway

    first_gateway: dict[tuple[str, str, str], str] = {}
    for sensor in catalogue.sensors:
        for name in TOPOLOGY_FIELDS:
            value = sensor.field_value(name)
            if not value:
                continue
            other = first_gateway.setdefault((sensor.domain, name, value), sensor.gateway)
            a, b = root(other), root(sensor.gateway)
            if a != b:
                parent[max(a, b)] = min(a, b)
    units: dict[str, list[str]] = {}
    for gateway in parent:
        units.setdefault(root(gateway), []).append(gateway)
    return [tuple(sorted(unit)) for unit in units.values()]


def assign_gateways(catalogue: Catalogue, workers: int) -> list[tuple[str, ...]]:
    """`workers` groups of gateway ids, every catalogue gateway in exactly one; deterministic."""
    channels = {g.id: 0 for g in catalogue.gateways}
    for channel in catalogue.channels:
        channels[channel.sensor.gateway] += 1
    units = {unit: sum(channels[g] for g in unit) for unit in linked_gateways(catalogue)}
    groups: list[list[str]] = [[] for _ in range(workers)]
    load = [0] * workers
    for unit in sorted(units, key=lambda u: (-units[u], u)):
        least = min(range(workers), key=lambda w: (load[w], w))
        groups[least].extend(unit)
        load[least] += max(units[unit], 1)
    return [tuple(sorted(group)) for group in groups]


def rules_for(rules: Sequence[Rule], gateways: Sequence[str]) -> list[Rule]:
    """The rules as one worker applies them: matching only the sensors of its gateways."""
    own = set(gateways)
    restricted = []
    for rule in rules:
        accepted = rule.match.get("gateway")
        allowed = tuple(sorted(own if accepted is None else own.intersection(accepted)))
        restricted.append(dataclasses.replace(rule, match={**rule.match, "gateway": allowed}))
    return restricted


def config_for(config: Config, gateways: Sequence[str]) -> Config:
    """The configuration one worker is sent: its gateways' sensors in full, the others as
    stand-ins in the same places (same sensor and channel numbers), its rules restricted."""
    own = set(gateways)
    shared = _Shared()
    sensors = tuple(shared.sensor(s) if s.gateway in own else shared.stand_in(s) for s in config.sensors)
    return dataclasses.replace(config, sensors=sensors, rules=tuple(rules_for(config.rules, gateways)))


#: Where a stand-in is: nowhere a worker looks, it is never bound to a rule.
_NOWHERE = Location(0.0, 0.0)
_T = TypeVar("_T", bound=Hashable)


class _Shared:
    """One object per distinct value, so that equal strings, locations and mappings of many
    sensors are stored (and pickled) once. The mappings are never changed once loaded."""

    def __init__(self) -> None:
        self._values: dict[Hashable, Hashable] = {}
        self._mappings: dict[tuple[tuple[str, str], ...], dict[str, str]] = {}

    def __call__(self, value: _T) -> _T:
        return self._values.setdefault(value, value)  # type: ignore[return-value]

    def mapping(self, mapping: dict[str, str]) -> dict[str, str]:
        key = tuple(mapping.items())
        found = self._mappings.get(key)
        if found is None:
            found = self._mappings[key] = {self(k): self(v) for k, v in key}
        return found

    def sensor(self, s: Sensor) -> Sensor:
        return Sensor(id=s.id, gateway=self(s.gateway), domain=self(s.domain), type=self(s.type),
                      asset=s.id if s.asset == s.id else self(s.asset),
                      location=self(s.location), metrics=self.mapping(s.metrics), interval=self(s.interval),
                      extra=self.mapping(s.extra))

    def stand_in(self, s: Sensor) -> Sensor:
        return Sensor(id=s.id, gateway=self(s.gateway), domain="", type="", asset="", location=_NOWHERE,
                      metrics=self.mapping(s.metrics), interval=self(s.interval), extra=self.mapping({}))
