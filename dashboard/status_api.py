"""REST: what the control room's status bar shows — service counters and gateway liveness.

A gateway is *online* while its newest reading (the newest `ts` of any of its sensors) is
within `SILENT_AFTER_INTERVALS` x the shortest reporting interval of its sensors, the same
rule the sensor list uses for a silent sensor. Rejection counts come from the service's
metrics, so they count since the service started.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from fastapi import APIRouter, Request

from dashboard.access import Viewer, owner_filter
from dashboard.sensors_api import SILENT_AFTER_INTERVALS
from ingest.last_values import NEVER
from lifeline.catalogue import Catalogue
from lifeline.levels import LEVELS
from lifeline.metrics import Metrics

router = APIRouter(prefix="/api", tags=["status"])


@dataclass(frozen=True)
class Liveness:
    """Per gateway of the catalogue, in catalogue order.

    last_seen : (gateways,) int64 epoch ms of the newest reading, NEVER when none
    interval_s : (gateways,) float64 shortest reporting interval of its sensors (inf: no sensors)
    sensors : (gateways,) int64 sensors it owns
    reporting : (gateways,) int64 of those, sensors seen within their own silence limit
    online : (gateways,) bool
    """

    last_seen: np.ndarray
    interval_s: np.ndarray
    sensors: np.ndarray
    reporting: np.ndarray
    online: np.ndarray


def gateway_liveness(catalogue: Catalogue, last_ts: np.ndarray, now_ms: int) -> Liveness:
    """Vectorised over channels, sensors and gateways; `last_ts` is LastValues.last_ts."""
    n_sensors, n_gateways = len(catalogue.sensors), len(catalogue.gateways)
    sensor_last = np.full(n_sensors, NEVER, np.int64)
    if len(last_ts):
        np.maximum.at(sensor_last, catalogue.channel_sensor, last_ts)
    interval = np.array([s.interval for s in catalogue.sensors], np.float64)
    gateway_of = catalogue.sensor_gateway
    gateway_last = np.full(n_gateways, NEVER, np.int64)
    gateway_interval = np.full(n_gateways, np.inf)
    if n_sensors:
        np.maximum.at(gateway_last, gateway_of, sensor_last)
        np.minimum.at(gateway_interval, gateway_of, interval)
    seen = sensor_last != NEVER
    fresh = seen & (now_ms - sensor_last <= SILENT_AFTER_INTERVALS * interval * 1000)
    reporting = np.bincount(gateway_of, weights=fresh, minlength=n_gateways).astype(np.int64)
    sensors = np.bincount(gateway_of, minlength=n_gateways).astype(np.int64)
    online = (gateway_last != NEVER) & (now_ms - gateway_last <= SILENT_AFTER_INTERVALS * gateway_interval * 1000)
    return Liveness(gateway_last, gateway_interval, sensors, reporting, online)


def rejection_counts(metrics: Metrics) -> dict[str, dict[str, int]]:
    """gateway label -> reason -> rejections counted since the service started."""
    counts: dict[str, dict[str, int]] = {}
    for family in metrics.rejections.collect():
        for sample in family.samples:
            if sample.name.endswith("_total") and sample.value:
                gateway, reason = sample.labels["gateway"], sample.labels["reason"]
                counts.setdefault(gateway, {})[reason] = int(sample.value)
    return counts


@router.get("/gateways")
def gateways(request: Request, principal: Viewer) -> list[dict]:
    """Each gateway: `{"id", "owner", "known", "sensors", "reporting", "interval_s", "last_seen",
    "online", "status": "online|offline|no_data", "rejected", "rejections": {reason: n}}`.

    Gateways outside the catalogue that sent rejected traffic are listed after the known ones
    with `"known": false` (not to integrators).
    """
    context = request.app.state.context
    catalogue: Catalogue = context.catalogue
    owner = owner_filter(principal)
    live = gateway_liveness(catalogue, context.last_values.last_ts, int(time.time() * 1000))
    rejected = rejection_counts(context.metrics)
    out = []
    for i, gateway in enumerate(catalogue.gateways):
        if owner is not None and gateway.owner != owner:
            continue
        last = int(live.last_seen[i])
        reasons = rejected.get(gateway.id, {})
        out.append({
            "id": gateway.id, "owner": gateway.owner, "known": True,
            "sensors": int(live.sensors[i]), "reporting": int(live.reporting[i]),
            "interval_s": float(live.interval_s[i]) if np.isfinite(live.interval_s[i]) else None,
            "last_seen": None if last == NEVER else last, "online": bool(live.online[i]),
            "status": "no_data" if last == NEVER else "online" if live.online[i] else "offline",
            "rejected": sum(reasons.values()), "rejections": reasons,
        })
    if owner is None:
        for gateway_id in sorted(set(rejected) - set(catalogue.gateway_index)):
            reasons = rejected[gateway_id]
            out.append({"id": gateway_id, "owner": None, "known": False, "sensors": 0, "reporting": 0,
                        "interval_s": None, "last_seen": None, "online": False, "status": "unknown",
                        "rejected": sum(reasons.values()), "rejections": reasons})
    return out


@router.get("/status")
def status(request: Request, principal: Viewer) -> dict:
    """Counters for the status bar: `{"at", "healthy", "subscribed", "readings", "backlog", "sensors",
    "seq", "open_alerts", "open_by_level": {level: n}, "rejected", "gateways": {"online", "offline", "no_data"}}`.

    `readings` is the total accepted since start; clients derive readings per second from two
    samples (`at` is the server's wall clock, epoch ms). Integrators get their owner's alerts,
    rejections and gateways only.
    """
    context = request.app.state.context
    owner = owner_filter(principal)
    now = int(time.time() * 1000)
    by_level = dict.fromkeys(reversed(LEVELS), 0)
    open_alerts = [a for a in context.book.open_alerts() if owner is None or a.owner == owner]
    for alert in open_alerts:
        if alert.level in by_level:
            by_level[alert.level] += 1
    catalogue: Catalogue = context.catalogue
    own = [i for i, g in enumerate(catalogue.gateways) if owner is None or g.owner == owner]
    live = gateway_liveness(catalogue, context.last_values.last_ts, now)
    seen = live.last_seen[own] != NEVER
    online = int(live.online[own].sum())
    rejected = rejection_counts(context.metrics)
    own_ids = None if owner is None else {catalogue.gateways[i].id for i in own}
    service = context.status()
    return {
        "at": now, "healthy": bool(context.healthy()), "subscribed": bool(service.get("subscribed", False)),
        "readings": int(service.get("readings", 0)), "backlog": int(service.get("backlog", 0) or 0),
        "sensors": int(live.sensors[own].sum()), "seq": int(service.get("seq", 0)),
        "open_alerts": len(open_alerts), "open_by_level": by_level,
        "rejected": sum(sum(r.values()) for g, r in rejected.items() if own_ids is None or g in own_ids),
        "gateways": {"online": online, "offline": int(seen.sum()) - online, "no_data": int((~seen).sum())},
        # The InfluxDB sink, when configured: {"up", "lag_s", "spooled", "spool_bytes", ...}.
        **({"influx": service["influx"]} if owner is None and "influx" in service else {}),
    }
