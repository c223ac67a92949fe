"""REST: alerts and the operators' workflow."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, HTTPException, Query, Request
from pydantic import BaseModel, Field

from alerting.lifecycle import UnknownAlert, WorkflowError
from dashboard.access import Operator, Viewer, owner_filter
from lifeline.levels import LEVELS
from lifeline.tokens import Principal

router = APIRouter(prefix="/api/alerts", tags=["alerts"])


class Action(BaseModel):
    by: str = Field(min_length=1, max_length=200, description="operator name")
    note: str = Field(default="", max_length=4000)


class Dispatch(Action):
    to: str = Field(min_length=1, max_length=200, description="response team")


def _visible(alert: dict, principal: Principal) -> bool:
    owner = owner_filter(principal)
    return owner is None or alert.get("owner") == owner


@router.get("")
def list_alerts(request: Request, principal: Viewer, open: bool = True, domain: str | None = None,  # noqa: A002 - CONTRACT name
                level: str | None = None, since: int | None = None,
                limit: int = Query(1000, ge=1, le=10_000)) -> list[dict]:
    level = level or None  # `?level=` empty, as a form leaves it, means any level
    if level is not None and level not in LEVELS:
        raise HTTPException(400, f"unknown level {level!r}; one of {', '.join(LEVELS)}")
    store = request.app.state.context.store
    return store.alerts(is_open=open, domain=domain or None, level=level, owner=owner_filter(principal),
                        since=since, limit=limit)


@router.get("/{alert_id}")
def get_alert(alert_id: str, request: Request, principal: Viewer) -> dict:
    store = request.app.state.context.store
    alert = store.alert(alert_id)
    if alert is None or not _visible(alert.to_json(), principal):
        raise HTTPException(404, f"no alert {alert_id}")
    body = alert.to_json()
    body["history"] = [t.history_entry() for t in store.history(alert_id)]
    return body


async def _act(request: Request, alert_id: str, action, *args) -> dict:
    try:
        # The book's lock may be held by the pipeline for a moment: keep the event loop free.
        event = await asyncio.to_thread(action, alert_id, *args)
    except UnknownAlert:
        raise HTTPException(404, f"no alert {alert_id}") from None
    except WorkflowError as exc:
        raise HTTPException(409, str(exc)) from None
    return event.alert.to_json()


@router.post("/{alert_id}/ack")
async def acknowledge(alert_id: str, body: Action, request: Request,
                      principal: Operator) -> dict:
    return await _act(request, alert_id, request.app.state.context.book.acknowledge, body.by, body.note)


@router.post("/{alert_id}/dispatch")
async def dispatch(alert_id: str, body: Dispatch, request: Request,
                   principal: Operator) -> dict:
    return await _act(request, alert_id, request.app.state.context.book.dispatch, body.by, body.to, body.note)


@router.post("/{alert_id}/close")
async def close(alert_id: str, body: Action, request: Request,
                principal: Operator) -> dict:
    return await _act(request, alert_id, request.app.state.context.book.close, body.by, body.note)
