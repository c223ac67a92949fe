"""REST: what the sensor detail panel needs beyond the catalogue entry.

- the rules that watch each of the sensor's metrics, with their threshold levels and clear
  values, so a chart can draw them as bands;
- a metric's recent history reduced to at most `points` buckets (min, max and last reading of
  each), so an hour of a 100 Hz accelerometer is a few kilobytes, not megabytes;
- the sensor's alerts with their transitions.
"""

from __future__ import annotations

import dataclasses
import math
import time

import numpy as np
from fastapi import APIRouter, HTTPException, Query, Request

from dashboard.access import Viewer
from dashboard.sensors_api import _sensor_or_404
from detectors.threshold_reference import level_specs
from lifeline.config import Rule, Sensor
from lifeline.levels import LEVELS

router = APIRouter(prefix="/api/sensors", tags=["sensors"])

DEFAULT_WINDOW_MS = 3_600_000
MAX_SCAN = 5_000_000  # readings read from the archive for one series request
CLOSED_SCAN = 5000  # closed alerts searched for a sensor's recent history


def describe_rule(rule: Rule, metric: str) -> dict:
    """A rule as it applies to one metric: threshold levels with clear values, or the kind's spec."""
    kind = getattr(rule, "kind", "threshold")
    body: dict = {"id": rule.id, "kind": kind, "metric": metric}
    threshold = getattr(rule, "threshold", None)
    if kind == "threshold" and threshold is not None:
        specs = level_specs(rule)
        body.update({
            "direction": threshold.direction, "clear": threshold.clear, "for_s": threshold.hold_s,
            "levels": {LEVELS[s.level - 1]: s.limit for s in specs},
            "clear_values": {LEVELS[s.level - 1]: s.clear_value for s in specs},
        })
    else:
        spec = getattr(rule, "spec", None)
        body["spec"] = _plain(dataclasses.asdict(spec)) if dataclasses.is_dataclass(spec) else None
    return body


def _plain(value):
    """JSON-safe copy: infinities and NaN become null."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def rules_for(context, sensor: Sensor) -> list[dict]:
    config = context.config
    if config is None:
        return []
    owner = context.catalogue.owner_of(sensor)
    return [describe_rule(rule, metric) for rule in config.rules for metric in sensor.metrics
            if rule.matches(sensor, owner, metric)]


def downsample(ts: np.ndarray, value: np.ndarray, since: int, bucket_ms: int) -> dict:
    """Min, max and last reading per time bucket.

    ts : (n,) int64 epoch ms, ascending; value : (n,) float64.
    Returns columns of equal length, one entry per non-empty bucket: `ts` (of the bucket's
    last reading), `value` (that reading), `min`, `max`.
    """
    if not len(ts):
        return {"ts": [], "value": [], "min": [], "max": []}
    bucket = (ts - since) // bucket_ms
    starts = np.flatnonzero(np.concatenate(([True], bucket[1:] != bucket[:-1])))
    ends = np.concatenate((starts[1:], [len(ts)])) - 1
    return {"ts": ts[ends].tolist(), "value": value[ends].tolist(),
            "min": np.minimum.reduceat(value, starts).tolist(), "max": np.maximum.reduceat(value, starts).tolist()}


@router.get("/{sensor_id}/rules")
def sensor_rules(sensor_id: str, request: Request, principal: Viewer) -> dict:
    """`{"sensor", "rules": [{"id", "kind", "metric", "direction", "levels": {colour: limit},
    "clear", "clear_values": {colour: value}, "for_s"}]}`; other kinds carry `"spec"` instead."""
    context = request.app.state.context
    sensor = _sensor_or_404(context, sensor_id, principal)
    return {"sensor": sensor.id, "rules": rules_for(context, sensor)}


@router.get("/{sensor_id}/series")
def series(sensor_id: str, request: Request, principal: Viewer, metric: str, since: int | None = None,
           until: int | None = None, points: int = Query(600, ge=10, le=10_000)) -> dict:
    """`{"sensor", "metric", "unit", "since", "until", "bucket_ms", "count", "ts": [...], "value": [...],
    "min": [...] | null, "max": [...] | null}`; raw readings (`bucket_ms` 0, no min/max) when
    the window holds at most `points` of them. Default window: the last hour."""
    context = request.app.state.context
    sensor = _sensor_or_404(context, sensor_id, principal)
    channels = context.catalogue.channels_of[sensor.id]
    if metric not in channels:
        raise HTTPException(404, f"sensor {sensor.id} has no metric {metric!r}")
    until = int(time.time() * 1000) if until is None else until
    since = until - DEFAULT_WINDOW_MS if since is None else since
    if since > until:
        raise HTTPException(400, "since must not be after until")
    ts, value = context.archive.readings(channels[metric], since, until, MAX_SCAN)
    body = {"sensor": sensor.id, "metric": metric, "unit": sensor.metrics[metric], "since": since,
            "until": until, "count": len(ts)}
    if len(ts) <= points:
        return {**body, "bucket_ms": 0, "ts": ts.tolist(), "value": value.tolist(), "min": None, "max": None}
    bucket_ms = max(1, math.ceil((until - since + 1) / points))
    return {**body, "bucket_ms": bucket_ms, **downsample(ts, value, since, bucket_ms)}


@router.get("/{sensor_id}/alerts")
def sensor_alerts(sensor_id: str, request: Request, principal: Viewer,
                  limit: int = Query(20, ge=1, le=200)) -> list[dict]:
    """The sensor's open alerts (newest first), then its most recently raised closed ones, up to
    `limit`, each with `"history"` as in `GET /api/alerts/{id}`."""
    context = request.app.state.context
    sensor = _sensor_or_404(context, sensor_id, principal)
    store = context.store
    found = sorted((a.to_json() for a in context.book.open_alerts() if a.sensor == sensor.id),
                   key=lambda a: (a["raised_at"], a["id"]), reverse=True)
    if len(found) < limit:
        closed = [a for a in store.alerts(is_open=False, limit=CLOSED_SCAN) if a.get("sensor") == sensor.id]
        found += closed[: limit - len(found)]
    found = found[:limit]
    for alert in found:
        alert["history"] = [t.history_entry() for t in store.history(alert["id"])]
    return found
