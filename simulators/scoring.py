"""Detection scoring: alerts matched against a run's ground truth.

Pure functions over plain data: the truth file's records (`simulate --truth`) and alerts, either
alert objects (GET /api/alerts, CONTRACT §5) or websocket event messages (CONTRACT §6). Reading
them from files or a running service is `simulators.alert_sources`' job.

Definitions
-----------
* An *activation* is one raise or reactivation of an alert: from the moment it was raised (or
  reactivated) until its condition cleared, with the levels it passed through. From websocket
  events the times are exact (the reading time of each transition, `alert.updated_at`); from
  alert objects only `raised_at` (the start of the condition, before any hold time), the last
  `updated_at` and `peak_level` are known, so the time to the correct level is taken as
  `raised_at` (marked approximate).
* An activation *matches* an incident when its sensor is one of the incident's sensors or related
  sensors, or its asset one of the incident's assets, or (gateway incidents) its gateway is the
  incident's gateway; and it began within [start - tolerance, end + tolerance].
* *Maintenance* alerts (alert `kind` in MAINTENANCE_KINDS: silence and sensor-fault detectors) are
  not hazard alerts: they never detect a hazard incident and are never false hazard alerts;
  they are counted on their own.
* A hazard incident (truth `hazard` true) is *detected* when a hazard activation matches it.
  Time to first alert: the earliest matching activation's start minus the incident start (0 if
  earlier); time to the correct level: the first moment a matching activation is at or above
  `expected_level`.
* A non-hazard incident (the sewer-biogas trap, sensor faults) may be reported up to its
  `max_level` (blue): a matching hazard activation above it is a *trap violation*.
* A *false alert* is a hazard activation within the run that matches no incident at all. The
  rate is per 1,000 sensor-hours: sensors x simulated hours, from the truth file's run header and
  trailer (`sensors`, `sensors_by_domain`, `sim_start`, `sim_end`), or given explicitly.
* *Localisation error* (leaks: incidents with `leak_location`): the great-circle distance in
  metres from the true leak to the `location` ({lon, lat}) of the earliest matching activation
  that carries one. Alerts without a location leave it unreported.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from lifeline.levels import LEVEL_NUMBER, LEVELS, level_name

MAINTENANCE_KINDS = frozenset({"silent", "gateway_silent", "fault", "quality", "deadman"})
DEFAULT_TOLERANCE_S = 60.0
EARTH_RADIUS_M = 6_371_000.0
DETECTOR_EVENTS = ("raised", "escalated", "deescalated", "cleared", "reactivated")


# --------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TruthIncident:
    """An injected incident as the truth file records it."""

    id: str
    kind: str
    domain: str
    start: int
    end: int
    sensors: tuple[str, ...]
    assets: tuple[str, ...] = ()
    related: tuple[str, ...] = ()
    expected_level: str | None = None
    hazard: bool = True
    max_level: str | None = None
    detectors: tuple[str, ...] = ()
    gateway: str | None = None
    leak_location: tuple[float, float] | None = None  # (lon, lat)

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> TruthIncident:
        leak = record.get("leak_location")
        return cls(
            id=str(record["id"]), kind=str(record.get("kind", "")), domain=str(record.get("domain", "")),
            start=int(record["start"]), end=int(record["end"]), sensors=tuple(record.get("sensors") or ()),
            assets=tuple(record.get("assets") or ()),
            related=tuple(r["sensor"] if isinstance(r, dict) else str(r) for r in record.get("related") or ()),
            expected_level=record.get("expected_level"), hazard=bool(record.get("hazard", True)),
            max_level=record.get("max_level"), detectors=tuple(record.get("detectors") or ()),
            gateway=record.get("gateway"),
            leak_location=(float(leak["lon"]), float(leak["lat"])) if isinstance(leak, dict) else None)


@dataclass(frozen=True)
class RunInfo:
    """What the run covered: for the false-alert rate."""

    sensors: int | None = None
    sensors_by_domain: dict[str, int] = field(default_factory=dict)
    sim_start: int | None = None
    sim_end: int | None = None
    hours: float | None = None  # overrides sim_end - sim_start
    source: str = "truth file"

    @property
    def simulated_hours(self) -> float | None:
        if self.hours is not None:
            return self.hours
        if self.sim_start is not None and self.sim_end is not None:
            return max(0, self.sim_end - self.sim_start) / 3_600_000
        return None

    def sensor_hours(self, domain: str | None = None) -> float | None:
        hours = self.simulated_hours
        sensors = self.sensors if domain is None else self.sensors_by_domain.get(domain)
        if hours is None or sensors is None:
            return None
        return sensors * hours


def read_truth(records: Iterable[dict[str, Any]]) -> tuple[RunInfo, list[TruthIncident]]:
    """Split truth records into the run (header `type: run`, trailer `type: run_end`) and the
    incidents. Incidents without a run header leave the run's span open (sim_start unknown:
    then the earliest incident start and latest end stand in)."""
    header: dict[str, Any] = {}
    trailer: dict[str, Any] = {}
    incidents: list[TruthIncident] = []
    for record in records:
        kind = record.get("type")
        if kind == "run":
            header = record
        elif kind == "run_end":
            trailer = record
        elif "id" in record and "start" in record:
            incidents.append(TruthIncident.from_record(record))
    sim_start = header.get("sim_start")
    sim_end = trailer.get("sim_end")
    if sim_start is None and incidents:
        sim_start = min(i.start for i in incidents)
    if sim_end is None and incidents:
        sim_end = max(i.end for i in incidents)
    run = RunInfo(sensors=header.get("sensors"), sensors_by_domain=dict(header.get("sensors_by_domain") or {}),
                  sim_start=sim_start, sim_end=sim_end,
                  source="truth file" if header and trailer else "truth file (incomplete)")
    return run, incidents


@dataclass(frozen=True)
class Activation:
    """One raise or reactivation of an alert and the levels it went through.

    levels : ((reading time ms, level number), ...) in time order, the first at `begin`.
    exact : False when built from an alert object (times of level changes unknown).
    """

    alert: str
    rule: str
    sensor: str
    asset: str
    gateway: str
    domain: str
    metric: str
    kind: str
    begin: int
    end: int | None
    levels: tuple[tuple[int, int], ...]
    location: tuple[float, float] | None = None
    exact: bool = True

    @property
    def peak(self) -> int:
        return max(level for _, level in self.levels)

    @property
    def maintenance(self) -> bool:
        return self.kind in MAINTENANCE_KINDS

    def reached(self, level: int) -> int | None:
        """The first time this activation was at `level` or above, None if never."""
        return next((t for t, lv in self.levels if lv >= level), None)


def _location(alert: dict[str, Any]) -> tuple[float, float] | None:
    loc = alert.get("location")
    if isinstance(loc, dict) and isinstance(loc.get("lon"), int | float) and isinstance(loc.get("lat"), int | float):
        return float(loc["lon"]), float(loc["lat"])
    return None


def _number(level: Any) -> int:
    return LEVEL_NUMBER.get(level, 0) if isinstance(level, str) else 0


def _activation(alert: dict[str, Any], begin: int, levels: list[tuple[int, int]], end: int | None,
                exact: bool, location: tuple[float, float] | None) -> Activation:
    return Activation(alert=str(alert.get("id", "")), rule=str(alert.get("rule", "")), sensor=str(alert.get("sensor", "")),
                      asset=str(alert.get("asset", "")), gateway=str(alert.get("gateway", "")),
                      domain=str(alert.get("domain", "")), metric=str(alert.get("metric", "")),
                      kind=str(alert.get("kind", "threshold")), begin=begin, end=end, levels=tuple(levels),
                      location=location, exact=exact)


def activations_from_alerts(alerts: Iterable[dict[str, Any]]) -> list[Activation]:
    """One activation per alert object: raised_at .. updated_at (if cleared), at its peak level."""
    out = []
    for alert in alerts:
        if "raised_at" not in alert:
            continue
        begin = int(alert["raised_at"])
        peak = max(_number(alert.get("peak_level")), _number(alert.get("level")))
        end = int(alert["updated_at"]) if alert.get("condition") == "cleared" and "updated_at" in alert else None
        out.append(_activation(alert, begin, [(begin, peak)], end, False, _location(alert)))
    return out


def activations_from_events(messages: Iterable[dict[str, Any]]) -> list[Activation]:
    """Activations from websocket messages (events in any order; they are sorted by seq).

    A `raised` or `reactivated` event opens an activation at the event's reading time
    (alert.updated_at); escalations and de-escalations add levels; `cleared` ends it. Alerts
    that appear only in snapshots (their events lost) become activations as alert objects do.
    """
    events = sorted((m for m in messages if m.get("type") == "event" and isinstance(m.get("alert"), dict)),
                    key=lambda m: m.get("seq", 0))
    open_: dict[str, tuple[dict[str, Any], int, list[tuple[int, int]], tuple[float, float] | None]] = {}
    out: list[Activation] = []
    seen: set[str] = set()
    for message in events:
        event, alert = message.get("event"), message["alert"]
        alert_id = str(alert.get("id", ""))
        seen.add(alert_id)
        if event not in DETECTOR_EVENTS:
            continue
        at = int(alert.get("updated_at", alert.get("raised_at", 0)))
        level = _number(alert.get("level"))
        location = _location(alert)
        if event in ("raised", "reactivated") or alert_id not in open_:
            if alert_id in open_:  # a reactivation without a clearing we saw: close the old one
                first, begin, levels, loc = open_.pop(alert_id)
                out.append(_activation(first, begin, levels, at, True, loc))
            if event == "cleared":
                continue
            open_[alert_id] = (alert, at, [(at, level)], location)
        elif event == "cleared":
            first, begin, levels, loc = open_.pop(alert_id)
            out.append(_activation(first, begin, levels, at, True, loc or location))
        else:
            first, begin, levels, loc = open_[alert_id]
            levels.append((at, level))
            open_[alert_id] = (first, begin, levels, loc or location)
    for first, begin, levels, loc in open_.values():
        out.append(_activation(first, begin, levels, None, True, loc))
    snapshot_alerts = [a for m in messages if m.get("type") == "snapshot" for a in m.get("alerts") or []
                       if str(a.get("id", "")) not in seen]
    return out + activations_from_alerts(snapshot_alerts)


# --------------------------------------------------------------------------------------------
# Matching and scoring
# --------------------------------------------------------------------------------------------

def haversine_m(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Great-circle distance in metres between two (lon, lat) points in degrees."""
    lon1, lat1, lon2, lat2 = map(math.radians, (*a, *b))
    h = math.sin((lat2 - lat1) / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(h)))


def matches(activation: Activation, incident: TruthIncident, tolerance_ms: int) -> bool:
    """Same place (sensor, related sensor, asset or gateway) and a start within the window."""
    place = (activation.sensor in incident.sensors or activation.sensor in incident.related
             or (activation.asset != "" and activation.asset in incident.assets)
             or (incident.gateway is not None and incident.gateway in (activation.gateway, activation.sensor)))
    return place and incident.start - tolerance_ms <= activation.begin <= incident.end + tolerance_ms


def _stats(values: Sequence[float]) -> dict[str, float | None]:
    if not values:
        return {"median": None, "max": None}
    return {"median": round(statistics.median(values), 1), "max": round(max(values), 1)}


def _rate(count: int, sensor_hours: float | None) -> float | None:
    if not sensor_hours:
        return None
    return round(1000.0 * count / sensor_hours, 3)


def score(run: RunInfo, incidents: Sequence[TruthIncident], activations: Sequence[Activation],
          tolerance_s: float = DEFAULT_TOLERANCE_S) -> dict[str, Any]:
    """The score of a run as a JSON-serialisable dict (see the module docstring for terms).

    Keys: run, overall, domains (per domain: incidents, detected, missed, first_alert_s and
    to_level_s as {median, max} seconds, reached_level, false_alerts, false_per_1000_sensor_hours,
    leaks, located, location_error_m), traps, maintenance, incidents (one row each),
    false_alerts (one row each), approximate_levels.
    """
    tol = int(tolerance_s * 1000)
    incidents_by_id = {i.id: i for i in incidents}
    lo = run.sim_start - tol if run.sim_start is not None else None
    hi = run.sim_end + tol if run.sim_end is not None else None
    in_run = [a for a in activations if (lo is None or a.begin >= lo) and (hi is None or a.begin <= hi)]
    matched_ids: set[int] = set()
    rows: list[dict[str, Any]] = []
    for incident in incidents:
        hits = [(k, a) for k, a in enumerate(in_run) if matches(a, incident, tol)]
        matched_ids.update(k for k, _ in hits)
        hazard_hits = [a for _, a in hits if not a.maintenance]
        maintenance_hits = [a for _, a in hits if a.maintenance]
        row: dict[str, Any] = {
            "id": incident.id, "kind": incident.kind, "domain": incident.domain, "hazard": incident.hazard,
            "sensors": list(incident.sensors[:3]), "start": incident.start, "end": incident.end,
            "expected_level": incident.expected_level, "detectors": list(incident.detectors),
            "alerts": sorted({a.alert for a in hazard_hits}),
            "maintenance_alerts": sorted({a.alert for a in maintenance_hits}),
            "peak_level": level_name(max((a.peak for a in hazard_hits), default=0)),
        }
        if incident.hazard:
            first = min((a.begin for a in hazard_hits), default=None)
            row["detected"] = first is not None
            row["first_alert_s"] = None if first is None else round(max(0, first - incident.start) / 1000, 1)
            row["to_level_s"] = None
            if incident.expected_level in LEVEL_NUMBER:
                reached = [t for a in hazard_hits if (t := a.reached(LEVEL_NUMBER[incident.expected_level])) is not None]
                if reached:
                    row["to_level_s"] = round(max(0, min(reached) - incident.start) / 1000, 1)
            row["location_error_m"] = None
            if incident.leak_location is not None:
                located = sorted((a for a in hazard_hits if a.location is not None), key=lambda a: a.begin)
                if located:
                    row["location_error_m"] = round(haversine_m(located[0].location, incident.leak_location), 1)
        else:
            allowed = _number(incident.max_level)
            row["allowed_level"] = incident.max_level
            row["violation"] = any(a.peak > allowed for a in hazard_hits)
        rows.append(row)

    false_rows = [{"alert": a.alert, "rule": a.rule, "sensor": a.sensor, "domain": a.domain, "kind": a.kind,
                   "level": level_name(a.peak), "begin": a.begin}
                  for k, a in enumerate(in_run) if k not in matched_ids and not a.maintenance]

    def summary(domain: str | None) -> dict[str, Any]:
        mine = [r for r in rows if r["hazard"] and (domain is None or r["domain"] == domain)]
        detected = [r for r in mine if r["detected"]]
        with_level = [r for r in mine if r["expected_level"] in LEVEL_NUMBER]
        leaks = [r for r in mine if incidents_by_id[r["id"]].leak_location is not None]
        located = [r["location_error_m"] for r in leaks if r["location_error_m"] is not None]
        false_count = sum(1 for f in false_rows if domain is None or f["domain"] == domain)
        return {
            "incidents": len(mine), "detected": len(detected), "missed": len(mine) - len(detected),
            "first_alert_s": _stats([r["first_alert_s"] for r in detected]),
            "to_level_s": _stats([r["to_level_s"] for r in with_level if r["to_level_s"] is not None]),
            "reached_level": sum(1 for r in with_level if r["to_level_s"] is not None), "with_level": len(with_level),
            "false_alerts": false_count,
            "false_per_1000_sensor_hours": _rate(false_count, run.sensor_hours(domain)),
            "leaks": len(leaks), "located": len(located), "location_error_m": _stats(located),
        }

    domains = sorted({i.domain for i in incidents if i.hazard} | {f["domain"] for f in false_rows} | set(run.sensors_by_domain))
    traps = [r for r in rows if not r["hazard"]]
    trap_levels: dict[str, int] = {}
    for r in traps:
        for alert_id in r["alerts"]:
            level = next((level_name(a.peak) for a in in_run if a.alert == alert_id), None)
            if level:
                trap_levels[level] = trap_levels.get(level, 0) + 1
    maintenance = [a for a in in_run if a.maintenance]
    return {
        "run": {"sensors": run.sensors, "simulated_hours": None if run.simulated_hours is None else round(run.simulated_hours, 3),
                "sensor_hours": None if run.sensor_hours() is None else round(run.sensor_hours(), 1),
                "source": run.source, "tolerance_s": tolerance_s},
        "overall": summary(None),
        "domains": {d: summary(d) for d in domains},
        "traps": {"incidents": len(traps), "alerts": sum(len(r["alerts"]) for r in traps),
                  "by_level": {lv: trap_levels[lv] for lv in LEVELS if lv in trap_levels},
                  "violations": [r["id"] for r in traps if r["violation"]]},
        "maintenance": {"alerts": len(maintenance),
                        "matching_incidents": sum(1 for r in rows if r["maintenance_alerts"])},
        "incidents": rows,
        "false_alerts": false_rows,
        "approximate_levels": any(not a.exact for a in in_run),
    }


# --------------------------------------------------------------------------------------------
# The table
# --------------------------------------------------------------------------------------------

def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _pair(stats: dict[str, float | None]) -> str:
    if stats["median"] is None:
        return "-"
    return f"{_duration(stats['median'])} / {_duration(stats['max'])}"


def format_score(result: dict[str, Any]) -> str:
    """The score as a plain-text report: a table per domain, then incidents, traps, false alerts."""
    run = result["run"]
    lines = []
    hours = f"{run['simulated_hours']:.2f} simulated h" if run["simulated_hours"] is not None else "unknown duration"
    sensor_hours = f"{run['sensor_hours']:,.0f} sensor-h" if run["sensor_hours"] is not None else "sensor-h unknown"
    lines.append(f"Detection score: {result['overall']['incidents']} hazard incidents, {hours}, "
                 f"{run['sensors'] or '?'} sensors, {sensor_hours} (from the {run['source']})")
    lines.append("")
    header = (f"{'domain':<10}{'incidents':>10}{'detected':>9}{'missed':>7}  {'first alert med/max':<22}"
              f"{'correct level med/max':<24}{'false':>6}{'/1000 sensor-h':>15}  leak location error")
    lines.append(header)
    lines.append("-" * len(header))
    approx = "~" if result["approximate_levels"] else ""
    for name, row in [*result["domains"].items(), ("overall", result["overall"])]:
        level = _pair(row["to_level_s"])
        if row["with_level"]:
            level = f"{approx}{level} ({row['reached_level']}/{row['with_level']})"
        rate = "-" if row["false_per_1000_sensor_hours"] is None else f"{row['false_per_1000_sensor_hours']:.2f}"
        if row["leaks"]:
            loc = (f"{row['location_error_m']['median']:.0f} m / {row['location_error_m']['max']:.0f} m "
                   f"({row['located']}/{row['leaks']} located)" if row["located"] else f"not located (0/{row['leaks']})")
        else:
            loc = "-"
        if name == "overall":
            lines.append("-" * len(header))
        lines.append(f"{name:<10}{row['incidents']:>10}{row['detected']:>9}{row['missed']:>7}  "
                     f"{_pair(row['first_alert_s']):<22}{level:<24}{row['false_alerts']:>6}{rate:>15}  {loc}")
    lines.append("")
    lines.append("incidents:")
    for r in result["incidents"]:
        if r["hazard"]:
            state = (f"detected after {_duration(r['first_alert_s'])}, peak {r['peak_level']}"
                     + (f", {r['expected_level']} after {_duration(r['to_level_s'])}" if r["to_level_s"] is not None
                        else (f", never {r['expected_level']}" if r["expected_level"] else ""))
                     if r["detected"] else "MISSED")
            if r.get("location_error_m") is not None:
                state += f", located {r['location_error_m']:.0f} m off"
        else:
            state = (f"not a hazard (up to {r['allowed_level'] or 'none'}): "
                     + (f"{len(r['alerts'])} alert(s), peak {r['peak_level']}" if r["alerts"] else "no hazard alert")
                     + (" VIOLATION" if r["violation"] else "")
                     + (f"; {len(r['maintenance_alerts'])} maintenance alert(s)" if r["maintenance_alerts"] else ""))
        seen_by = f" [{', '.join(r['detectors'])}]" if r["detectors"] else ""
        lines.append(f"  {r['id']} {r['kind']:<22} {r['domain']:<9} {','.join(r['sensors'][:2]):<28} "
                     f"expected {str(r['expected_level']):<7}{state}{seen_by}")
    traps = result["traps"]
    by_level = ", ".join(f"{lv} {n}" for lv, n in traps["by_level"].items()) or "none"
    lines.append("")
    lines.append(f"traps and faults: {traps['incidents']} incidents, hazard alerts on them: {traps['alerts']} ({by_level}), "
                 f"above the allowed level: {len(traps['violations'])}"
                 + (f" ({', '.join(traps['violations'])})" if traps["violations"] else ""))
    lines.append(f"maintenance alerts: {result['maintenance']['alerts']} "
                 f"({result['maintenance']['matching_incidents']} incidents with one)")
    if result["false_alerts"]:
        lines.append("false alerts:")
        for f in result["false_alerts"][:20]:
            lines.append(f"  {f['alert']} {f['rule']} {f['sensor']} {f['level']}")
        if len(result["false_alerts"]) > 20:
            lines.append(f"  ... and {len(result['false_alerts']) - 20} more")
    if result["approximate_levels"]:
        lines.append("~ from alert objects: level times are approximate (raised_at); use events for exact times")
    return "\n".join(lines)
