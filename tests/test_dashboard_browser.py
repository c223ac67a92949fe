"""The control-room page in a real Chromium (Debian's, driven by Playwright)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.service import ROOT, Gateway, now_ms

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(os.environ.get("LIFELINE_ARTIFACTS", ROOT / "artifacts"))

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is installed by `make test`"),
]


@pytest.fixture
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run"])
        yield chromium
        chromium.close()


def open_board(browser, service):
    page = browser.new_page(viewport={"width": 1600, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(f"{service.url}/?token={service.token()}")
    page.wait_for_selector("#board[data-ready=true]", state="attached")
    assert "token=" not in page.url  # the token is kept for the session, not left in the address bar
    return page, errors


def test_alert_appears_coloured_and_acknowledging_updates_another_screen(browser, service, broker):
    first, errors_first = open_board(browser, service)
    second, errors_second = open_board(browser, service)
    Gateway(broker.url, "gw-gas-01").send({"GAS-0001": {"ts": now_ms(), "values": {"ch4": 27.5}}})

    row = first.wait_for_selector(".alert-row[data-level=red]")
    alert_id = row.get_attribute("data-alert-id")
    assert "27.5" in row.inner_text()
    second.wait_for_selector(f".alert-row[data-alert-id='{alert_id}'][data-workflow=new]")

    first.fill("#operator", "Wang Wei")
    first.click(f".alert-row[data-alert-id='{alert_id}'] .btn-ack")
    second.wait_for_selector(f".alert-row[data-alert-id='{alert_id}'][data-workflow=acknowledged]")
    history = service.get(f"/api/alerts/{alert_id}")["history"]
    assert [(h["event"], h["by"]) for h in history] == [("raised", "detector"), ("acknowledged", "Wang Wei")]

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    first.screenshot(path=str(ARTIFACTS / "board.png"))
    assert errors_first == [] and errors_second == []


def test_the_page_shows_a_lost_connection_and_catches_up(browser, service, broker):
    page, errors = open_board(browser, service)
    gateway = Gateway(broker.url, "gw-gas-01")
    gateway.send({"GAS-0001": {"ts": now_ms(), "values": {"ch4": 27.5}}})  # seen live before the outage
    page.wait_for_selector(".alert-row[data-sensor='GAS-0001'][data-level=red]")
    snapshot_seq = page.evaluate("window.lifeline.snapshotSeq")
    service.stop()
    page.wait_for_selector("#conn-state[data-state=disconnected], #conn-state[data-state=connecting]")
    assert page.is_visible("#conn-banner")
    assert page.get_attribute("#status-ws", "data-state") in ("disconnected", "connecting")
    # Raised while the service is down: the broker keeps the QoS 1 readings for its persistent
    # session, so the alerts are raised as it starts, before or while the page reconnects.
    gateway.send({"GAS-0002": {"ts": now_ms(), "values": {"ch4": 12.0}}})
    gateway.send({"GAS-0001": {"ts": now_ms(), "values": {"ch4": 1.0}}})  # the red one clears
    service.start()
    Gateway(broker.url, "gw-water-01").send({"PIPE-0001": {"ts": now_ms(), "values": {"pressure": 0.05}}})
    page.wait_for_selector("#conn-state[data-state=connected]", timeout=20_000)
    page.wait_for_selector(".alert-row[data-sensor='GAS-0002'][data-level=yellow]", timeout=20_000)
    page.wait_for_selector(".alert-row[data-sensor='PIPE-0001'][data-level=red]", timeout=20_000)
    page.wait_for_selector(".alert-row[data-sensor='GAS-0001'][data-condition=cleared]", timeout=20_000)
    assert page.is_hidden("#conn-banner")

    # Caught up with ?since=: every event after the first snapshot applied exactly once, no reset.
    seq = service.get("/healthz")["seq"]
    page.wait_for_function(f"window.lifeline.lastSeq === {seq}")
    assert page.evaluate("window.lifeline.snapshotSeq") == snapshot_seq
    assert page.evaluate("window.lifeline.eventsSinceSnapshot") == seq - snapshot_seq
    shown = page.eval_on_selector_all(".alert-row", "rows => rows.map(r => r.dataset.alertId)")
    assert sorted(shown) == sorted(a["id"] for a in service.get("/api/alerts?open=true")) and len(shown) == 3
    assert errors == []
