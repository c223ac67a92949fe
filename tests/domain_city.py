"""Driving domain detectors with the generated city's feed in-process (no broker).

The simulator's own batcher produces the gateway messages of a window, the service's decoder
turns them into batches, and the detectors the configuration asks for evaluate them batch by
batch, as the pipeline does. Findings come back as plain rows to assert on.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from detectors.base import Detector
from detectors.registry import build_detectors
from ingest.batch import Batch
from ingest.decode import TelemetryDecoder
from lifeline.catalogue import Catalogue
from lifeline.config import Config, load_config
from simulators.city import generate_city, write_city
from simulators.incidents import Incident
from simulators.run import ReadingSchedule, TelemetryBatcher
from simulators.scenarios import Scenario, ScenarioItem, plan
from simulators.signals import Baseline

START = 1763798400000  # 2025-11-22 08:00 Hefei


@dataclass(frozen=True)
class Row:
    """One level change of a domain detector, as the pipeline would turn it into an alert."""

    kind: str
    rule: str
    sensor: str
    asset: str
    metric: str
    ts: int
    before: int
    after: int
    value: float
    message: str
    details: dict


def city(folder: Path, n: int = 300, seed: int = 4) -> Config:
    return load_config(write_city(generate_city(n, seed=seed), folder))


def baseline(config: Config, seed: int = 1) -> Baseline:
    return Baseline(config.sensors, seed=seed, rules=config.rules, owners={g.id: g.owner for g in config.gateways})


def incidents(config: Config, items: list[ScenarioItem], seed: int = 1) -> list[Incident]:
    return list(plan(config, baseline(config, seed), Scenario("t", tuple(items)), START, seed=seed))


def run(config: Config, planned: list[Incident], after_ms: int, until_ms: int, kinds: tuple[str, ...],
        step_ms: int = 60_000, decimation: int = 1) -> list[Row]:
    """Feed [after_ms, until_ms] of the city to the detectors of `kinds`; their findings, in order."""
    catalogue = Catalogue(config)
    detectors: list[Detector] = [d for d in build_detectors(catalogue, config.rules).hazards if d.kind in kinds]
    batcher = TelemetryBatcher(config, baseline(config), ReadingSchedule(config.sensors, 1), decimation)
    decoder = TelemetryDecoder(catalogue, 100_000)
    rows: list[Row] = []
    t = after_ms
    while t < until_ms:
        until = min(until_ms, t + step_ms)
        parts = [decoder.decode(gateway, payload, until + 1000).batch
                 for gateway, payload, _, _ in batcher.messages(t, until, planned)]
        batch = Batch.concat([p for p in parts if len(p)])
        for detector in detectors:
            found = detector.update(batch)
            for i in range(len(found)):
                b = int(found.binding[i])
                binding = detector.bindings[b]
                before, after = int(found.level_before[i]), int(found.level_after[i])
                rows.append(Row(detector.kind, binding.rule.id, binding.channel.sensor.id,
                                binding.channel.sensor.asset, binding.metric, int(found.ts[i]), before, after,
                                float(found.value[i]),
                                detector.message(b, before, after, float(found.value[i]), float(found.limit[i])),
                                detector.details(b)))
        t = until
    return rows
