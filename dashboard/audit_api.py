"""REST: the audit trail (operators), as JSON or CSV."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import Response

from alerting.audit import Record, to_csv
from dashboard.access import Operator
from dashboard.context import pager_of

router = APIRouter(prefix="/api", tags=["audit"])


def _records(request: Request, since: int | None, until: int | None, action: str | None, actor: str | None,
             target: str | None, limit: int, order: str) -> list[Record]:
    if order not in ("asc", "desc"):
        raise HTTPException(400, "order is asc or desc")
    return pager_of(request).audit.records(since=since, until=until, action=action, actor=actor, target=target,
                                           limit=limit, newest_first=order == "desc")


@router.get("/audit")
def audit(request: Request, principal: Operator, since: int | None = None, until: int | None = None,
          action: str | None = Query(None, description="exact, or a prefix ending in '.': alert., silence., "
                                                       "notification."),
          actor: str | None = None, target: str | None = Query(None, description="alert, silence or notification id"),
          limit: int = Query(1000, ge=1, le=100_000), order: str = "desc") -> list[dict]:
    """Every alert transition, operator action, silence and notification attempt: who, when, what."""
    return [r.to_json() for r in _records(request, since, until, action, actor, target, limit, order)]


@router.get("/audit.csv")
def audit_csv(request: Request, principal: Operator, since: int | None = None, until: int | None = None,
              action: str | None = None, actor: str | None = None, target: str | None = None,
              limit: int = Query(100_000, ge=1, le=1_000_000), order: str = "asc") -> Response:
    """The same records as CSV (oldest first by default), for spreadsheets and reports."""
    records = _records(request, since, until, action, actor, target, limit, order)
    return Response(to_csv(records), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": 'attachment; filename="lifeline-audit.csv"'})
