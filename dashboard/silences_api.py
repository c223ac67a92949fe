"""REST: silences (maintenance windows). Operators create and expire them; staff read them."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, HTTPException, Query, Request
from pydantic import BaseModel, Field

from alerting.silences import MAX_DURATION_MS, SilenceError, UnknownSilence
from dashboard.access import Operator, Staff
from dashboard.context import pager_of

router = APIRouter(prefix="/api/silences", tags=["silences"])
EPOCH_MS_MAX = 2**53  # far beyond any real time, and exact in JSON numbers


class NewSilence(BaseModel):
    matchers: dict = Field(description="label -> value, [values], {not: [...]} or {regex: ...}; e.g. "
                                       '{"asset": "WM-0003"}')
    starts_at: int | None = Field(default=None, ge=0, le=EPOCH_MS_MAX, description="wall-clock epoch ms; default now")
    ends_at: int | None = Field(default=None, ge=0, le=EPOCH_MS_MAX, description="wall-clock epoch ms; or duration_s")
    duration_s: float | None = Field(default=None, gt=0, le=MAX_DURATION_MS / 1000,
                                     description="length from starts_at, seconds")
    reason: str = Field(min_length=1, max_length=4000)
    created_by: str = Field(min_length=1, max_length=200)


class Expiry(BaseModel):
    by: str = Field(min_length=1, max_length=200)


@router.post("", status_code=201)
async def create(body: NewSilence, request: Request, principal: Operator) -> dict:
    pager = pager_of(request)
    if (body.ends_at is None) == (body.duration_s is None):
        raise HTTPException(400, "give exactly one of ends_at and duration_s")
    starts = body.starts_at
    ends = body.ends_at if body.ends_at is not None else (starts or pager.clock()) + int(body.duration_s * 1000)
    try:
        silence = await asyncio.to_thread(pager.silences.create, body.matchers, starts, ends, body.reason,
                                          body.created_by)
    except SilenceError as exc:
        raise HTTPException(400, str(exc)) from None
    return silence.to_json(pager.clock())


@router.get("")
def list_silences(request: Request, principal: Staff, status: str | None = None,
                  limit: int = Query(1000, ge=1, le=10_000)) -> list[dict]:
    if status not in (None, "pending", "active", "expired"):
        raise HTTPException(400, "status is one of pending, active, expired")
    pager = pager_of(request)
    now = pager.clock()
    return [s.to_json(now) for s in pager.silences.list(status, limit)]


@router.get("/{silence_id}")
def get_silence(silence_id: str, request: Request, principal: Staff) -> dict:
    pager = pager_of(request)
    try:
        return pager.silences.get(silence_id).to_json(pager.clock())
    except UnknownSilence:
        raise HTTPException(404, f"no silence {silence_id}") from None


@router.delete("/{silence_id}")
async def expire(silence_id: str, request: Request, principal: Operator, body: Expiry | None = None,
                 by: str | None = Query(None, min_length=1, max_length=200)) -> dict:
    """Expire now (the record stays, with who ended it); `by` in the body or the query."""
    pager = pager_of(request)
    who = body.by if body is not None else by
    if not who:
        raise HTTPException(400, "say who expires the silence: {\"by\": \"...\"} or ?by=")
    try:
        silence = await asyncio.to_thread(pager.silences.expire, silence_id, who)
    except UnknownSilence:
        raise HTTPException(404, f"no silence {silence_id}") from None
    return silence.to_json(pager.clock())
