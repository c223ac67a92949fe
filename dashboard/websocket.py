"""WS /ws/alerts: a snapshot or the missed events, then live events (CONTRACT §6)."""

from __future__ import annotations

import asyncio
import contextlib

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse

from dashboard.access import Refused, owner_filter, principal_for
from dashboard.hub import LAGGING_CLOSE_CODE, AlertHub

router = APIRouter()


@router.websocket("/ws/alerts")
async def alerts_socket(websocket: WebSocket) -> None:
    hub: AlertHub = websocket.app.state.hub
    since_raw = websocket.query_params.get("since")
    try:
        principal = principal_for(websocket, websocket.query_params.get("token"))  # type: ignore[arg-type]
    except Refused as refused:
        # Refuse the handshake with an HTTP status and JSON body, as for REST.
        await websocket.send_denial_response(_json_error(refused.status_code, refused.detail))
        return
    since = None
    if since_raw is not None:
        try:
            since = int(since_raw)
        except ValueError:
            await websocket.send_denial_response(_json_error(400, f"since must be an integer, got {since_raw!r}"))
            return
    await websocket.accept()
    owner = owner_filter(principal)
    subscriber = hub.subscribe(owner)
    websocket.app.state.context.metrics.ws_clients.inc()
    try:
        covered, opening = await asyncio.to_thread(hub.opening, since, owner)
        for message in opening:
            await websocket.send_text(message.decode())
        sender = asyncio.create_task(_send_live(websocket, subscriber, covered))
        receiver = asyncio.create_task(_drain_client(websocket))
        lagging = asyncio.create_task(subscriber.lagging.wait())
        done, pending = await asyncio.wait({sender, receiver, lagging}, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        if lagging in done:
            websocket.app.state.context.metrics.ws_dropped.inc()
            with contextlib.suppress(Exception):
                await websocket.close(LAGGING_CLOSE_CODE, "too slow: reconnect with ?since=<last seq>")
    except WebSocketDisconnect:
        pass
    finally:
        hub.unsubscribe(subscriber)
        websocket.app.state.context.metrics.ws_clients.dec()


async def _send_live(websocket: WebSocket, subscriber, covered: int) -> None:
    while True:
        seq, body = await subscriber.queue.get()
        if seq <= covered:
            continue  # already sent in the opening
        covered = seq
        await websocket.send_text(body.decode())


async def _drain_client(websocket: WebSocket) -> None:
    """Read (and ignore) what the client sends, to notice when it goes away."""
    with contextlib.suppress(WebSocketDisconnect):
        while True:
            await websocket.receive_text()


def _json_error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)
