"""What a notification says: one title and a text body for people (apprise: e-mail, chat
apps) and a JSON payload for machines (webhooks, MQTT), for a group of alerts."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from lifeline.levels import LEVEL_NUMBER, ROMAN

KINDS = ("firing", "repeat", "resolved", "escalation")
_PREFIX = {"firing": "", "repeat": "STILL UNACKNOWLEDGED: ", "resolved": "CLEARED: ", "escalation": "OVERDUE: "}


@dataclass(frozen=True)
class Notification:
    """One message to one receiver about the alerts of one incident."""

    receiver: str
    route: str  # the route's name; "escalation" for missed deadlines
    kind: str  # firing | repeat | resolved | escalation
    group: dict  # label -> value shared by the alerts (the incident)
    alerts: tuple[dict, ...]  # alert objects (CONTRACT §5), most severe first
    tier: int | None = None  # escalation tier for kind "escalation"
    note: str = ""  # why (escalation: which deadline was missed)

    @property
    def alert_ids(self) -> list[str]:
        return [a["id"] for a in self.alerts]

    @property
    def title(self) -> str:
        first = self.alerts[0]
        level = first.get("level", "")
        where = " ".join(str(v) for v in (first.get("domain"), first.get("asset")) if v)
        head = f"{_PREFIX.get(self.kind, '')}{level.upper()} {ROMAN.get(level, '')} {where}: {first.get('message', '')}"
        if self.kind == "escalation":
            head += f" - {self.note} (tier {self.tier})" if self.note else f" (tier {self.tier})"
        more = len(self.alerts) - 1
        return head + (f" (+{more} more)" if more > 0 else "")

    @property
    def body(self) -> str:
        lines = []
        if self.kind == "escalation":
            lines.append(f"Response deadline missed, escalated to tier {self.tier}: {self.note}")
        elif self.kind == "repeat":
            lines.append("These alerts are still active and nobody has acknowledged them.")
        for a in self.alerts:
            raised = _time(a.get("raised_at"))
            flags = [a.get("condition", ""), a.get("workflow", "")]
            if a.get("confidence") == "low":
                flags.append("low confidence (sensor fault)")
            if a.get("flapping"):
                flags.append("flapping")
            if a.get("overdue"):
                flags.append("overdue")
            lines.append(f"[{a.get('level', '').upper()} {ROMAN.get(a.get('level', ''), '')}] {a.get('id')} "
                         f"{a.get('domain', '')} {a.get('asset', '')} {a.get('sensor', '')} {a.get('metric', '')}: "
                         f"{a.get('message', '')} | since {raised} | {', '.join(f for f in flags if f)}")
        return "\n".join(lines)

    def payload(self, notification_id: int, created_at: int) -> dict:
        body = {"id": notification_id, "receiver": self.receiver, "route": self.route, "kind": self.kind,
                "group": self.group, "title": self.title, "message": self.body, "alerts": list(self.alerts),
                "created_at": created_at}
        if self.tier is not None:
            body["tier"] = self.tier
        return body


def most_severe_first(alerts: Sequence[dict]) -> tuple[dict, ...]:
    return tuple(sorted(alerts, key=lambda a: (-LEVEL_NUMBER.get(a.get("level", ""), 0), a.get("raised_at", 0),
                                               a.get("id", ""))))


def _time(ms) -> str:
    if not isinstance(ms, int | float):
        return "?"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
