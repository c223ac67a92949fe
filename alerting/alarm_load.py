"""Alarm load: is the control room drowning? (ISA-18.2, EEMUA 191)

Computed from the persisted transitions (wall-clock `at`), so it covers restarts:

- annunciations (alerts raised or reactivated, backfill excluded) in the last 10 minutes,
  per operator on duty, and per 10-minute bucket over the report window; ISA-18.2 aims at
  about 1 per operator per 10 minutes in steady operation and calls more than 10 a flood;
- standing alerts: open for more than 24 hours;
- chattering alerts: 3 or more annunciations or clearings within one minute (ISA-18.2's rule
  of thumb), and alerts marked flapping now;
- the ten noisiest rules and sensors by annunciations;
- time to acknowledge by level (mean, median, 90th percentile), from raise to acknowledgement.

`GET /api/alarm-load` returns the report; the same figures are Prometheus gauges
(`lifeline_alarm_*`) computed at scrape time. Reports are cached for a few seconds.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
from prometheus_client.core import GaugeMetricFamily

from alerting.store import open_database
from lifeline.levels import LEVELS

TEN_MIN_MS = 600_000
FLOOD_PER_OPERATOR = 10  # annunciations per operator per 10 minutes (ISA-18.2 flood)
TARGET_PER_OPERATOR = 1  # steady-operation target per operator per 10 minutes
STANDING_MS = 24 * 3_600_000
CHATTER_COUNT, CHATTER_MS = 3, 60_000
_NOT_BACKFILL = "json_extract(t.alert, '$.backfilled') IS NULL"


class AlarmLoad:
    def __init__(self, path: Path, clock: Callable[[], int], operators: int = 1, cache_ms: int = 5000):
        self.clock = clock
        self.operators = max(1, operators)
        self.cache_ms = cache_ms
        self._db = open_database(path)
        self._lock = threading.Lock()
        self._cached: tuple[int, int, dict] | None = None  # (computed at, window, report)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _query(self, sql: str, args: tuple = ()) -> list[tuple]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def report(self, window_s: float = 86400.0) -> dict:
        now = self.clock()
        window_ms = int(window_s * 1000)
        cached = self._cached
        if cached is not None and cached[1] == window_ms and 0 <= now - cached[0] < self.cache_ms:
            return cached[2]
        report = self._compute(now, window_ms)
        self._cached = (now, window_ms, report)
        return report

    def _compute(self, now: int, window_ms: int) -> dict:
        since = now - window_ms
        annunciations = np.array([at for (at,) in self._query(
            f"SELECT t.at FROM transitions t WHERE t.at > ? AND t.event IN ('raised', 'reactivated') AND {_NOT_BACKFILL}",
            (since,))], dtype=np.int64)
        last_10 = int(np.count_nonzero(annunciations > now - TEN_MIN_MS))
        n_buckets = max(1, -(-window_ms // TEN_MIN_MS))
        first_bucket = now - n_buckets * TEN_MIN_MS
        counts = np.bincount(((annunciations - first_bucket) // TEN_MIN_MS).clip(0, n_buckets - 1),
                             minlength=n_buckets) if len(annunciations) else np.zeros(n_buckets, np.int64)
        per_operator = counts / self.operators
        rate = {
            "last_10min": last_10,
            "per_operator_last_10min": round(last_10 / self.operators, 2),
            "average_per_operator_per_10min": round(float(per_operator.mean()), 3),
            "peak_per_operator_per_10min": round(float(per_operator.max()), 2),
            "target_per_operator_per_10min": TARGET_PER_OPERATOR,
            "flood_periods": int(np.count_nonzero(per_operator > FLOOD_PER_OPERATOR)),
        }
        buckets = [{"start": int(first_bucket + i * TEN_MIN_MS), "count": int(c)} for i, c in enumerate(counts)]
        return {
            "at": now, "window_s": window_ms / 1000, "operators_on_duty": self.operators, "rate": rate,
            "per_10min": buckets, "open": self._open(), "standing": self._standing(now),
            "chattering": self._chattering(since), "flapping": self._flapping(),
            "top_rules": self._top("rule", since), "top_sensors": self._top("sensor", since),
            "time_to_acknowledge": self._time_to_ack(since),
        }

    def _open(self) -> dict:
        counts = dict(self._query("SELECT level, COUNT(*) FROM alerts WHERE is_open = 1 GROUP BY level"))
        return {level: counts.get(level, 0) for level in reversed(LEVELS)}

    def _standing(self, now: int) -> dict:
        rows = self._query(
            "SELECT a.id, a.level, a.rule, a.sensor, MIN(t.at) FROM alerts a JOIN transitions t ON t.alert_id = a.id "
            "WHERE a.is_open = 1 GROUP BY a.id HAVING MIN(t.at) < ? ORDER BY MIN(t.at)", (now - STANDING_MS,))
        return {"count": len(rows), "alerts": [
            {"id": i, "level": level, "rule": rule, "sensor": sensor, "since": at,
             "hours": round((now - at) / 3_600_000, 1)} for i, level, rule, sensor, at in rows[:20]]}

    def _chattering(self, since: int) -> dict:
        rows = self._query(
            "SELECT t.alert_id, a.rule, a.sensor, t.at FROM transitions t JOIN alerts a ON a.id = t.alert_id "
            f"WHERE t.at > ? AND t.event IN ('raised', 'reactivated', 'cleared') AND {_NOT_BACKFILL} "
            "ORDER BY t.alert_id, t.at", (since,))
        found = []
        start = 0
        while start < len(rows):
            end = start
            while end < len(rows) and rows[end][0] == rows[start][0]:
                end += 1
            times = np.array([r[3] for r in rows[start:end]], dtype=np.int64)
            # Most changes within any one-minute span: for each change, how many follow within a minute.
            within = np.searchsorted(times, times + CHATTER_MS, side="left") - np.arange(len(times))
            most = int(within.max()) if len(within) else 0
            if most >= CHATTER_COUNT:
                alert_id, rule, sensor, _ = rows[start]
                found.append({"id": alert_id, "rule": rule, "sensor": sensor, "most_per_minute": most,
                              "changes": len(times)})
            start = end
        found.sort(key=lambda f: (-f["most_per_minute"], -f["changes"], f["id"]))
        return {"count": len(found), "alerts": found[:20]}

    def _flapping(self) -> dict:
        rows = self._query("SELECT id FROM alerts WHERE is_open = 1 AND json_extract(body, '$.flapping') = 1")
        return {"count": len(rows), "alerts": [r[0] for r in rows[:20]]}

    def _top(self, column: str, since: int) -> list[dict]:
        rows = self._query(
            f"SELECT a.{column}, COUNT(*) AS n FROM transitions t JOIN alerts a ON a.id = t.alert_id "
            f"WHERE t.at > ? AND t.event IN ('raised', 'reactivated') AND {_NOT_BACKFILL} "
            f"GROUP BY a.{column} ORDER BY n DESC, a.{column} LIMIT 10", (since,))
        return [{column: name, "count": n} for name, n in rows]

    def _time_to_ack(self, since: int) -> dict:
        rows = self._query(
            "SELECT r.level, k.at - r.at FROM transitions k JOIN transitions r "
            "ON r.alert_id = k.alert_id AND r.event = 'raised' "
            "WHERE k.event = 'acknowledged' AND k.at > ?", (since,))
        by_level: dict[str, list[float]] = {}
        for level, delay in rows:
            by_level.setdefault(level, []).append(max(0, delay) / 1000)
        out = {}
        for level in reversed(LEVELS):
            values = np.array(by_level.get(level, []))
            if not len(values):
                out[level] = {"count": 0}
                continue
            out[level] = {"count": int(len(values)), "mean_s": round(float(values.mean()), 1),
                          "median_s": round(float(np.median(values)), 1),
                          "p90_s": round(float(np.percentile(values, 90)), 1),
                          "max_s": round(float(values.max()), 1)}
        return out


class AlarmLoadCollector:
    """The report as Prometheus gauges, computed when /metrics is scraped."""

    def __init__(self, load: AlarmLoad):
        self.load = load

    def describe(self):
        return []

    def collect(self):
        try:
            report = self.load.report()
        except Exception:  # a scrape must never fail because of a report
            return
        rate = report["rate"]
        for name, help_text, value in (
                ("lifeline_alarm_rate_10m", "Alerts raised or reactivated in the last 10 minutes", rate["last_10min"]),
                ("lifeline_alarm_rate_10m_per_operator", "Alerts per operator on duty in the last 10 minutes "
                 "(ISA-18.2 target about 1)", rate["per_operator_last_10min"]),
                ("lifeline_alarm_flood_periods", "10-minute periods of the last 24 h with more than 10 alerts per "
                 "operator", rate["flood_periods"]),
                ("lifeline_alarm_standing", "Open alerts raised more than 24 h ago", report["standing"]["count"]),
                ("lifeline_alarm_chattering", "Alerts with 3 or more changes within a minute in the last 24 h",
                 report["chattering"]["count"]),
                ("lifeline_alarm_flapping", "Open alerts marked flapping", report["flapping"]["count"])):
            family = GaugeMetricFamily(name, help_text)
            family.add_metric([], value)
            yield family
        family = GaugeMetricFamily("lifeline_alarm_open", "Open alerts by level", labels=["level"])
        for level, count in report["open"].items():
            family.add_metric([level], count)
        yield family
        for column in ("rule", "sensor"):
            family = GaugeMetricFamily(f"lifeline_alarm_top_{column}", f"Alerts raised or reactivated in the last "
                                       f"24 h, the ten noisiest {column}s", labels=[column])
            for row in report[f"top_{column}s"]:
                family.add_metric([row[column]], row["count"])
            yield family
        family = GaugeMetricFamily("lifeline_alarm_ack_seconds", "Time from raise to acknowledgement over the last "
                                   "24 h, by level", labels=["level", "stat"])
        for level, stats in report["time_to_acknowledge"].items():
            for stat in ("mean", "median", "p90"):
                if f"{stat}_s" in stats:
                    family.add_metric([level, stat], stats[f"{stat}_s"])
        yield family
