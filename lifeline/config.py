"""The configuration file: its model and its validation.

The file is validated once, at load, and every problem is reported with the file, line and
field it concerns. Runtime code then trusts the `Config` it gets and never re-checks it.
"""

from __future__ import annotations

import csv
import math
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from lifeline.alerting_config import KEYS as _ALERT_MANAGEMENT_KEYS
from lifeline.alerting_config import AlertManagementSettings, parse_alert_management
from lifeline.config_checks import Checker as _Checker
from lifeline.config_checks import Problem
from lifeline.config_checks import line_of as _line
from lifeline.config_checks import mapping as _mapping
from lifeline.config_checks import number as _number
from lifeline.config_checks import text as _text
from lifeline.config_checks import unknown_keys as _unknown_keys
from lifeline.domain_rules import DOMAIN_PARSERS
from lifeline.levels import LEVELS
from lifeline.rule_kinds import PARSERS as GENERIC_PARSERS
from lifeline.yamlsource import LineDict, load_yaml

#: Every detector key a rule may carry besides `threshold`: the generic kinds, then the domain ones.
PARSERS = {**GENERIC_PARSERS, **DOMAIN_PARSERS}

DOMAINS = ("gas", "pipeline", "bridge", "elevator", "hazard")
ID_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
METRIC_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
SENSOR_FIELDS = ("id", "gateway", "domain", "type", "asset", "location", "metrics", "interval")
DEFAULT_HTTP_PORT = 8000


class ConfigError(Exception):
    """The configuration is invalid; `problems` lists every error found."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        first = str(problems[0]) if problems else "invalid configuration"
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        super().__init__(first + more)


@dataclass(frozen=True, slots=True)
class Location:
    lon: float
    lat: float


@dataclass(frozen=True, slots=True)
class Gateway:
    id: str
    owner: str


@dataclass(frozen=True, slots=True)
class Sensor:
    """A device reporting one or more metrics through exactly one gateway."""

    id: str
    gateway: str
    domain: str
    type: str
    asset: str
    location: Location
    metrics: dict[str, str]  # metric name -> unit
    interval: float  # expected seconds between readings
    extra: dict[str, str] = field(default_factory=dict)  # further catalogue fields (main, district, ...)

    def field_value(self, name: str) -> str | None:
        """The value of a catalogue field by name, as `match` sees it."""
        if name in ("id", "sensor"):
            return self.id
        if name in ("gateway", "domain", "type", "asset"):
            return getattr(self, name)
        return self.extra.get(name)

    def number(self, name: str, default: float = math.nan) -> float:
        """A numeric catalogue field (`position_m`, `rate_hz`, ...); `default` when missing or not a
        number, so one odd catalogue cell never stops a detector from being built."""
        try:
            return float(self.extra[name])
        except (KeyError, ValueError):
            return default


@dataclass(frozen=True)
class Threshold:
    """Multi-level limit on one metric with hysteresis and a hold time.

    `levels` maps colour to limit value; `direction` is "above" (raise when value >= limit)
    or "below" (raise when value <= limit). `clear` is the hysteresis factor of CONTRACT §2;
    `hold_s` the seconds a condition must persist before it is raised.
    """

    direction: str
    levels: dict[str, float]
    clear: float
    hold_s: float


@dataclass(frozen=True)
class Rule:
    """`id`, `match` and one detector: `kind` names it, `spec` holds its parameters."""

    id: str
    match: dict[str, tuple[str, ...]]  # field -> accepted values; "metric" selects metrics
    threshold: Threshold | None  # the spec of a threshold rule, else None
    line: int | None = None
    kind: str = "threshold"
    spec: Any = None  # Trend | Change | Deadman | Quality for the other kinds

    def matches(self, sensor: Sensor, owner: str | None, metric: str) -> bool:
        for name, accepted in self.match.items():
            if name == "metric":
                value: str | None = metric
            elif name == "owner":
                value = owner
            else:
                value = sensor.field_value(name)
            if value is None or value not in accepted:
                return False
        return True


@dataclass(frozen=True)
class MqttSettings:
    url: str | None = None  # None: start a private Mosquitto
    topic_prefix: str = "lifeline"
    client_id: str = "lifeline-core"


@dataclass(frozen=True)
class HttpSettings:
    host: str = "127.0.0.1"
    port: int = DEFAULT_HTTP_PORT
    auth: bool = True


@dataclass(frozen=True)
class StorageSettings:
    path: Path | None = None  # None: decided by --data, LIFELINE_DATA or ./data
    retention_days: float = 30.0


@dataclass(frozen=True)
class InfluxSettings:
    """The optional InfluxDB sink (archive/influx_sink.py); the numbers bound its memory and disk."""

    url: str
    token: str
    org: str
    bucket: str
    spool_max_mb: float = 1024.0  # disk spool while InfluxDB is away; the oldest is dropped beyond it
    queue_max_readings: int = 500_000  # in-memory queue; more goes to the spool
    batch_lines: int = 5000  # lines per write request
    flush_s: float = 1.0  # longest wait before a partial request is written
    timeout_s: float = 10.0  # one write request
    retry_max_s: float = 30.0  # longest pause between retries while InfluxDB is away


@dataclass(frozen=True)
class AlertingSettings:
    #: readings older than this when they arrive are backfill: alerts they raise and clear
    #: again within the backfill are kept as history and page no one
    backfill_after_s: float = 300.0
    #: deadlines, escalation, receivers, routes, inhibition, flapping (lifeline/alerting_config.py)
    management: AlertManagementSettings = AlertManagementSettings()


@dataclass(frozen=True)
class Config:
    mqtt: MqttSettings = MqttSettings()
    http: HttpSettings = HttpSettings()
    storage: StorageSettings = StorageSettings()
    influx: InfluxSettings | None = None
    alerting: AlertingSettings = AlertingSettings()
    gateways: tuple[Gateway, ...] = ()
    sensors: tuple[Sensor, ...] = ()
    rules: tuple[Rule, ...] = ()
    source: Path | None = None
    warnings: tuple[str, ...] = ()

    def owner_of(self, gateway_id: str) -> str | None:
        for gateway in self.gateways:
            if gateway.id == gateway_id:
                return gateway.owner
        return None


def _mqtt(chk: _Checker, raw: LineDict) -> MqttSettings:
    _unknown_keys(chk, raw, ("url", "topic_prefix", "client_id"), "mqtt")
    url = raw.get("url")
    if url is not None:
        url = _text(chk, url, raw.line_of("url"), "mqtt.url")
        if url and not re.match(r"^mqtts?://", url):
            chk.error(raw.line_of("url"), "mqtt.url", f"expected mqtt://host:port or mqtts://..., got {url!r}")
    prefix = _text(chk, raw.get("topic_prefix", "lifeline"), raw.line_of("topic_prefix"), "mqtt.topic_prefix")
    if prefix is not None and (not prefix or any(c in prefix for c in "+#") or prefix.endswith("/")):
        chk.error(raw.line_of("topic_prefix"), "mqtt.topic_prefix", "must be non-empty, without '+', '#' or a trailing '/'")
    client_id = _text(chk, raw.get("client_id", "lifeline-core"), raw.line_of("client_id"), "mqtt.client_id")
    return MqttSettings(url=url or None, topic_prefix=prefix or "lifeline", client_id=client_id or "lifeline-core")


def _http(chk: _Checker, raw: LineDict) -> HttpSettings:
    _unknown_keys(chk, raw, ("host", "port", "auth"), "http")
    host = _text(chk, raw.get("host", "127.0.0.1"), raw.line_of("host"), "http.host") or "127.0.0.1"
    port = raw.get("port", DEFAULT_HTTP_PORT)
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        chk.error(raw.line_of("port"), "http.port", f"expected a port number 0-65535, got {port!r}")
        port = DEFAULT_HTTP_PORT
    auth = raw.get("auth", True)
    if not isinstance(auth, bool):
        chk.error(raw.line_of("auth"), "http.auth", f"expected true or false, got {auth!r}")
        auth = True
    return HttpSettings(host=host, port=port, auth=auth)


def _storage(chk: _Checker, raw: LineDict, base: Path) -> StorageSettings:
    _unknown_keys(chk, raw, ("path", "retention_days"), "storage")
    path = _text(chk, raw["path"], raw.line_of("path"), "storage.path") if "path" in raw else None
    retention = _number(chk, raw.get("retention_days", 30), raw.line_of("retention_days"),
                        "storage.retention_days", positive=True) or 30.0
    resolved = None if not path else Path(path) if Path(path).is_absolute() else base / path
    return StorageSettings(path=resolved, retention_days=retention)


def _influx(chk: _Checker, raw: LineDict) -> InfluxSettings | None:
    limits = {"spool_max_mb": float, "queue_max_readings": int, "batch_lines": int, "flush_s": float,
              "timeout_s": float, "retry_max_s": float}
    _unknown_keys(chk, raw, ("url", "token", "org", "bucket", *limits), "influx")
    values: dict[str, Any] = {"token": ""}  # the token may come from LIFELINE_INFLUX_TOKEN instead
    for key in ("url", "token", "org", "bucket"):
        if key not in raw:
            if key != "token":
                chk.error(raw.line, f"influx.{key}", "missing")
            continue
        values[key] = _text(chk, raw[key], raw.line_of(key), f"influx.{key}")
    if values.get("url") and not re.match(r"^https?://[^/\s]+", values["url"]):
        chk.error(raw.line_of("url"), "influx.url", f"expected http://host:port or https://..., got {values['url']!r}")
    for key, kind in limits.items():
        if key in raw:
            number = _number(chk, raw[key], raw.line_of(key), f"influx.{key}", positive=True)
            if number is not None and kind is int and number != int(number):
                chk.error(raw.line_of(key), f"influx.{key}", f"expected a whole number, got {raw[key]!r}")
                number = None
            values[key] = None if number is None else kind(number)
    if len(values) < 4 or None in values.values():
        return None
    return InfluxSettings(**values)


def _gateways(chk: _Checker, raw: Any, line: int | None) -> list[Gateway]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        chk.error(line, "gateways", "expected a list")
        return []
    gateways: list[Gateway] = []
    seen: set[str] = set()
    for i, item in enumerate(raw):
        path = f"gateways[{i}]"
        item_line = _line(raw, i)
        entry = _mapping(chk, item, item_line, path)
        if entry is None:
            continue
        _unknown_keys(chk, entry, ("id", "owner"), path)
        gw_id = _text(chk, entry.get("id"), entry.line_of("id"), f"{path}.id")
        if gw_id is None:
            continue
        if not ID_PATTERN.match(gw_id):
            chk.error(entry.line_of("id"), f"{path}.id", f"{gw_id!r} must match [A-Za-z0-9_.-]{{1,64}}")
            continue
        if gw_id in seen:
            chk.error(entry.line_of("id"), f"{path}.id", f"duplicate gateway id {gw_id!r}")
            continue
        seen.add(gw_id)
        owner = _text(chk, entry.get("owner", ""), entry.line_of("owner"), f"{path}.owner") or ""
        gateways.append(Gateway(gw_id, owner))
    return gateways


def _parse_metrics_cell(cell: str) -> dict[str, str] | None:
    """CSV form of metrics: `ch4:%LEL;temp:degC`."""
    metrics: dict[str, str] = {}
    for part in cell.split(";"):
        part = part.strip()
        if not part:
            continue
        name, sep, unit = part.partition(":")
        if not sep:
            return None
        metrics[name.strip()] = unit.strip()
    return metrics


def _sensor(chk: _Checker, entry: dict, lines: Any, path: str, gateway_ids: set[str]) -> Sensor | None:
    """Validate one sensor entry (from YAML or a CSV row already shaped like YAML)."""

    def where(key: str) -> int | None:
        return _line(lines, key) if isinstance(lines, LineDict) else lines

    ok = True
    for key in ("id", "gateway", "domain", "metrics"):
        if entry.get(key) in (None, ""):
            chk.error(where(key), f"{path}.{key}", "missing")
            ok = False
    if not ok:
        return None
    sensor_id = _text(chk, entry["id"], where("id"), f"{path}.id")
    if sensor_id is None:
        return None
    if not ID_PATTERN.match(sensor_id):
        chk.error(where("id"), f"{path}.id", f"{sensor_id!r} must match [A-Za-z0-9_.-]{{1,64}}")
        ok = False
    gateway = _text(chk, entry["gateway"], where("gateway"), f"{path}.gateway")
    if gateway is not None and gateway not in gateway_ids:
        chk.error(where("gateway"), f"{path}.gateway", f"unknown gateway {gateway!r} (declare it under gateways:)")
        ok = False
    domain = _text(chk, entry["domain"], where("domain"), f"{path}.domain")
    if domain not in DOMAINS:
        chk.error(where("domain"), f"{path}.domain", f"{domain!r} is not one of {', '.join(DOMAINS)}")
        ok = False
    metrics_raw = entry["metrics"]
    if not isinstance(metrics_raw, dict) or not metrics_raw:
        chk.error(where("metrics"), f"{path}.metrics", "expected a non-empty mapping of metric name to unit")
        return None
    metrics: dict[str, str] = {}
    for name, unit in metrics_raw.items():
        if not isinstance(name, str) or not METRIC_PATTERN.match(name):
            chk.error(where("metrics"), f"{path}.metrics", f"metric name {name!r} must match [A-Za-z0-9_.-]{{1,64}}")
            ok = False
            continue
        metrics[name] = "" if unit is None else str(unit)
    location_raw = entry.get("location")
    lon = lat = None
    if isinstance(location_raw, dict):
        lon = _number(chk, location_raw.get("lon"), where("location"), f"{path}.location.lon")
        lat = _number(chk, location_raw.get("lat"), where("location"), f"{path}.location.lat")
        if lon is not None and not -180 <= lon <= 180:
            chk.error(where("location"), f"{path}.location.lon", f"{lon} is outside -180..180")
            ok = False
        if lat is not None and not -90 <= lat <= 90:
            chk.error(where("location"), f"{path}.location.lat", f"{lat} is outside -90..90")
            ok = False
        if lon is None or lat is None:
            ok = False
    elif location_raw is not None:
        chk.error(where("location"), f"{path}.location", "expected {lon: ..., lat: ...}")
        ok = False
    interval = _number(chk, entry.get("interval", 60), where("interval"), f"{path}.interval", positive=True)
    if interval is None:
        ok = False
    if not ok:
        return None
    extra = {str(k): str(v) for k, v in entry.items() if k not in SENSOR_FIELDS and v not in (None, "")}
    return Sensor(
        id=sensor_id,
        gateway=gateway or "",
        domain=domain or "",
        type=str(entry.get("type") or ""),
        asset=str(entry.get("asset") or sensor_id),
        location=Location(lon or 0.0, lat or 0.0),
        metrics=metrics,
        interval=interval or 60.0,
        extra=extra,
    )


def _sensors_from_csv(chk: _Checker, path: Path, display: str, gateway_ids: set[str]) -> list[Sensor]:
    """CSV sensor file: header row with id,gateway,domain,type,asset,lon,lat,metrics,interval[,extra...]."""
    sensors: list[Sensor] = []
    file_chk = _Checker(display)
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        header = reader.fieldnames or []
        for required in ("id", "gateway", "domain", "metrics"):
            if required not in header:
                file_chk.error(1, required, "missing column")
        if file_chk.problems:
            chk.problems.extend(file_chk.problems)
            return []
        for row in reader:
            line = reader.line_num
            entry: dict[str, Any] = {k: (v.strip() if isinstance(v, str) else v) for k, v in row.items() if k}
            metrics = _parse_metrics_cell(entry.get("metrics") or "")
            if metrics is None:
                file_chk.error(line, "metrics", f"expected name:unit pairs separated by ';', got {entry.get('metrics')!r}")
                continue
            entry["metrics"] = metrics
            lon, lat = entry.pop("lon", None), entry.pop("lat", None)
            if lon not in (None, "") or lat not in (None, ""):
                try:
                    entry["location"] = {"lon": float(lon), "lat": float(lat)}  # type: ignore[arg-type]
                except (TypeError, ValueError):
                    file_chk.error(line, "lon/lat", f"expected numbers, got {lon!r}, {lat!r}")
                    continue
            if entry.get("interval") in (None, ""):
                entry.pop("interval", None)
            else:
                try:
                    entry["interval"] = float(entry["interval"])
                except ValueError:
                    file_chk.error(line, "interval", f"expected a number, got {entry['interval']!r}")
                    continue
            sensor = _sensor(file_chk, entry, line, f"row {line}", gateway_ids)
            if sensor is not None:
                sensors.append(sensor)
    chk.problems.extend(file_chk.problems)
    return sensors


def _sensors_from_yaml_file(chk: _Checker, path: Path, display: str, gateway_ids: set[str]) -> list[Sensor]:
    file_chk = _Checker(display)
    try:
        raw = load_yaml(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        file_chk.error(mark.line + 1 if mark else None, "", f"YAML syntax: {getattr(exc, 'problem', exc)}")
        chk.problems.extend(file_chk.problems)
        return []
    if isinstance(raw, dict):
        raw = raw.get("sensors")
    sensors = _sensor_list(file_chk, raw, "sensors", gateway_ids)
    chk.problems.extend(file_chk.problems)
    return sensors


def _sensor_list(chk: _Checker, raw: Any, path: str, gateway_ids: set[str]) -> list[Sensor]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        chk.error(getattr(raw, "line", None), path, "expected a list of sensors")
        return []
    sensors = []
    for i, item in enumerate(raw):
        entry = _mapping(chk, item, _line(raw, i), f"{path}[{i}]")
        if entry is None:
            continue
        sensor = _sensor(chk, entry, entry, f"{path}[{i}]", gateway_ids)
        if sensor is not None:
            sensors.append(sensor)
    return sensors


def _threshold(chk: _Checker, raw: LineDict, path: str) -> Threshold | None:
    _unknown_keys(chk, raw, ("above", "below", "clear", "for"), path)
    directions = [d for d in ("above", "below") if d in raw]
    if len(directions) != 1:
        chk.error(raw.line, path, "needs exactly one of above: or below: (use two rules for a band)")
        return None
    direction = directions[0]
    levels_raw = raw[direction]
    if not isinstance(levels_raw, dict) or not levels_raw:
        chk.error(raw.line_of(direction), f"{path}.{direction}", "expected a mapping of level colour to value")
        return None
    levels: dict[str, float] = {}
    for colour, value in levels_raw.items():
        if colour not in LEVELS:
            chk.error(levels_raw.line_of(colour), f"{path}.{direction}.{colour}",
                      f"unknown level (expected {', '.join(LEVELS)})")
            continue
        number = _number(chk, value, levels_raw.line_of(colour), f"{path}.{direction}.{colour}")
        if number is not None:
            levels[colour] = number
    if not levels:
        return None
    ordered = [levels[c] for c in LEVELS if c in levels]
    monotonic = all(a < b for a, b in zip(ordered, ordered[1:], strict=False)) if direction == "above" else all(
        a > b for a, b in zip(ordered, ordered[1:], strict=False))
    if not monotonic:
        word = "increase" if direction == "above" else "decrease"
        chk.error(raw.line_of(direction), f"{path}.{direction}", f"level values must strictly {word} from blue to red")
        return None
    clear = _number(chk, raw.get("clear", 1.0), raw.line_of("clear"), f"{path}.clear")
    if clear is not None and not 0 < clear <= 1:
        chk.error(raw.line_of("clear"), f"{path}.clear", f"must be in (0, 1], got {clear}")
        clear = None
    hold = _number(chk, raw.get("for", 0), raw.line_of("for"), f"{path}.for")
    if hold is not None and hold < 0:
        chk.error(raw.line_of("for"), f"{path}.for", "must be 0 or more seconds")
        hold = None
    if clear is None or hold is None:
        return None
    return Threshold(direction=direction, levels=levels, clear=clear, hold_s=hold)




def _rules(chk: _Checker, raw: Any, line: int | None) -> list[Rule]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        chk.error(line, "rules", "expected a list")
        return []
    rules: list[Rule] = []
    seen: set[str] = set()
    for i, item in enumerate(raw):
        path = f"rules[{i}]"
        entry = _mapping(chk, item, _line(raw, i), path)
        if entry is None:
            continue
        rule_id = _text(chk, entry.get("id"), entry.line_of("id"), f"{path}.id")
        if rule_id is None:
            continue
        if not ID_PATTERN.match(rule_id):
            chk.error(entry.line_of("id"), f"{path}.id", f"{rule_id!r} must match [A-Za-z0-9_.-]{{1,64}}")
            continue
        if rule_id in seen:
            chk.error(entry.line_of("id"), f"{path}.id", f"duplicate rule id {rule_id!r}")
            continue
        seen.add(rule_id)
        path = f"rules[{rule_id}]"
        kinds = [k for k in entry if k not in ("id", "match", "description")]
        known = ("threshold", *PARSERS)
        if len(kinds) != 1 or kinds[0] not in known:
            unknown = [k for k in kinds if k not in known]
            if unknown:
                chk.error(entry.line_of(unknown[0]), f"{path}.{unknown[0]}",
                          f"unknown detector kind (one of: {', '.join(known)})")
            else:
                chk.error(entry.line, path, f"needs exactly one detector key ({', '.join(known)})")
            continue
        kind = kinds[0]
        match_raw = _mapping(chk, entry.get("match"), entry.line_of("match"), f"{path}.match")
        if match_raw is None:
            continue
        match: dict[str, tuple[str, ...]] = {}
        for key, value in match_raw.items():
            values = value if isinstance(value, list) else [value]
            match["id" if key == "sensor" else str(key)] = tuple(str(v) for v in values)
        spec_raw = _mapping(chk, entry[kind], entry.line_of(kind), f"{path}.{kind}")
        if spec_raw is None:
            continue
        if kind == "threshold":
            threshold = _threshold(chk, spec_raw, f"{path}.threshold")
            if threshold is not None:
                rules.append(Rule(rule_id, match, threshold, entry.line))
            continue
        spec = PARSERS[kind](chk, spec_raw, f"{path}.{kind}")
        if spec is not None:
            rules.append(Rule(rule_id, match, None, entry.line, kind=kind, spec=spec))
    return rules


TOP_LEVEL = ("mqtt", "http", "storage", "influx", "alerting", "gateways", "sensors", "sensor_files", "rules")


def parse_config(text: str, file: str = "<config>", base: Path | None = None) -> Config:
    """Build a Config from YAML text; raises ConfigError listing every problem."""
    chk = _Checker(file)
    base = base or Path.cwd()
    try:
        raw = load_yaml(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([Problem(file, mark.line + 1 if mark else None, "", f"YAML syntax: {problem}")]) from None
    if raw is None:
        raw = LineDict()
    if not isinstance(raw, dict):
        raise ConfigError([Problem(file, 1, "", "the configuration must be a YAML mapping")])
    _unknown_keys(chk, raw, TOP_LEVEL, "")

    def section(name: str) -> LineDict:
        return _mapping(chk, raw.get(name), raw.line_of(name), name) or LineDict()

    mqtt = _mqtt(chk, section("mqtt"))
    http = _http(chk, section("http"))
    storage = _storage(chk, section("storage"), base)
    influx = _influx(chk, section("influx")) if raw.get("influx") else None
    alerting_raw = section("alerting")
    _unknown_keys(chk, alerting_raw, ("backfill_after", *_ALERT_MANAGEMENT_KEYS), "alerting")
    management = parse_alert_management(chk, alerting_raw)
    backfill = _number(chk, alerting_raw.get("backfill_after", 300), alerting_raw.line_of("backfill_after"),
                       "alerting.backfill_after", positive=True) or 300.0
    gateways = _gateways(chk, raw.get("gateways"), raw.line_of("gateways"))
    gateway_ids = {g.id for g in gateways}

    sensors = _sensor_list(chk, raw.get("sensors"), "sensors", gateway_ids)
    files = raw.get("sensor_files") or []
    if not isinstance(files, list):
        chk.error(raw.line_of("sensor_files"), "sensor_files", "expected a list of paths")
        files = []
    for i, name in enumerate(files):
        path = base / str(name)
        line = _line(files, i)
        if not path.is_file():
            chk.error(line, f"sensor_files[{i}]", f"file not found: {path}")
            continue
        display = str(path)
        if path.suffix.lower() == ".csv":
            sensors += _sensors_from_csv(chk, path, display, gateway_ids)
        elif path.suffix.lower() in (".yaml", ".yml"):
            sensors += _sensors_from_yaml_file(chk, path, display, gateway_ids)
        else:
            chk.error(line, f"sensor_files[{i}]", f"unsupported file type {path.suffix!r} (use .csv or .yaml)")
    seen: dict[str, int] = {}
    for sensor in sensors:
        if sensor.id in seen:
            chk.error(None, f"sensors.{sensor.id}", "duplicate sensor id")
        seen[sensor.id] = 1

    rules = _rules(chk, raw.get("rules"), raw.line_of("rules"))
    thresholds = {r.id for r in rules if r.kind == "threshold"}
    for rule in rules:
        target = getattr(rule.spec, "forecast_rule", None)
        if target is not None and target not in thresholds:
            chk.error(rule.line, f"rules[{rule.id}].trend.forecast.threshold",
                      f"{target!r} is not a threshold rule of this file")
    if chk.problems:
        raise ConfigError(chk.problems)

    owners = {g.id: g.owner for g in gateways}
    warnings = []
    for rule in rules:
        if not any(rule.matches(s, owners.get(s.gateway), m) for s in sensors for m in s.metrics):
            warnings.append(f"{file}:{rule.line}: rules[{rule.id}]: matches no sensor metric")
    return Config(mqtt=mqtt, http=http, storage=storage, influx=influx,
                  alerting=AlertingSettings(backfill_after_s=backfill, management=management), gateways=tuple(gateways),
                  sensors=tuple(sensors), rules=tuple(rules), source=None, warnings=tuple(warnings))


def load_config(path: str | os.PathLike[str]) -> Config:
    """Load and validate a configuration file; raises ConfigError."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([Problem(str(path), None, "", f"cannot read: {exc.strerror or exc}")]) from None
    config = parse_config(text, str(path), base=path.resolve().parent)
    return replace(config, source=path)
