"""Health, Prometheus metrics and the dead-letter store."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response

from dashboard.access import Viewer, owner_filter

router = APIRouter(tags=["system"])


@router.get("/healthz")
def healthz(request: Request) -> JSONResponse:
    context = request.app.state.context
    body = {"status": "ok" if context.healthy() else "unavailable", **context.status()}
    return JSONResponse(body, status_code=200 if context.healthy() else 503)


@router.get("/metrics")
def metrics(request: Request) -> Response:
    return Response(request.app.state.context.metrics.exposition(),
                    media_type="text/plain; version=0.0.4; charset=utf-8")


@router.get("/api/rejections")
def rejections(request: Request, principal: Viewer, gateway: str | None = None, limit: int = Query(100, ge=1, le=10_000)) -> list[dict]:
    context = request.app.state.context
    owner = owner_filter(principal)
    own = None
    if owner is not None:
        own = {g.id for g in context.catalogue.gateways if g.owner == owner}
    return context.dead_letters.latest(gateway=gateway or None, gateways=own, limit=limit)
