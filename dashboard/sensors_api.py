"""REST: the catalogue with each sensor's last values and status, and archived readings."""

from __future__ import annotations

import time

from fastapi import APIRouter, HTTPException, Query, Request

from dashboard.access import Viewer, owner_filter
from ingest.last_values import NEVER
from lifeline.catalogue import Catalogue
from lifeline.config import Sensor
from lifeline.levels import LEVEL_NUMBER
from lifeline.tokens import Principal

router = APIRouter(prefix="/api/sensors", tags=["sensors"])

SILENT_AFTER_INTERVALS = 3  # a sensor is "silent" after this many missed reporting intervals


def _describe(context, sensor: Sensor, alert_levels: dict[str, str], now_ms: int) -> dict:
    catalogue: Catalogue = context.catalogue
    last = context.last_values
    values = {}
    last_seen = None
    for metric, channel in catalogue.channels_of[sensor.id].items():
        ts = int(last.last_ts[channel])
        if ts == NEVER:
            continue
        values[metric] = {"ts": ts, "value": float(last.last_value[channel]), "unit": sensor.metrics[metric]}
        last_seen = ts if last_seen is None else max(last_seen, ts)
    if last_seen is None:
        status = "no_data"
    elif now_ms - last_seen > SILENT_AFTER_INTERVALS * sensor.interval * 1000:
        status = "silent"
    else:
        status = "ok"
    return {
        "id": sensor.id, "gateway": sensor.gateway, "owner": catalogue.owner_of(sensor), "domain": sensor.domain,
        "type": sensor.type, "asset": sensor.asset,
        "location": {"lon": sensor.location.lon, "lat": sensor.location.lat},
        "metrics": dict(sensor.metrics), "interval": sensor.interval, **sensor.extra,
        "last_seen": last_seen, "values": values, "status": status, "alert_level": alert_levels.get(sensor.id),
    }


def _alert_levels(context) -> dict[str, str]:
    """Worst open alert level per sensor."""
    worst: dict[str, str] = {}
    for alert in context.book.open_alerts():
        current = worst.get(alert.sensor)
        if current is None or LEVEL_NUMBER[alert.level] > LEVEL_NUMBER[current]:
            worst[alert.sensor] = alert.level
    return worst


def _sensor_or_404(context, sensor_id: str, principal: Principal) -> Sensor:
    sensor = context.catalogue.sensor(sensor_id)
    owner = owner_filter(principal)
    if sensor is None or (owner is not None and context.catalogue.owner_of(sensor) != owner):
        raise HTTPException(404, f"no sensor {sensor_id}")
    return sensor


@router.get("")
def list_sensors(request: Request, principal: Viewer, domain: str | None = None) -> list[dict]:
    context = request.app.state.context
    owner = owner_filter(principal)
    levels = _alert_levels(context)
    now_ms = int(time.time() * 1000)
    return [_describe(context, s, levels, now_ms) for s in context.catalogue.sensors
            if (domain is None or s.domain == domain)
            and (owner is None or context.catalogue.owner_of(s) == owner)]


@router.get("/{sensor_id}")
def get_sensor(sensor_id: str, request: Request, principal: Viewer) -> dict:
    context = request.app.state.context
    sensor = _sensor_or_404(context, sensor_id, principal)
    return _describe(context, sensor, _alert_levels(context), int(time.time() * 1000))


@router.get("/{sensor_id}/readings")
def readings(sensor_id: str, request: Request, principal: Viewer, metric: str | None = None, since: int | None = None,
             until: int | None = None, limit: int = Query(100_000, ge=1, le=1_000_000)) -> dict:
    context = request.app.state.context
    sensor = _sensor_or_404(context, sensor_id, principal)
    channels = context.catalogue.channels_of[sensor.id]
    if metric is None:
        if len(channels) != 1:
            raise HTTPException(400, f"metric is required; {sensor.id} has {', '.join(channels)}")
        metric = next(iter(channels))
    if metric not in channels:
        raise HTTPException(404, f"sensor {sensor.id} has no metric {metric!r}")
    ts, value = context.archive.readings(channels[metric], since, until, limit)
    return {"sensor": sensor.id, "metric": metric, "unit": sensor.metrics[metric],
            "readings": [{"ts": t, "value": v} for t, v in zip(ts.tolist(), value.tolist(), strict=True)]}
