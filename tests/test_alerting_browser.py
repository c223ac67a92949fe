"""Alert management in a real Chromium: the overdue badge on the board, and the alert-management
page (alarm load, silences created and expired, notifications)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import DATA
from tests.service import Gateway, RunningService, now_ms, wait_for
from tests.test_alert_management_e2e import Hooks
from tests.test_dashboard_browser import CHROMIUM, browser  # noqa: F401 - the fixture

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is installed by `make test`"),
]


def test_overdue_badge_and_the_alert_management_page(browser, broker, tmp_path):  # noqa: F811
    hooks = Hooks()
    config = tmp_path / "alerting.yaml"
    config.write_text((DATA / "alerting.yaml").read_text().replace("HOOK_PORT", str(hooks.port))
                      .replace("acknowledge: 10s", "acknowledge: 2s"))
    service = RunningService(config, broker.url, tmp_path / "service").start()
    try:
        lift = Gateway(broker.url, "gw-b")
        lift.send({"L1": {"ts": now_ms(), "values": {"speed": 2.6}}})
        page = browser.new_page(viewport={"width": 1600, "height": 900})
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(f"{service.url}/?token={service.token()}")
        badge = page.locator("[data-testid=alert-row] [data-testid=overdue-badge]")
        badge.wait_for(state="visible", timeout=15_000)
        assert badge.get_attribute("title")

        page.goto(f"{service.url}/static/alerting.html")  # the session keeps the token
        page.locator("#figures .figure").first.wait_for()
        page.fill("#matchers", "asset=MH-2")
        page.fill("#reason", "valve replacement")
        page.fill("#by", "Wang")
        page.click("#new-silence button[type=submit]")
        row = page.locator("#silences tr", has_text="MH-2")
        row.wait_for()
        assert "active" in row.inner_text()
        row.locator("button").click()
        page.locator("#silences tr", has_text="expired").wait_for()
        wait_for(lambda: service.get("/api/silences?status=expired"), message="the expired silence")
        page.locator("#notifications tr", has_text="escalation").wait_for(timeout=10_000)
        assert errors == []
        lift.close()
    finally:
        service.stop()
        hooks.server.shutdown()
        hooks.server.server_close()
