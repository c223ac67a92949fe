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
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from lifeline.catalogue import Catalogue
from lifeline.config import Rule

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
