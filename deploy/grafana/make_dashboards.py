"""Write the Grafana dashboards of the compose stack: one per domain, over the InfluxDB schema of
archive/influx_lines.py (measurement `reading` with tags sensor/domain/asset/gateway and one
field per metric; measurement `alert_event`).

    .venv/bin/python deploy/grafana/make_dashboards.py     # rewrites deploy/grafana/dashboards/*.json

tests/test_deploy.py checks that the committed files are what this script writes.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from lifeline.config import DOMAINS  # noqa: E402

DATASOURCE = {"type": "influxdb", "uid": "lifeline-influxdb"}  # provisioning/datasources/influxdb.yaml
FOLDER = Path(__file__).parent / "dashboards"
TITLES = {"gas": "Gas network", "pipeline": "Pipelines (water, drainage, heating, oil)", "bridge": "Bridges",
          "elevator": "Elevators", "hazard": "Major hazard sources"}
# Waveform domains show each window's largest value, the others its mean.
AGGREGATE = {"bridge": "max"}


def _schema_query(domain: str, call: str, args: str = "") -> str:
    return ('import "influxdata/influxdb/schema"\n'
            f'schema.{call}(bucket: "${{bucket}}", {args}start: -30d,\n'
            f'  predicate: (r) => r._measurement == "reading" and r.domain == "{domain}")')


def _readings(domain: str) -> str:
    return (
        'from(bucket: "${bucket}")\n'
        '  |> range(start: v.timeRangeStart, stop: v.timeRangeStop)\n'
        f'  |> filter(fn: (r) => r._measurement == "reading" and r.domain == "{domain}" and r._field == "${{metric}}")\n'
        '  |> filter(fn: (r) => r.sensor =~ /^${sensor:regex}$/)\n'
        f'  |> aggregateWindow(every: v.windowPeriod, fn: {AGGREGATE.get(domain, "mean")}, createEmpty: false)\n'
        '  |> keep(columns: ["_time", "_value", "_field", "sensor", "asset"])')


def _events(domain: str, field: str) -> str:
    return (
        'from(bucket: "${bucket}")\n'
        '  |> range(start: v.timeRangeStart, stop: v.timeRangeStop)\n'
        f'  |> filter(fn: (r) => r._measurement == "alert_event" and r.domain == "{domain}" and r._field == "{field}")')


def _variable(name: str, label: str, query: str) -> dict:
    return {"name": name, "label": label, "type": "query", "datasource": DATASOURCE, "query": query,
            "definition": query, "refresh": 2, "multi": True, "includeAll": True, "allValue": ".*",
            "current": {"selected": True, "text": ["All"], "value": ["$__all"]}, "sort": 1}


def dashboard(domain: str) -> dict:
    level_colours = [{"matcher": {"id": "byName", "options": level},
                      "properties": [{"id": "color", "value": {"mode": "fixed", "fixedColor": colour}}]}
                     for level, colour in (("red", "red"), ("orange", "orange"), ("yellow", "yellow"),
                                           ("blue", "blue"))]
    return {
        "uid": f"lifeline-{domain}",
        "title": f"Lifeline — {TITLES[domain]}",
        "description": f"Readings and alert events of the {domain} domain, written by Lifeline's InfluxDB sink.",
        "tags": ["lifeline", domain],
        "timezone": "browser",
        "editable": False,
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {"list": [
            {"name": "bucket", "type": "constant", "query": "lifeline", "hide": 2},
            _variable("metric", "Metric", _schema_query(domain, "fieldKeys")),
            _variable("sensor", "Sensor", _schema_query(domain, "tagValues", 'tag: "sensor", ')),
        ]},
        "annotations": {"list": [{
            "name": "Alert events", "datasource": DATASOURCE, "enable": True, "iconColor": "red",
            "target": {"refId": "Anno", "query": _events(domain, "message")
                       + '\n  |> map(fn: (r) => ({r with _value: r.event + " " + r.level + " " + r.sensor + ": " + r._value}))'},
        }]},
        "panels": [
            {"id": 1, "type": "stat", "title": "Alerts raised in the time range, by level",
             "datasource": DATASOURCE, "gridPos": {"x": 0, "y": 0, "w": 24, "h": 4},
             "targets": [{"refId": "A", "datasource": DATASOURCE, "query": _events(domain, "value")
                          + '\n  |> filter(fn: (r) => r.event == "raised")\n  |> group(columns: ["level"])\n'
                          '  |> count()\n  |> map(fn: (r) => ({_value: r._value, level: r.level}))'}],
             "fieldConfig": {"defaults": {"unit": "short"}, "overrides": level_colours},
             "options": {"reduceOptions": {"calcs": ["sum"]}, "colorMode": "background", "textMode": "value_and_name"}},
            {"id": 2, "type": "timeseries", "title": "$metric", "repeat": "metric", "repeatDirection": "h",
             "maxPerRow": 2, "datasource": DATASOURCE, "gridPos": {"x": 0, "y": 4, "w": 12, "h": 9},
             "targets": [{"refId": "A", "datasource": DATASOURCE, "query": _readings(domain)}],
             "fieldConfig": {"defaults": {"custom": {"lineWidth": 1, "spanNulls": False}}, "overrides": []},
             "options": {"legend": {"displayMode": "table", "placement": "right", "calcs": ["lastNotNull", "max"]},
                         "tooltip": {"mode": "multi"}}},
            {"id": 3, "type": "table", "title": "Alert events (newest first)", "datasource": DATASOURCE,
             "gridPos": {"x": 0, "y": 13, "w": 24, "h": 10},
             "targets": [{"refId": "A", "datasource": DATASOURCE, "query": _events(domain, "message")
                          + '\n  |> group()\n  |> keep(columns: ["_time", "event", "level", "rule", "sensor", '
                          '"asset", "_value"])\n  |> sort(columns: ["_time"], desc: true)\n  |> limit(n: 500)'}],
             "fieldConfig": {"defaults": {}, "overrides": [
                 {"matcher": {"id": "byName", "options": "_value"},
                  "properties": [{"id": "displayName", "value": "message"}]}]}},
        ],
    }


def render(domain: str) -> str:
    return json.dumps(dashboard(domain), indent=2, ensure_ascii=False) + "\n"


def main() -> None:
    FOLDER.mkdir(exist_ok=True)
    for domain in DOMAINS:
        (FOLDER / f"{domain}.json").write_text(render(domain), encoding="utf-8")
        print(f"wrote {FOLDER / f'{domain}.json'}")


if __name__ == "__main__":
    main()
