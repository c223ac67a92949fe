"""Alert management on an injectable clock, without sleeps: deadlines and escalation tiers,
grouping, repeats, silences, inhibition, flapping, and a restart in the middle.

Receivers here are MQTT-topic receivers whose publish function the test captures; the real
HTTP and SMTP receivers are in test_receivers.py, the whole service in
test_alert_management_e2e.py.
"""

from __future__ import annotations

import json
import textwrap

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alerting.alert import Transition
from alerting.deadlines import DeadlineWatch
from alerting.lifecycle import AlertBook, Finding
from alerting.pager import Pager
from alerting.store import AlertStore
from lifeline.alerting_config import Deadline
from lifeline.config import parse_config

CITY = textwrap.dedent("""\
    gateways: [{id: gw-1, owner: Gas Co.}, {id: gw-2, owner: Water Co.}]
    sensors:
      - {id: M1, gateway: gw-1, domain: gas, asset: MH-1, district: Shushan, metrics: {ch4: "%LEL"}}
      - {id: M2, gateway: gw-1, domain: gas, asset: MH-1, district: Shushan, metrics: {ch4: "%LEL"}}
      - {id: M3, gateway: gw-1, domain: gas, asset: MH-3, district: Baohe, metrics: {ch4: "%LEL"}}
      - {id: L1, gateway: gw-2, domain: elevator, asset: LIFT-1, metrics: {speed: m/s}}
    rules:
      - {id: ch4, match: {metric: ch4}, threshold: {above: {blue: 5, yellow: 10, orange: 20, red: 25}}}
      - {id: speed, match: {metric: speed}, threshold: {above: {red: 2.2}}}
    alerting:
      deadlines:
        red: {acknowledge: 5m, dispatch: 15m}
        yellow: {acknowledge: 1h}
      escalation: [duty-officer, bureau-head]
      receivers:
        - {name: gas-duty, mqtt_topic: out/gas}
        - {name: city-red, mqtt_topic: out/red}
        - {name: lift-96333, mqtt_topic: out/96333}
        - {name: duty-officer, mqtt_topic: out/duty}
        - {name: bureau-head, mqtt_topic: out/head}
      routes:
        - {name: lifts, match: {domain: elevator}, receivers: [lift-96333], group_wait: 0}
        - {name: red, match: {level: red}, receivers: [city-red], group_wait: 0, continue: true}
        - name: gas
          match: {domain: gas, district: Shushan}
          receivers: [gas-duty]
          group_by: [asset]
          group_wait: 10s
          repeat_interval: 30m
          send_resolved: true
      flapping: {changes: 4, window: 10m}
    """)

LEVEL_LIMIT = {1: 5, 2: 10, 3: 20, 4: 25}


class Clock:
    def __init__(self, now: int = 1_800_000_000_000):
        self.now = now

    def __call__(self) -> int:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += int(seconds * 1000)


class Desk:
    """A book, a pager and captured MQTT receivers on one fake clock; `restart()` keeps the files."""

    def __init__(self, tmp_path, text: str = CITY):
        self.config = parse_config(text)
        self.path = tmp_path / "lifeline.db"
        self.clock = Clock()
        self.sent: list[tuple[str, dict]] = []
        self.levels: dict[tuple[str, str], int] = {}
        self._open()

    def _open(self) -> None:
        self.store = AlertStore(self.path)
        self.book = AlertBook(self.store, clock=self.clock)
        self.pager = Pager(self.config.alerting.management, book=self.book, store=self.store,
                           sensors=self.config.sensors, db_path=self.path, clock=self.clock,
                           publish=lambda topic, payload, qos: self.sent.append((topic, json.loads(payload))))
        self.book.subscribe(self.pager.on_event)
        self.pager.load()

    def restart(self) -> None:
        self.close()
        self._open()

    def close(self) -> None:
        self.pager.stop()
        self.store.close()

    def reading(self, sensor: str, value: float, rule: str = "ch4", metric: str = "ch4", **extra) -> list:
        """A detector finding at `value` (level from the ch4 limits, or red for the lift)."""
        sensors = {s.id: s for s in self.config.sensors}
        s = sensors[sensor]
        if rule == "speed":
            after = 4 if value >= 2.2 else 0
        else:
            after = max([lvl for lvl, limit in LEVEL_LIMIT.items() if value >= limit], default=0)
        before = self.levels.get((rule, sensor), 0)
        self.levels[(rule, sensor)] = after
        if before == after:
            return []
        owner = {"gw-1": "Gas Co.", "gw-2": "Water Co."}[s.gateway]
        return self.book.apply([Finding(rule, sensor, metric, s.domain, s.asset, s.gateway, owner, self.clock.now,
                                        before, after, value, LEVEL_LIMIT.get(after or before, 2.2), self.clock.now,
                                        f"{metric} {value}", {"kind": "threshold", **extra})])

    def step(self, seconds: float = 0) -> list[tuple[str, dict]]:
        """Let time pass, run the dispatcher and deliver; returns what was published."""
        before = len(self.sent)
        self.pager.dispatcher.drain()  # events are taken when they happen
        self.clock.advance(seconds)
        for _ in range(3):  # annotations (overdue, flapping) come back as events
            self.pager.dispatcher.drain()
            self.pager.dispatcher.tick(self.clock.now)
        self.pager.outbox.run_due(self.clock.now)
        return self.sent[before:]

    def history(self, alert_id: str) -> list[str]:
        return [t.event for t in self.store.history(alert_id)]


@pytest.fixture
def desk(tmp_path):
    running = Desk(tmp_path)
    yield running
    running.close()


def topics(sent) -> list[str]:
    return [topic for topic, _ in sent]


def test_an_incident_is_one_notification_and_routes_pick_receivers(desk):
    desk.reading("M1", 12)
    desk.reading("M2", 11)  # same asset MH-1: same incident
    desk.reading("M3", 12)  # Baohe: no route for it
    assert desk.step(5) == []  # group_wait 10 s collects the incident
    sent = desk.step(5)
    assert topics(sent) == ["out/gas"]
    payload = sent[0][1]
    assert payload["group"] == {"asset": "MH-1"} and payload["kind"] == "firing"
    assert sorted(a["sensor"] for a in payload["alerts"]) == ["M1", "M2"]
    assert "YELLOW III gas MH-1" in payload["title"] and "(+1 more)" in payload["title"]
    # A red lift alert goes to 96333 (first route) and stops there; a red gas alert to the city
    # red receiver and, by `continue`, to the gas route too.
    desk.reading("L1", 2.5, rule="speed", metric="speed")
    assert topics(desk.step()) == ["out/96333"]
    desk.reading("M1", 26)
    assert topics(desk.step()) == ["out/red"]
    assert topics(desk.step(10)) == ["out/gas"]


def test_repeat_while_unacknowledged_and_resolved(desk):
    desk.reading("M1", 12)
    assert topics(desk.step(10)) == ["out/gas"]
    assert desk.step(29 * 60) == []
    repeat = desk.step(60)
    assert topics(repeat) == ["out/gas"] and repeat[0][1]["kind"] == "repeat"
    alert_id = repeat[0][1]["alerts"][0]["id"]
    desk.book.acknowledge(alert_id, "Li")
    assert desk.step(31 * 60) == []  # acknowledged: no more repeats
    desk.reading("M1", 1)
    resolved = desk.step(10)
    assert topics(resolved) == ["out/gas"] and resolved[0][1]["kind"] == "resolved"


def test_missed_deadlines_escalate_tier_by_tier_and_survive_a_restart(desk):
    desk.reading("M1", 26)  # red: acknowledge within 5 min, dispatch within 15 min
    desk.step(10)
    alert_id = desk.book.open_alerts()[0].id
    assert desk.step(4 * 60) == []
    sent = desk.step(60)
    assert topics(sent) == ["out/duty"] and sent[0][1]["kind"] == "escalation" and sent[0][1]["tier"] == 1
    assert "not acknowledged within 5 min" in sent[0][1]["title"]
    alert = desk.store.alert(alert_id).to_json()
    assert alert["overdue"] is True and alert["overdue_for"] == "acknowledge" and alert["escalation_tier"] == 1
    overdue = [t for t in desk.store.history(alert_id) if t.event == "overdue"]
    assert len(overdue) == 1 and overdue[0].by == "system" and overdue[0].to == "duty-officer"
    desk.book.acknowledge(alert_id, "Li")  # late, but acknowledged: dispatch is still due at 15 min

    desk.restart()
    assert desk.step(60) == []  # nothing is reported twice after the restart
    sent = desk.step(9 * 60)
    assert topics(sent) == ["out/head"] and sent[0][1]["tier"] == 2
    assert desk.history(alert_id).count("overdue") == 2
    desk.restart()
    assert desk.step(3600) == [] and desk.history(alert_id).count("overdue") == 2


def test_a_deadline_missed_while_the_service_was_down_is_reported_at_start(desk):
    desk.reading("M1", 12)  # yellow: acknowledge within 1 h
    desk.step(10)
    desk.pager.stop()
    desk.store.close()
    desk.clock.advance(2 * 3600)
    desk._open()
    sent = desk.step()
    assert sorted((t, p["kind"]) for t, p in sent) == [("out/duty", "escalation"), ("out/gas", "repeat")]


def test_escalation_to_a_higher_level_tightens_the_deadline(desk):
    desk.reading("M1", 12)  # yellow at t=0: 1 h
    desk.step(10 * 60)
    desk.reading("M1", 26)  # red at 10 min: acknowledge by 15 min
    desk.step(4 * 60)
    assert "out/duty" not in topics(desk.step(0))
    assert "out/duty" in topics(desk.step(61))


def test_silences_mute_only_their_matchers_and_end_by_themselves(desk):
    silence = desk.pager.silences.create({"asset": "MH-1"}, None, desk.clock.now + 3600_000, "repair", "Wang")
    desk.reading("M1", 26)
    desk.reading("L1", 2.5, rule="speed", metric="speed")
    sent = desk.step(10)
    assert topics(sent) == ["out/96333"]  # the lift is not under the silence
    records = desk.pager.audit.records(action="notification.suppressed")
    assert {r.detail["reason"] for r in records} == {f"silenced by {silence.id}"}
    assert len(desk.book.open_alerts()) == 2  # silenced alerts are still recorded and open
    # Still active and unacknowledged when the window ends: it notifies then (and escalates
    # past its deadline; the escalation was silenced too while the window lasted).
    desk.clock.advance(3600)
    sent = desk.step(3600)
    assert set(topics(sent)) >= {"out/red", "out/gas"}


def test_expiring_a_silence_early(desk):
    silence = desk.pager.silences.create({"domain": "elevator"}, None, desk.clock.now + 3600_000, "drill", "Wang")
    desk.reading("L1", 2.5, rule="speed", metric="speed")
    assert desk.step() == []
    ended = desk.pager.silences.expire(silence.id, "Zhao")
    assert ended.status(desk.clock.now) == "expired" and ended.expired_by == "Zhao"
    assert topics(desk.step(1)) == ["out/96333"]
    actions = [r.action for r in desk.pager.audit.records(action="silence.")]
    assert actions == ["silence.expired", "silence.created"]


def test_inhibition_red_over_yellow_and_fault_over_hazard(desk):
    desk.reading("M1", 26)  # red on MH-1
    desk.step(10)
    desk.reading("M2", 12)  # yellow on the same asset: inhibited
    assert desk.step(10) == []
    reasons = [r.detail["reason"] for r in desk.pager.audit.records(action="notification.suppressed")]
    assert reasons and reasons[0].startswith("inhibited by a-000001 (red-inhibits-yellow-on-the-asset)")
    # A fault on M3 inhibits M3's hazard alerts (fault alerts are routed nowhere here).
    sensor = {s.id: s for s in desk.config.sensors}["M3"]
    desk.book.apply([Finding("m3-fault", "M3", "ch4", "gas", sensor.asset, "gw-1", "Gas Co.", desk.clock.now, 0, 1,
                             999, 100, desk.clock.now, "out of range", {"kind": "fault"})])
    labels = desk.pager.dispatcher.labeler.labels({"id": "x", "sensor": "M3", "kind": "threshold", "level": "red"})
    desk.step()
    assert desk.pager.dispatcher.muted_by(labels, desk.clock.now).startswith("inhibited by")


def test_a_flapping_alert_notifies_once_until_it_settles(desk):
    desk.reading("M1", 12)
    for i in range(6):  # chatter around the yellow limit, faster than group_wait
        desk.step(1)
        desk.reading("M1", 1 if i % 2 == 0 else 12)
    alert_id = desk.book.open_alerts()[0].id
    for i in range(6):  # and on, slower: each change would notify (firing, resolved) on its own
        desk.step(15)
        desk.reading("M1", 1 if i % 2 == 0 else 12)
    desk.step(15)
    assert desk.store.alert(alert_id).to_json()["flapping"] is True
    assert "flapping" in desk.history(alert_id)
    gas = [p for t, p in desk.sent if t == "out/gas"]
    assert [p["kind"] for p in gas] == ["firing"]  # once
    held = desk.pager.audit.records(action="notification.suppressed", target=alert_id)
    assert held and all(r.detail["reason"].startswith("flapping") for r in held)
    desk.step(11 * 60)  # quiet for a window: it settles
    assert "settled" in desk.history(alert_id)
    assert "flapping" not in desk.store.alert(alert_id).to_json()
    desk.reading("M1", 1)
    assert [p["kind"] for t, p in desk.step(15)] == ["resolved"]  # settled: notifies again


def test_backfilled_alerts_never_notify(desk):
    s = {x.id: x for x in desk.config.sensors}["M1"]
    desk.book.apply([Finding("ch4", "M1", "ch4", "gas", s.asset, "gw-1", "Gas Co.", desk.clock.now - 3600_000, 0, 4,
                             30, 25, desk.clock.now - 3600_000, "old", {"kind": "threshold"}, backfilled=True)])
    assert desk.step(3600) == []  # no notification, no escalation


def test_the_audit_trail_merges_transitions_and_refuses_changes(desk):
    desk.reading("L1", 2.5, rule="speed", metric="speed")
    desk.step()
    alert_id = desk.book.open_alerts()[0].id
    desk.clock.advance(1)
    desk.book.acknowledge(alert_id, "Li", "on it")
    records = desk.pager.audit.records(newest_first=False)
    assert [r.action for r in records] == ["alert.raised", "notification.sent", "alert.acknowledged"]
    assert records[2].actor == "Li" and records[2].detail["note"] == "on it"
    import sqlite3

    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        desk.pager.audit._db.execute("DELETE FROM audit")


def test_alarm_load_report(desk):
    for value in (12, 1, 12, 1, 12):
        desk.reading("M3", value)
        desk.clock.advance(5)
    desk.reading("M1", 26)
    desk.step()
    alert_id = next(a.id for a in desk.book.open_alerts() if a.sensor == "M1")
    desk.clock.advance(90)
    desk.book.acknowledge(alert_id, "Li")
    report = desk.pager.alarm_load.report()
    assert report["rate"]["last_10min"] == 4  # raised, reactivated x2 on M3; raised on M1
    assert report["chattering"]["count"] == 1 and report["chattering"]["alerts"][0]["sensor"] == "M3"
    assert report["top_sensors"][0] == {"sensor": "M3", "count": 3}
    assert report["time_to_acknowledge"]["red"]["median_s"] == pytest.approx(90, abs=1)
    assert report["open"]["red"] == 1


# -- deadlines, incrementally -------------------------------------------------------------------

_DEADLINES = {"red": Deadline(acknowledge_s=300, dispatch_s=900), "orange": Deadline(acknowledge_s=900),
              "yellow": Deadline(dispatch_s=7200)}
_level_steps = st.lists(st.tuples(st.sampled_from(["raised", "escalated", "deescalated", "reactivated",
                                                   "acknowledged", "cleared"]),
                                  st.sampled_from(["blue", "yellow", "orange", "red"]),
                                  st.integers(0, 3_600_000)), min_size=1, max_size=12)


@settings(max_examples=200, deadline=None)
@given(_level_steps, st.sampled_from(["new", "acknowledged", "dispatched"]))
def test_folding_transitions_one_by_one_gives_the_deadlines_of_the_whole_history(steps, workflow) -> None:
    """The dispatcher folds each new level transition into a tracked alert (one row read) instead
    of re-reading the history; both must give the same schedule after every step."""
    history = [Transition(seq, "a-1", event, at, "detector", "", level, 0.0)
               for seq, (event, level, at) in enumerate(steps, start=1)]
    alert = {"id": "a-1", "workflow": workflow}
    incremental, whole = DeadlineWatch(_DEADLINES), DeadlineWatch(_DEADLINES)
    incremental.track(alert, history[:1])
    for k in range(1, len(history)):
        assert incremental.advance(alert, history[k])
        whole.track(alert, history[:k + 1])
        assert incremental._schedules == whole._schedules
        assert incremental.next_due() == whole.next_due()
    assert not DeadlineWatch(_DEADLINES).advance(alert, history[0])  # never tracked: read the history
