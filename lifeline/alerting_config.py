"""The alert-management part of the `alerting:` section: deadlines, escalation, receivers,
routes, inhibition rules, flapping, delivery retries.

Validated once, at load, with the file and line of every problem; the runtime modules in
`alerting/` then trust these frozen values. Durations are seconds, or text such as `90s`,
`5m`, `1h30m`, `24h`, `2d`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any

from alerting.labels import LABEL_PATTERN, Matcher, Matchers, matcher_from
from lifeline.config_checks import Checker, mapping, number, text, unknown_keys
from lifeline.levels import LEVELS
from lifeline.yamlsource import LineDict, LineList

NAME_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}

#: Keys of `alerting:` this module owns (config.py owns `backfill_after`).
KEYS = ("deadlines", "escalation", "receivers", "routes", "inhibit_rules", "flapping", "retry", "operators_on_duty")


@dataclass(frozen=True)
class Deadline:
    """Response deadlines of one level, seconds from the moment an alert reaches the level;
    None: no deadline for that step."""

    acknowledge_s: float | None = None
    dispatch_s: float | None = None

    def of(self, stage: str) -> float | None:
        return self.acknowledge_s if stage == "acknowledge" else self.dispatch_s


#: Practice values (DOMAIN.md: 7x24 centre, about 7 minutes average response): configurable.
DEFAULT_DEADLINES = {
    "red": Deadline(acknowledge_s=300, dispatch_s=900),
    "orange": Deadline(acknowledge_s=900, dispatch_s=3600),
    "yellow": Deadline(acknowledge_s=3600, dispatch_s=4 * 3600),
    "blue": Deadline(acknowledge_s=24 * 3600),
}


@dataclass(frozen=True)
class ReceiverSpec:
    """Where notifications go: apprise URLs, a plain JSON webhook, or an MQTT topic."""

    name: str
    urls: tuple[str, ...] = ()  # apprise: json://, mailto://, dingtalk://, wecom://, feishu://, ...
    webhook: str | None = None  # http(s) URL receiving the notification as JSON (POST)
    mqtt_topic: str | None = None  # published with QoS 1 on the service's broker
    timeout_s: float = 10.0

    @property
    def kind(self) -> str:
        return "apprise" if self.urls else "webhook" if self.webhook else "mqtt"


@dataclass(frozen=True)
class RouteSpec:
    """Alerts matching `match` go to `receivers`, grouped by `group_by` labels."""

    name: str
    match: Matchers
    receivers: tuple[str, ...]
    group_by: tuple[str, ...] = ("asset",)
    group_wait_s: float = 5.0  # collect an incident's alerts this long before the first notification
    repeat_s: float | None = None  # repeat while active and unacknowledged; None: never
    send_resolved: bool = False  # also notify when the condition clears
    continue_matching: bool = False  # also try the routes after this one


@dataclass(frozen=True)
class InhibitRuleSpec:
    """An InhibitRule: while a source alert is open and active, target alerts that share the
    values of every `equal` label with it notify no one (they are still recorded)."""

    source: Matchers
    target: Matchers
    equal: tuple[str, ...]
    name: str = ""


def _hazard_kinds() -> Matcher:
    return Matcher("kind", ("fault", "silent", "gateway_silent"), negate=True)


DEFAULT_INHIBIT_RULES = (
    InhibitRuleSpec(Matchers((Matcher("kind", ("gateway_silent",)),)), Matchers((Matcher("kind", ("silent",)),)),
                    ("gateway",), "gateway-offline-inhibits-sensor-silence"),
    InhibitRuleSpec(Matchers((Matcher("kind", ("fault",)),)), Matchers((_hazard_kinds(),)),
                    ("sensor",), "sensor-fault-inhibits-its-hazards"),
    InhibitRuleSpec(Matchers((Matcher("level", ("red",)),)), Matchers((Matcher("level", ("yellow",)),)),
                    ("asset",), "red-inhibits-yellow-on-the-asset"),
)


@dataclass(frozen=True)
class FlappingSpec:
    """Flapping (Kapacitor-style): more than `changes` detector transitions within `window_s`;
    it settles once at most half as many happened within the window."""

    changes: int = 6
    window_s: float = 600.0


@dataclass(frozen=True)
class RetrySpec:
    """Failed deliveries are retried after `initial_s`, doubling up to `max_s`, until
    `give_up_s` after the notification was created."""

    initial_s: float = 2.0
    max_s: float = 300.0
    give_up_s: float = 3600.0


@dataclass(frozen=True)
class AlertManagementSettings:
    # Off unless configured: overdue/flapping are events beyond CONTRACT §6's list, so a
    # deployment opts in (`deadlines: true` takes the practice values above).
    deadlines: dict[str, Deadline] = field(default_factory=dict)
    escalation: tuple[str, ...] = ()  # receiver of tier 1, tier 2, ... (missed deadlines)
    receivers: tuple[ReceiverSpec, ...] = ()
    routes: tuple[RouteSpec, ...] = ()
    inhibit_rules: tuple[InhibitRuleSpec, ...] = DEFAULT_INHIBIT_RULES
    flapping: FlappingSpec | None = None
    retry: RetrySpec = RetrySpec()
    operators_on_duty: int = 1  # alarm-load rates per operator (ISA-18.2: about 1 per 10 min)


# -- field checks --------------------------------------------------------------------------------
def duration(chk: Checker, value: Any, line: int | None, path: str, *, allow_zero: bool = False) -> float | None:
    """Seconds from a number or a text like `90s`, `5m`, `1h30m`, `2d`."""
    seconds: float | None
    if isinstance(value, str):
        text_value = value.strip().replace(" ", "")
        parts = _DURATION_PART.findall(text_value)
        if not parts or "".join(n + u for n, u in parts) != text_value:
            chk.error(line, path, f"expected seconds or a duration like 90s, 5m, 1h30m, got {value!r}")
            return None
        seconds = sum(float(n) * _UNIT_S[u] for n, u in parts)
    else:
        seconds = number(chk, value, line, path)
        if seconds is None:
            return None
    if seconds < 0 or (seconds == 0 and not allow_zero):
        chk.error(line, path, f"must be {'0 or more' if allow_zero else 'greater than 0'}, got {value!r}")
        return None
    return seconds


def _flag(chk: Checker, value: Any, line: int | None, path: str) -> bool | None:
    if not isinstance(value, bool):
        chk.error(line, path, f"expected true or false, got {value!r}")
        return None
    return value


def _name_list(chk: Checker, raw: Any, line: int | None, path: str) -> tuple[str, ...] | None:
    items = raw if isinstance(raw, list) else [raw]
    names = []
    for i, item in enumerate(items):
        where = raw.line_of(i) if isinstance(raw, LineList) else line
        name = text(chk, item, where, f"{path}[{i}]" if isinstance(raw, list) else path)
        if name is None:
            return None
        names.append(name)
    return tuple(names)


def matchers(chk: Checker, raw: Any, line: int | None, path: str, *, required: bool = False) -> Matchers | None:
    entry = mapping(chk, raw, line, path)
    if entry is None:
        return None
    if required and not entry:
        chk.error(line, path, "needs at least one matcher")
        return None
    found = []
    ok = True
    for name, value in entry.items():
        try:
            matcher = matcher_from(name, value)
        except ValueError as exc:
            chk.error(entry.line_of(name), f"{path}.{name}", str(exc))
            ok = False
            continue
        if name in ("level", "peak_level") and matcher.regex is None:
            unknown = [v for v in matcher.values if v not in LEVELS]
            if unknown:
                chk.error(entry.line_of(name), f"{path}.{name}",
                          f"unknown level {unknown[0]!r} (expected {', '.join(LEVELS)})")
                ok = False
                continue
        found.append(matcher)
    return Matchers(tuple(found)) if ok else None


def _label_names(chk: Checker, raw: Any, line: int | None, path: str) -> tuple[str, ...] | None:
    names = _name_list(chk, raw, line, path)
    if names is None:
        return None
    for name in names:
        if not LABEL_PATTERN.match(name):
            chk.error(line, path, f"label name {name!r} must match [A-Za-z_][A-Za-z0-9_]*")
            return None
    return names


# -- sections -------------------------------------------------------------------------------------
def _deadlines(chk: Checker, raw: Any, line: int | None) -> dict[str, Deadline] | None:
    if raw is False:
        return {}
    entry = mapping(chk, raw, line, "alerting.deadlines")
    if entry is None:
        return None
    deadlines: dict[str, Deadline] = {}
    for colour, spec in entry.items():
        path = f"alerting.deadlines.{colour}"
        if colour not in LEVELS:
            chk.error(entry.line_of(colour), path, f"unknown level (expected {', '.join(LEVELS)})")
            continue
        steps = mapping(chk, spec, entry.line_of(colour), path)
        if steps is None:
            continue
        unknown_keys(chk, steps, ("acknowledge", "dispatch"), path)
        values = {}
        for step in ("acknowledge", "dispatch"):
            if steps.get(step) is not None:
                values[f"{step}_s"] = duration(chk, steps[step], steps.line_of(step), f"{path}.{step}")
        if None in values.values():
            continue
        deadline = Deadline(**values)
        if deadline.acknowledge_s and deadline.dispatch_s and deadline.dispatch_s < deadline.acknowledge_s:
            chk.error(steps.line_of("dispatch"), f"{path}.dispatch", "must not be earlier than acknowledge")
            continue
        deadlines[colour] = deadline
    return deadlines


def _receivers(chk: Checker, raw: Any, line: int | None) -> list[ReceiverSpec]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        chk.error(line, "alerting.receivers", "expected a list")
        return []
    receivers: list[ReceiverSpec] = []
    seen: set[str] = set()
    for i, item in enumerate(raw):
        path = f"alerting.receivers[{i}]"
        entry = mapping(chk, item, raw.line_of(i) if isinstance(raw, LineList) else line, path)
        if entry is None:
            continue
        unknown_keys(chk, entry, ("name", "urls", "webhook", "mqtt_topic", "timeout"), path)
        name = text(chk, entry.get("name"), entry.line_of("name"), f"{path}.name")
        if name is None:
            continue
        if not NAME_PATTERN.match(name):
            chk.error(entry.line_of("name"), f"{path}.name", f"{name!r} must match [A-Za-z0-9_.-]{{1,64}}")
            continue
        if name in seen:
            chk.error(entry.line_of("name"), f"{path}.name", f"duplicate receiver {name!r}")
            continue
        seen.add(name)
        path = f"alerting.receivers[{name}]"
        kinds = [k for k in ("urls", "webhook", "mqtt_topic") if entry.get(k)]
        if len(kinds) != 1:
            chk.error(entry.line, path, "needs exactly one of urls (apprise), webhook or mqtt_topic")
            continue
        timeout = duration(chk, entry.get("timeout", 10), entry.line_of("timeout"), f"{path}.timeout")
        kind = kinds[0]
        value = entry[kind]
        if kind == "urls":
            urls = _name_list(chk, value, entry.line_of("urls"), f"{path}.urls")
            if urls is None or not _apprise_urls_ok(chk, urls, entry.line_of("urls"), f"{path}.urls"):
                continue
            spec = ReceiverSpec(name, urls=urls)
        elif kind == "webhook":
            url = text(chk, value, entry.line_of("webhook"), f"{path}.webhook")
            if url is None:
                continue
            if not re.match(r"^https?://[^/\s]+", url):
                chk.error(entry.line_of("webhook"), f"{path}.webhook", f"expected an http(s):// URL, got {url!r}")
                continue
            spec = ReceiverSpec(name, webhook=url)
        else:
            topic = text(chk, value, entry.line_of("mqtt_topic"), f"{path}.mqtt_topic")
            if topic is None:
                continue
            if any(c in topic for c in "+#") or topic.startswith("/") or topic.endswith("/"):
                chk.error(entry.line_of("mqtt_topic"), f"{path}.mqtt_topic",
                          "must be a topic without '+', '#' or a leading or trailing '/'")
                continue
            spec = ReceiverSpec(name, mqtt_topic=topic)
        if timeout is None:
            continue
        receivers.append(ReceiverSpec(spec.name, spec.urls, spec.webhook, spec.mqtt_topic, timeout))
    return receivers


def _apprise_urls_ok(chk: Checker, urls: tuple[str, ...], line: int | None, path: str) -> bool:
    import apprise  # only when apprise receivers are configured: it takes a moment to import

    ok = True
    for url in urls:
        if not apprise.Apprise().add(url):
            chk.error(line, path, f"apprise does not understand {redacted_url(url)!r} (see the apprise URL formats)")
            ok = False
    return ok


def redacted_url(url: str) -> str:
    """A URL with any password replaced, fit for error messages and logs."""
    return re.sub(r"(://[^:/@\s]+:)[^@/\s]+@", r"\1***@", url)


def _routes(chk: Checker, raw: Any, line: int | None, receivers: set[str]) -> list[RouteSpec]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        chk.error(line, "alerting.routes", "expected a list")
        return []
    routes: list[RouteSpec] = []
    seen: set[str] = set()
    for i, item in enumerate(raw):
        path = f"alerting.routes[{i}]"
        entry = mapping(chk, item, raw.line_of(i) if isinstance(raw, LineList) else line, path)
        if entry is None:
            continue
        unknown_keys(chk, entry, ("name", "match", "receivers", "group_by", "group_wait", "repeat_interval",
                                  "send_resolved", "continue"), path)
        name = text(chk, entry.get("name", f"route-{i + 1}"), entry.line_of("name"), f"{path}.name")
        if name is None:
            continue
        if name in seen:
            chk.error(entry.line_of("name"), f"{path}.name", f"duplicate route name {name!r}")
            continue
        seen.add(name)
        match = matchers(chk, entry.get("match"), entry.line_of("match"), f"{path}.match")
        names = None
        if "receivers" not in entry:
            chk.error(entry.line, f"{path}.receivers", "missing")
        else:
            names = _name_list(chk, entry["receivers"], entry.line_of("receivers"), f"{path}.receivers")
            unknown = [n for n in names or () if n not in receivers]
            if unknown:
                chk.error(entry.line_of("receivers"), f"{path}.receivers",
                          f"unknown receiver {unknown[0]!r} (declare it under alerting.receivers)")
                names = None
        group_by = _label_names(chk, entry.get("group_by", ["asset"]), entry.line_of("group_by"), f"{path}.group_by")
        wait = duration(chk, entry.get("group_wait", 5), entry.line_of("group_wait"), f"{path}.group_wait",
                        allow_zero=True)
        repeat = None
        if entry.get("repeat_interval") is not None:
            repeat = duration(chk, entry["repeat_interval"], entry.line_of("repeat_interval"),
                              f"{path}.repeat_interval")
            if repeat is None:
                continue
        resolved = _flag(chk, entry.get("send_resolved", False), entry.line_of("send_resolved"),
                         f"{path}.send_resolved")
        cont = _flag(chk, entry.get("continue", False), entry.line_of("continue"), f"{path}.continue")
        if None in (match, names, group_by, wait, resolved, cont):
            continue
        routes.append(RouteSpec(name=name, match=match, receivers=names, group_by=group_by, group_wait_s=wait,
                                repeat_s=repeat, send_resolved=resolved, continue_matching=cont))
    return routes


def _inhibit_rules(chk: Checker, raw: Any, line: int | None) -> list[InhibitRuleSpec] | None:
    if raw is None:
        return None
    if not isinstance(raw, list):
        chk.error(line, "alerting.inhibit_rules", "expected a list")
        return None
    rules = []
    for i, item in enumerate(raw):
        path = f"alerting.inhibit_rules[{i}]"
        entry = mapping(chk, item, raw.line_of(i) if isinstance(raw, LineList) else line, path)
        if entry is None:
            continue
        unknown_keys(chk, entry, ("name", "source", "target", "equal"), path)
        for key in ("source", "target"):
            if key not in entry:
                chk.error(entry.line, f"{path}.{key}", "missing")
        if "source" not in entry or "target" not in entry:
            continue
        source = matchers(chk, entry["source"], entry.line_of("source"), f"{path}.source", required=True)
        target = matchers(chk, entry["target"], entry.line_of("target"), f"{path}.target", required=True)
        equal = _label_names(chk, entry.get("equal", []), entry.line_of("equal"), f"{path}.equal")
        name = text(chk, entry.get("name", f"inhibit-{i + 1}"), entry.line_of("name"), f"{path}.name")
        if None in (source, target, equal, name):
            continue
        rules.append(InhibitRuleSpec(source, target, equal, name))
    return rules


def _flapping(chk: Checker, raw: Any, line: int | None) -> FlappingSpec | None:
    if raw is False or raw is None:
        return None
    if raw is True:
        return FlappingSpec()
    entry = mapping(chk, raw, line, "alerting.flapping")
    if entry is None:
        return FlappingSpec()
    unknown_keys(chk, entry, ("changes", "window"), "alerting.flapping")
    changes = number(chk, entry.get("changes", 6), entry.line_of("changes"), "alerting.flapping.changes")
    if changes is not None and (changes != int(changes) or changes < 2):
        chk.error(entry.line_of("changes"), "alerting.flapping.changes", f"expected a whole number >= 2, got {changes}")
        changes = None
    window = duration(chk, entry.get("window", 600), entry.line_of("window"), "alerting.flapping.window")
    if changes is None or window is None:
        return FlappingSpec()
    return FlappingSpec(changes=int(changes), window_s=window)


def _retry(chk: Checker, raw: Any, line: int | None) -> RetrySpec:
    entry = mapping(chk, raw, line, "alerting.retry") or LineDict()
    unknown_keys(chk, entry, ("initial", "max", "give_up_after"), "alerting.retry")
    default = RetrySpec()
    initial = duration(chk, entry.get("initial", default.initial_s), entry.line_of("initial"), "alerting.retry.initial")
    longest = duration(chk, entry.get("max", default.max_s), entry.line_of("max"), "alerting.retry.max")
    give_up = duration(chk, entry.get("give_up_after", default.give_up_s), entry.line_of("give_up_after"),
                       "alerting.retry.give_up_after")
    if None in (initial, longest, give_up):
        return default
    return RetrySpec(initial_s=initial, max_s=max(initial, longest), give_up_s=give_up)


def parse_alert_management(chk: Checker, raw: LineDict) -> AlertManagementSettings:
    """The alert-management keys of `alerting:` (see KEYS); unknown keys are config.py's to report."""
    deadlines = None
    if raw.get("deadlines") is True:
        deadlines = dict(DEFAULT_DEADLINES)
    elif "deadlines" in raw:
        deadlines = _deadlines(chk, raw.get("deadlines"), raw.line_of("deadlines"))
    receivers = _receivers(chk, raw.get("receivers"), raw.line_of("receivers"))
    names = {r.name for r in receivers}
    escalation: tuple[str, ...] = ()
    if raw.get("escalation") is not None:
        escalation = _name_list(chk, raw["escalation"], raw.line_of("escalation"), "alerting.escalation") or ()
        unknown = [n for n in escalation if n not in names]
        if unknown:
            chk.error(raw.line_of("escalation"), "alerting.escalation",
                      f"unknown receiver {unknown[0]!r} (declare it under alerting.receivers)")
    routes = _routes(chk, raw.get("routes"), raw.line_of("routes"), names)
    inhibit = _inhibit_rules(chk, raw.get("inhibit_rules"), raw.line_of("inhibit_rules"))
    flapping = _flapping(chk, raw.get("flapping"), raw.line_of("flapping"))
    retry = _retry(chk, raw.get("retry"), raw.line_of("retry"))
    operators = number(chk, raw.get("operators_on_duty", 1), raw.line_of("operators_on_duty"),
                       "alerting.operators_on_duty", positive=True) or 1
    settings = AlertManagementSettings(escalation=escalation, receivers=tuple(receivers), routes=tuple(routes),
                                       flapping=flapping, retry=retry, operators_on_duty=max(1, int(operators)))
    if deadlines is not None:
        settings = replace(settings, deadlines=deadlines)
    if inhibit is not None:
        settings = replace(settings, inhibit_rules=tuple(inhibit))
    return settings
