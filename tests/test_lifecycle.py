"""The alert lifecycle against a real SQLite file: transitions, workflow rules, persistence."""

from __future__ import annotations

import asyncio

import pytest

from alerting.lifecycle import AlertBook, Finding, UnknownAlert, WorkflowError
from alerting.store import AlertStore
from dashboard.hub import AlertHub


def finding(before: int, after: int, ts: int, value: float, sensor: str = "GAS-0001", started: int = 1000) -> Finding:
    return Finding("gas-ch4-level", sensor, "ch4", "gas", "MH-0001", "gw-gas-01", "Gas Co.", ts, before, after,
                   value, {0: 0, 1: 5, 2: 10, 3: 20, 4: 25}[after or before], started, f"ch4 {value}")


@pytest.fixture
def book(tmp_path):
    clock = iter(range(10_000, 10_000_000, 1000))
    store = AlertStore(tmp_path / "lifeline.db")
    yield AlertBook(store, clock=lambda: next(clock))
    store.close()


def test_levels_move_one_alert_and_peak_is_kept(book):
    events = book.apply([finding(0, 2, 1000, 11), finding(2, 4, 2000, 26), finding(4, 3, 3000, 21)])
    assert [e.event for e in events] == ["raised", "escalated", "deescalated"]
    assert [e.seq for e in events] == [1, 2, 3]
    assert len({e.alert.id for e in events}) == 1
    alert = events[-1].alert
    assert (alert.level, alert.peak_level, alert.raised_at, alert.updated_at) == ("orange", "red", 1000, 3000)
    # Each event carries the alert as it was at that transition.
    assert [b'"level":"yellow"' in events[0].body, b'"level":"red"' in events[1].body] == [True, True]


def test_cleared_then_reactivated_is_the_same_alert(book):
    raised = book.apply([finding(0, 1, 1000, 6)])[0]
    cleared = book.apply([finding(1, 0, 2000, 1)])[0]
    assert cleared.event == "cleared" and cleared.alert.level == "blue" and cleared.alert.condition == "cleared"
    again = book.apply([finding(0, 3, 3000, 21)])[0]
    assert again.event == "reactivated" and again.alert.id == raised.alert.id
    assert again.alert.condition == "active" and again.alert.level == "orange"


def test_workflow_rules(book):
    alert_id = book.apply([finding(0, 2, 1000, 11)])[0].alert.id
    with pytest.raises(WorkflowError, match="active"):
        book.close(alert_id, "op")
    assert book.acknowledge(alert_id, "op", "seen").alert.workflow == "acknowledged"
    with pytest.raises(WorkflowError):
        book.acknowledge(alert_id, "op")
    assert book.dispatch(alert_id, "op", "team 2").alert.dispatched_to == "team 2"
    with pytest.raises(WorkflowError):
        book.dispatch(alert_id, "op", "team 3")
    book.apply([finding(2, 0, 2000, 1)])
    closed = book.close(alert_id, "op", "done")
    assert closed.alert.workflow == "closed"
    with pytest.raises(WorkflowError, match="closed"):
        book.acknowledge(alert_id, "op")
    with pytest.raises(UnknownAlert):
        book.acknowledge("a-999999", "op")
    # A new finding after closing opens a new alert.
    assert book.apply([finding(0, 1, 3000, 6)])[0].alert.id != alert_id


def test_everything_is_restored_from_disk(book, tmp_path):
    first = book.apply([finding(0, 2, 1000, 11), finding(0, 4, 1000, 30, sensor="GAS-0002")])
    book.acknowledge(first[0].alert.id, "op")
    reopened = AlertBook(AlertStore(tmp_path / "lifeline.db"))
    assert reopened.seq == 3
    assert sorted(a.id for a in reopened.open_alerts()) == sorted(e.alert.id for e in first)
    history = reopened.store.history(first[0].alert.id)
    assert [(t.event, t.by) for t in history] == [("raised", "detector"), ("acknowledged", "op")]
    assert reopened.apply([finding(0, 1, 5000, 6, sensor="GAS-0003")])[0].alert.id == "a-000003"


async def test_a_lagging_websocket_client_is_cut_off_without_blocking_others(book):
    hub = AlertHub(book, book.store, asyncio.get_running_loop(), queue_size=5)
    book.subscribe(hub.on_event)
    slow, fast = hub.subscribe(), hub.subscribe()
    for i in range(8):
        book.apply([finding(i % 2, 1 - i % 2, 1000 + i, 6.0 - i % 2 * 5)])  # raise, clear, raise, ...
        await asyncio.sleep(0)  # the hub fans out on the event loop
        while not fast.queue.empty():
            fast.queue.get_nowait()  # the fast client keeps up
    assert slow.lagging.is_set() and not fast.lagging.is_set()
    assert slow.queue.qsize() == 5 and hub.dropped == 1


def test_alert_json_is_every_field_then_the_extras_and_owns_its_containers() -> None:
    from dataclasses import asdict

    from alerting.alert import Alert
    alert = Alert("a-000001", "r", "s", "ch4", "gas", "MH-1", "g", "gas-co", "red", "red", "active", "new", 31.0,
                  25.0, "CH4 31 %LEL", 1, 2, None, {"forecast": {"level": "red", "eta_s": 60}, "confidence": "low"})
    for dispatched_to in (None, "crew 7"):
        alert.dispatched_to = dispatched_to
        plain = {k: v for k, v in asdict(alert).items() if k != "extra" and (k != "dispatched_to" or v)}
        plain.update(alert.extra)
        body = alert.to_json()
        assert list(body.items()) == list(plain.items())
    body["forecast"]["eta_s"] = 0  # an encoder or listener changing its copy leaves the alert alone
    assert alert.extra["forecast"]["eta_s"] == 60
