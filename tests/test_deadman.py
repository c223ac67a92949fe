"""Silence of sensors and gateways on an injectable clock: grace, inhibition, restart."""

from __future__ import annotations

import textwrap

import numpy as np

from detectors.deadman import DeadmanDetector
from ingest.batch import Batch
from lifeline.catalogue import Catalogue
from lifeline.config import parse_config

CITY = textwrap.dedent("""\
    gateways: [{id: g1, owner: o}, {id: g2, owner: o}]
    sensors:
      - {id: A, gateway: g1, domain: gas, metrics: {ch4: "%LEL"}, interval: 10}
      - {id: B, gateway: g1, domain: gas, metrics: {ch4: "%LEL"}, interval: 10}
      - {id: C, gateway: g2, domain: bridge, metrics: {strain: ue}, interval: 10}
    rules:
      - id: silence
        match: {}
        deadman: {after: 3, level: yellow, gateway_level: orange}
    """)


class Clock:
    def __init__(self, now: int = 1_000_000):
        self.now = now

    def __call__(self) -> int:
        return self.now


def setup():
    config = parse_config(CITY)
    catalogue = Catalogue(config)
    clock = Clock()
    return DeadmanDetector(catalogue, config.rules, clock), catalogue, clock


def arrive(detector, catalogue, *sensors):
    channels = [catalogue.channels_of[s][next(iter(catalogue.channels_of[s]))] for s in sensors]
    return detector.update(Batch(np.array(channels, np.int32), np.zeros(len(channels), np.int64),
                                 np.zeros(len(channels))))


def names(detector, findings):
    return [(detector.bindings[b].channel.sensor.id, int(after))
            for b, after in zip(findings.binding, findings.level_after, strict=True)]


def test_grace_period_then_one_sensor_silent():
    detector, catalogue, clock = setup()
    clock.now += 29_000
    assert names(detector, detector.tick()) == []  # within the grace of 3 x 10 s
    arrive(detector, catalogue, "A", "C")
    clock.now += 2_000  # B: 31 s since start-up, past its deadline
    # Nothing from the gateway since B's deadline: it might be the whole gateway going quiet.
    assert names(detector, detector.tick()) == []
    arrive(detector, catalogue, "A")  # the gateway still talks, so B's silence is its own
    assert names(detector, detector.tick()) == [("B", 2)]
    assert detector.details(1) == {"kind": "silent"}
    assert "sensor B silent" in detector.message(1, 0, 2, 1.0, 0.5)
    clock.now += 1_000
    assert names(detector, arrive(detector, catalogue, "B")) == [("B", 0)]


def test_a_silent_gateway_raises_one_alert_and_inhibits_its_sensors():
    detector, catalogue, clock = setup()
    arrive(detector, catalogue, "A", "B", "C")
    clock.now += 31_000
    arrive(detector, catalogue, "C")
    raised = names(detector, detector.tick())
    assert raised == [("g1", 4 - 1)]  # orange, and no alert for A or B
    gateway_binding = next(i for i, b in enumerate(detector.bindings) if b.channel.sensor.id == "g1")
    assert detector.details(gateway_binding) == {"kind": "gateway_silent", "gateway": "g1"}
    clock.now += 5_000
    back = names(detector, arrive(detector, catalogue, "A"))
    assert ("g1", 0) in back
    # B is still silent but its gateway is back: now B's own silence shows.
    assert names(detector, detector.tick()) == [("B", 2)]


def test_restored_silence_stays_active_until_data_returns():
    detector, catalogue, clock = setup()
    detector.restore(0, 2, clock.now - 60_000, clock.now - 60_000)
    clock.now += 1_000
    assert names(detector, detector.tick()) == []  # still silent: no clearing, no new alert
    assert names(detector, arrive(detector, catalogue, "A")) == [("A", 0)]


def test_arrivals_clear_a_silence_raised_while_everything_else_was_quiet():
    """Steady state takes a short path that only records arrivals; a silence raised by the
    timer must still be cleared by the next arrival, and the short path resume afterwards."""
    detector, catalogue, clock = setup()
    for _ in range(3):  # steady: everything reports, nothing is open
        clock.now += 10_000
        assert names(detector, arrive(detector, catalogue, "A", "B", "C")) == []
    clock.now += 31_000
    arrive(detector, catalogue, "A", "C")  # B stops; its gateway g1 still speaks through A
    clock.now += 1_000
    assert names(detector, detector.tick()) == [("B", 2)]
    assert names(detector, arrive(detector, catalogue, "C")) == []  # not B's: B stays silent
    assert names(detector, arrive(detector, catalogue, "B")) == [("B", 0)]
    clock.now += 5_000
    assert names(detector, arrive(detector, catalogue, "A", "B", "C")) == []
    assert names(detector, detector.tick()) == []
