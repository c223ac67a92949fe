"""An alert and its transitions (CONTRACT §5).

An Alert is the one open record per (rule, sensor, metric): detector findings move its
`level` and `condition`; operators move its `workflow` from new to closed. Every change is
a Transition, numbered by a sequence that is gapless across all alerts, which is what the
websocket's `?since=` resume relies on.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

#: Events caused by detectors, then by operators.
DETECTOR_EVENTS = ("raised", "escalated", "deescalated", "cleared", "reactivated")
OPERATOR_EVENTS = ("acknowledged", "dispatched", "closed")
#: Events of alert management (alerting/deadlines.py, alerting/flapping.py): annotations only.
MANAGEMENT_EVENTS = ("overdue", "flapping", "settled")
WORKFLOW = ("new", "acknowledged", "dispatched", "closed")


@dataclass
class Alert:
    id: str
    rule: str
    sensor: str
    metric: str
    domain: str
    asset: str
    gateway: str
    owner: str
    level: str
    peak_level: str
    condition: str  # active | cleared
    workflow: str  # new | acknowledged | dispatched | closed
    value: float
    threshold: float
    message: str
    raised_at: int  # reading time, epoch ms
    updated_at: int  # reading time, epoch ms
    dispatched_to: str | None = None
    extra: dict = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.rule, self.sensor, self.metric)

    @property
    def is_open(self) -> bool:
        return self.workflow != "closed"

    def to_json(self) -> dict:
        """The alert object of the API, websocket and MQTT alert topic.

        Built field by field rather than with `dataclasses.asdict`, whose recursive copy was
        the alert pipeline's largest cost at a thousand events a second. Containers in `extra`
        (a forecast, a location) are copied one level deep: they hold plain values."""
        body = {name: getattr(self, name) for name in _JSON_FIELDS}
        if self.dispatched_to is None:
            del body["dispatched_to"]
        for name, value in self.extra.items():
            body[name] = value.copy() if isinstance(value, dict | list) else value
        return body


#: Alert's fields in declaration order, as the JSON object has them (then its extras).
_JSON_FIELDS = tuple(f.name for f in fields(Alert) if f.name != "extra")


@dataclass(frozen=True)
class Transition:
    """One step in an alert's history; `at` is wall-clock epoch ms."""

    seq: int
    alert_id: str
    event: str
    at: int
    by: str
    note: str
    level: str
    value: float
    to: str | None = None

    def history_entry(self) -> dict:
        entry = {"seq": self.seq, "event": self.event, "at": self.at, "by": self.by, "note": self.note,
                 "level": self.level, "value": self.value}
        if self.to is not None:
            entry["to"] = self.to
        return entry
