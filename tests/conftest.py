"""Shared fixtures: a private Mosquitto per test and `lifeline up` as a subprocess."""

from __future__ import annotations

from pathlib import Path

import pytest

from lifeline.broker import PrivateBroker
from tests.service import RunningService

DATA = Path(__file__).parent / "data"


@pytest.fixture
def broker(tmp_path):
    with PrivateBroker(tmp_path / "broker") as running:
        yield running


@pytest.fixture
def city_config() -> Path:
    return DATA / "city.yaml"


@pytest.fixture
def service(broker, city_config, tmp_path):
    running = RunningService(city_config, broker.url, tmp_path / "service").start()
    yield running
    running.stop()
