"""Which worker process serves which gateways.

Sensors belong to exactly one gateway, so a gateway's channels - their detector state, last
values and archive blocks - are all handled by the one worker that subscribes to its
telemetry topic. Gateways are spread by channel count, largest first to the least loaded
worker (the LPT rule), so that the workers get similar shares of the readings.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from lifeline.catalogue import Catalogue
from lifeline.config import Rule


def assign_gateways(catalogue: Catalogue, workers: int) -> list[tuple[str, ...]]:
    """`workers` groups of gateway ids, every catalogue gateway in exactly one; deterministic."""
    channels = {g.id: 0 for g in catalogue.gateways}
    for channel in catalogue.channels:
        channels[channel.sensor.gateway] += 1
    groups: list[list[str]] = [[] for _ in range(workers)]
    load = [0] * workers
    for gateway in sorted(channels, key=lambda g: (-channels[g], g)):
        least = min(range(workers), key=lambda w: (load[w], w))
        groups[least].append(gateway)
        load[least] += max(channels[gateway], 1)
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
