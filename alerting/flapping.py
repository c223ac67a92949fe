"""Flapping: an alert whose condition keeps changing (a chattering sensor near a limit).

An alert is flapping when it made more than `changes` detector transitions (raised,
escalated, deescalated, cleared, reactivated) within the last `window`; it settles once at
most `changes // 2` remain in the window (hysteresis, as Kapacitor's low and high flapping
thresholds). While it flaps it notifies once: the dispatcher lets through the first
notification of the alert and holds back the rest until it settles.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

from lifeline.alerting_config import FlappingSpec


class FlapDetector:
    """Transition times per alert (wall-clock ms) and which alerts flap."""

    def __init__(self, spec: FlappingSpec):
        self.spec = spec
        self.window_ms = int(spec.window_s * 1000)
        self._times: dict[str, deque[int]] = {}
        self._flapping: set[str] = set()

    def record(self, alert_id: str, at: int) -> bool:
        """Count a detector transition; True when the alert starts flapping with it."""
        times = self._times.setdefault(alert_id, deque())
        times.append(at)
        self._trim(times, at)
        if alert_id not in self._flapping and len(times) > self.spec.changes:
            self._flapping.add(alert_id)
            return True
        return False

    def settled(self, now: int) -> list[str]:
        """Alerts that stop flapping at `now` (few transitions left in the window)."""
        done = []
        for alert_id in list(self._times):
            times = self._times[alert_id]
            self._trim(times, now)
            if alert_id in self._flapping and len(times) <= self.spec.changes // 2:
                self._flapping.discard(alert_id)
                done.append(alert_id)
            if not times and alert_id not in self._flapping:
                del self._times[alert_id]
        return done

    def is_flapping(self, alert_id: str) -> bool:
        return alert_id in self._flapping

    def count(self, alert_id: str) -> int:
        return len(self._times.get(alert_id, ()))

    def restore(self, alert_id: str, times: Iterable[int], flapping: bool) -> None:
        """State after a restart: the alert's transition times and its persisted flag."""
        self._times[alert_id] = deque(sorted(times))
        if flapping:
            self._flapping.add(alert_id)

    def forget(self, alert_id: str) -> None:
        self._times.pop(alert_id, None)
        self._flapping.discard(alert_id)

    def _trim(self, times: deque[int], now: int) -> None:
        while times and times[0] <= now - self.window_ms:
            times.popleft()
