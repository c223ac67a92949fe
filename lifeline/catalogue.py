"""The sensor catalogue as the pipeline sees it: dense integer indexes for sensors and channels.

A channel is one metric of one sensor. Detectors keep their state in arrays indexed by channel,
so everything downstream of ingestion speaks channel numbers, and this is the one place that
maps them back to sensor ids, metrics, domains and owners.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lifeline.config import Config, Gateway, Sensor


@dataclass(frozen=True, slots=True)
class Channel:
    index: int
    sensor: Sensor
    metric: str
    unit: str


class Catalogue:
    """Index of gateways, sensors and channels built once from a validated Config."""

    def __init__(self, config: Config):
        self.gateways: tuple[Gateway, ...] = config.gateways
        self.sensors: tuple[Sensor, ...] = config.sensors
        self.gateway_index: dict[str, int] = {g.id: i for i, g in enumerate(self.gateways)}
        self.sensor_index: dict[str, int] = {s.id: i for i, s in enumerate(self.sensors)}
        self.owner_by_gateway: dict[str, str] = {g.id: g.owner for g in self.gateways}
        channels: list[Channel] = []
        self.channels_of: dict[str, dict[str, int]] = {}
        for sensor in self.sensors:
            by_metric: dict[str, int] = {}
            for metric, unit in sensor.metrics.items():
                by_metric[metric] = len(channels)
                channels.append(Channel(len(channels), sensor, metric, unit))
            self.channels_of[sensor.id] = by_metric
        self.channels: tuple[Channel, ...] = tuple(channels)
        #: (channels,) int32 - sensor index of each channel
        self.channel_sensor = np.array([self.sensor_index[c.sensor.id] for c in channels], dtype=np.int32)
        #: (sensors,) int32 - gateway index of each sensor
        self.sensor_gateway = np.array([self.gateway_index[s.gateway] for s in self.sensors], dtype=np.int32)

    def __len__(self) -> int:
        return len(self.channels)

    def sensor(self, sensor_id: str) -> Sensor | None:
        index = self.sensor_index.get(sensor_id)
        return None if index is None else self.sensors[index]

    def owner_of(self, sensor: Sensor) -> str:
        return self.owner_by_gateway.get(sensor.gateway, "")
