"""Labels of an alert and matchers over them: the common language of routes, silences and
inhibition rules.

An alert's labels are its identifying fields (rule, sensor, metric, domain, asset, gateway,
owner, level, kind, ...) plus the catalogue fields of its sensor (type, district, main, ...),
all as text. A matcher names a label and the values it accepts; a set of matchers matches
an alert when every matcher does. As in Alertmanager, a label the alert does not have has
the empty value.

Matchers are written the same way in the configuration and in the API, like a rule's
`match`:

    {domain: gas}                              equal
    {level: [red, orange]}                     any of
    {kind: {not: [fault, silent]}}             none of
    {asset: {regex: "WM-0[0-9]+"}}             the whole value matches the regular expression
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

LABEL_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")

#: Alert fields that become labels (CONTRACT §5 plus the detectors' extras).
ALERT_LABELS = ("id", "rule", "sensor", "metric", "domain", "asset", "gateway", "owner", "level", "peak_level",
                "condition", "workflow", "kind", "confidence", "fault")


@dataclass(frozen=True)
class Matcher:
    """Accepts a label value that is one of `values` (or none of them when `negate`), or
    that fully matches `regex`."""

    name: str
    values: tuple[str, ...] = ()
    negate: bool = False
    regex: str | None = None

    def matches(self, labels: Mapping[str, str]) -> bool:
        value = labels.get(self.name, "")
        if self.regex is not None:
            return _compiled(self.regex).fullmatch(value) is not None
        return (value in self.values) != self.negate

    def to_json(self) -> Any:
        if self.regex is not None:
            return {"regex": self.regex}
        values: Any = self.values[0] if len(self.values) == 1 else list(self.values)
        return {"not": values} if self.negate else values


@dataclass(frozen=True)
class Matchers:
    """All of `matchers` must match; no matchers match every alert."""

    matchers: tuple[Matcher, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(m.matches(labels) for m in self.matchers)

    def to_json(self) -> dict:
        return {m.name: m.to_json() for m in self.matchers}

    def names(self) -> set[str]:
        return {m.name for m in self.matchers}


_REGEX_CACHE: dict[str, re.Pattern] = {}


def _compiled(pattern: str) -> re.Pattern:
    compiled = _REGEX_CACHE.get(pattern)
    if compiled is None:
        compiled = _REGEX_CACHE[pattern] = re.compile(pattern)
    return compiled


def _scalar(value: Any) -> str:
    if value is None or isinstance(value, dict | list | bool):
        raise ValueError(f"expected text, got {value!r}")
    return str(value)


def matcher_from(name: Any, value: Any) -> Matcher:
    """One matcher from its written form; ValueError says what is wrong."""
    if not isinstance(name, str) or not LABEL_PATTERN.match(name):
        raise ValueError(f"label name {name!r} must match [A-Za-z_][A-Za-z0-9_]*")
    if isinstance(value, dict):
        if len(value) != 1 or next(iter(value)) not in ("not", "regex"):
            raise ValueError("expected a value, a list of values, {not: [...]} or {regex: ...}")
        key, inner = next(iter(value.items()))
        if key == "regex":
            pattern = _scalar(inner)
            try:
                _compiled(pattern)
            except re.error as exc:
                raise ValueError(f"invalid regular expression {pattern!r}: {exc}") from None
            return Matcher(name, regex=pattern)
        values = inner if isinstance(inner, list) else [inner]
        return Matcher(name, tuple(_scalar(v) for v in values), negate=True)
    values = value if isinstance(value, list) else [value]
    if not values:
        raise ValueError("expected at least one value")
    return Matcher(name, tuple(_scalar(v) for v in values))


def matchers_from(raw: Any) -> Matchers:
    """Matchers from a mapping of label name to accepted values; ValueError names the label."""
    if not isinstance(raw, dict):
        raise ValueError(f"expected a mapping of label name to values, got {type(raw).__name__}")
    found = []
    for name, value in raw.items():
        try:
            found.append(matcher_from(name, value))
        except ValueError as exc:
            raise ValueError(f"{name}: {exc}") from None
    return Matchers(tuple(found))


class Labeler:
    """Labels of alerts, with the catalogue fields of their sensors."""

    def __init__(self, sensor_fields: Mapping[str, Mapping[str, str]] | None = None):
        self._sensor_fields = sensor_fields or {}

    @classmethod
    def for_catalogue(cls, sensors) -> Labeler:
        """From catalogue sensors (`lifeline.config.Sensor`): type and every extra field."""
        return cls({s.id: {"type": s.type, **s.extra} for s in sensors})

    def labels(self, alert: Mapping[str, Any]) -> dict[str, str]:
        labels = {name: str(alert[name]) for name in ALERT_LABELS if alert.get(name) is not None}
        for name, value in self._sensor_fields.get(alert.get("sensor", ""), {}).items():
            labels.setdefault(name, value)
        return labels
