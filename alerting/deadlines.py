"""Response deadlines: an alert must be acknowledged, then dispatched, within a time that
depends on its level (configurable: e.g. red 5 min / 15 min, blue 24 h).

The clock of a level starts when the alert first reaches it, on the wall clock of the
transition that got it there; an alert that escalates gets the tighter deadline of its new
level if that falls due earlier. A step is met once the workflow has moved past it
(acknowledged, dispatched or closed). A missed step makes the alert overdue: the dispatcher
records an `overdue` transition through the AlertBook (so the sequence stays gapless and the
dashboard sees it), with the next escalation tier, and notifies that tier.

Everything here is derived from persisted transitions and the alert's persisted extras
(`overdue_stages`), so deadlines survive restarts, and a deadline missed while the service
was down is reported right after it starts. Backfilled alerts (history from buffered
readings) have no deadlines.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from alerting.alert import Transition
from lifeline.alerting_config import Deadline

STAGES = ("acknowledge", "dispatch")
#: Workflow states in which a stage is met.
MET = {"acknowledge": ("acknowledged", "dispatched", "closed"), "dispatch": ("dispatched", "closed")}
#: Transitions that bring an alert to a level (and so start that level's clocks).
LEVEL_EVENTS = ("raised", "escalated", "deescalated", "reactivated")


@dataclass(frozen=True)
class Overdue:
    """A step that was not done in time."""

    alert_id: str
    stage: str  # acknowledge | dispatch
    due_at: int  # wall-clock epoch ms
    level: str  # whose budget ran out
    budget_s: float
    tier: int  # escalation tier: 1 for the first missed step of this alert, then 2, ...

    def note(self) -> str:
        verb = "acknowledged" if self.stage == "acknowledge" else "dispatched"
        return f"not {verb} within {format_duration(self.budget_s)} ({self.level} deadline)"


@dataclass
class _Schedule:
    workflow: str
    due: dict[str, tuple[int, str, float]] = field(default_factory=dict)  # stage -> (due ms, level, budget s)
    marked: set[str] = field(default_factory=set)  # stages already reported overdue


def format_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size} {unit}"
    return f"{seconds} s" if seconds < 60 else f"{seconds // 60} min {seconds % 60} s"


class DeadlineWatch:
    """The deadlines of every open alert; `due(now)` lists the steps missed by `now`."""

    def __init__(self, deadlines: Mapping[str, Deadline]):
        self.deadlines = dict(deadlines)
        self._schedules: dict[str, _Schedule] = {}
        #: Alerts whose whole history has been folded in (with or without a deadline), so
        #: that a new level transition is folded in alone (`advance`).
        self._tracked: set[str] = set()

    def __len__(self) -> int:
        return len(self._schedules)

    def track(self, alert: Mapping, history: Iterable[Transition]) -> None:
        """(Re)compute an alert's deadlines from its persisted history."""
        self._tracked.discard(alert["id"])
        for transition in [None, *history]:
            self._fold(alert, transition)

    def advance(self, alert: Mapping, transition: Transition) -> bool:
        """Fold one new level transition into an alert tracked before: its deadlines are the
        earliest over its level transitions, so one more transition is one more minimum (an
        alert that flips levels many times a minute would otherwise re-read a growing history
        at every flip). False when the alert is not tracked: `track` it from its history."""
        if alert["id"] not in self._tracked:
            return False
        self._fold(alert, transition)
        return True

    def _fold(self, alert: Mapping, transition: Transition | None) -> None:
        """Add one transition (None: start afresh) to the alert's schedule."""
        alert_id = alert["id"]
        if alert.get("workflow") == "closed" or alert.get("backfilled"):
            self.forget(alert_id)
            return
        schedule = self._schedules.get(alert_id) if transition is not None else None
        if schedule is None:
            schedule = _Schedule(alert.get("workflow", "new"))
        schedule.workflow = alert.get("workflow", "new")
        if transition is not None and transition.event in LEVEL_EVENTS:
            deadline = self.deadlines.get(transition.level)
            for stage in STAGES if deadline is not None else ():
                budget = deadline.of(stage)
                if budget is None:
                    continue
                due = transition.at + int(budget * 1000)
                if stage not in schedule.due or due < schedule.due[stage][0]:
                    schedule.due[stage] = (due, transition.level, budget)
        schedule.marked = set(alert.get("overdue_stages") or ())
        self._tracked.add(alert_id)
        if schedule.due:
            self._schedules[alert_id] = schedule
        else:
            self._schedules.pop(alert_id, None)

    def update(self, alert: Mapping) -> None:
        """An alert whose workflow or marks changed without reaching a new level."""
        schedule = self._schedules.get(alert["id"])
        if schedule is None:
            return
        if alert.get("workflow") == "closed":
            self.forget(alert["id"])
            return
        schedule.workflow = alert.get("workflow", schedule.workflow)
        schedule.marked |= set(alert.get("overdue_stages") or ())

    def forget(self, alert_id: str) -> None:
        self._schedules.pop(alert_id, None)
        self._tracked.discard(alert_id)

    def next_due(self) -> int | None:
        """The earliest pending deadline (ms), for sleeping until it."""
        pending = [due for s in self._schedules.values() for stage, (due, _, _) in s.due.items()
                   if stage not in s.marked and s.workflow not in MET[stage]]
        return min(pending) if pending else None

    def due(self, now: int) -> list[Overdue]:
        """Steps missed by `now`, oldest first; each is reported once (it is marked here)."""
        missed = []
        for alert_id, schedule in self._schedules.items():
            for stage in STAGES:
                if stage not in schedule.due or stage in schedule.marked or schedule.workflow in MET[stage]:
                    continue
                due, level, budget = schedule.due[stage]
                if due <= now:
                    schedule.marked.add(stage)
                    missed.append(Overdue(alert_id, stage, due, level, budget, len(schedule.marked)))
        missed.sort(key=lambda o: (o.due_at, o.alert_id))
        return missed

    def marked(self, alert_id: str) -> list[str]:
        schedule = self._schedules.get(alert_id)
        return [s for s in STAGES if schedule is not None and s in schedule.marked]
