"""REST: notifications sent, pending and failed, the receivers' state, and the alarm load."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Query, Request

from alerting.delivery import STATUSES
from alerting.notifiers import targets_of
from dashboard.access import Staff
from dashboard.context import pager_of

router = APIRouter(prefix="/api", tags=["notifications"])


@router.get("/notifications")
def notifications(request: Request, principal: Staff, status: str | None = None, receiver: str | None = None,
                  alert: str | None = Query(None, description="only notifications about this alert id"),
                  since: int | None = None, limit: int = Query(100, ge=1, le=10_000)) -> list[dict]:
    """Newest first: each with its receiver, target, alerts, status (pending, sent, failed),
    attempts, next retry and last error."""
    if status is not None and status not in STATUSES:
        raise HTTPException(400, f"status is one of {', '.join(STATUSES)}")
    return pager_of(request).outbox.list(status=status, receiver=receiver, alert=alert, since=since, limit=limit)


@router.get("/receivers")
def receivers(request: Request, principal: Staff) -> list[dict]:
    """Each configured receiver: kind, targets (passwords hidden), queue and delivery counts."""
    pager = pager_of(request)
    counts = pager.outbox.counts()
    out = []
    for spec in pager.settings.receivers:
        worker = pager.outbox.workers[spec.name]
        out.append({"name": spec.name, "kind": spec.kind,
                    "targets": [t.description for t in targets_of(spec, None)], "queued": len(worker),
                    **counts.get(spec.name, dict.fromkeys(STATUSES, 0))})
    return out


@router.get("/alarm-load")
def alarm_load(request: Request, principal: Staff,
               window: float = Query(86400, gt=0, le=90 * 86400, description="report window, seconds")) -> dict:
    """ISA-18.2 / EEMUA 191 alarm-load figures (see alerting/alarm_load.py)."""
    return pager_of(request).alarm_load.report(window)
