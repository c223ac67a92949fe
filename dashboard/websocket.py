"""WS /ws/alerts: a snapshot or the missed events, then live events (CONTRACT §6).

The opening (snapshot, or the events after `since`) goes out through ASGI. Live events queued
meanwhile follow from the client's sender task; once its queue is empty (and on uvicorn's
websockets-sansio server), the sender hands the client to the hub, which from then on writes
each batch straight to the connection (dashboard.hub), until flow control pauses it.
"""

from __future__ import annotations

import asyncio
import contextlib

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse

try:
    from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
except ImportError:  # another uvicorn: events go through ASGI send_text
    WebSocketsSansIOProtocol = None

from dashboard.access import Refused, owner_filter, principal_for
from dashboard.hub import LAGGING_CLOSE_CODE, AlertHub, Subscriber

router = APIRouter()
SEND_BATCH = 1000  # events per write at most, so one client's burst cannot hold the loop for long


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
        subscriber.covered, opening = await asyncio.to_thread(hub.opening, since, owner)
        for message in opening:
            await websocket.send_text(message.decode())
        sender = asyncio.create_task(_send_live(websocket, subscriber))
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


async def _send_live(websocket: WebSocket, subscriber: Subscriber) -> None:
    """Live events after the opening, as they come; whatever queued up meanwhile goes out together.

    Whenever the queue is empty and the connection writable, the client is handed to the hub,
    which then writes its events itself; the hub hands it back through the queue when the
    connection pauses. Both run on the event loop, so the hand-over cannot race a fan-out.
    """
    frames = DirectFrames.of(websocket)
    queue = subscriber.queue
    while True:
        if frames is not None and queue.empty() and frames.writable_now():
            subscriber.go_direct(frames)
        batch = [await queue.get()]
        while not queue.empty() and len(batch) < SEND_BATCH:
            batch.append(queue.get_nowait())
        live = [event for event in batch if event.seq > subscriber.covered]  # the rest was in the opening
        if not live:
            continue
        subscriber.covered = live[-1].seq
        if frames is not None:
            await frames.write(b"".join(event.frame for event in live))
        else:
            for event in live:
                await websocket.send_text(event.text)


class DirectFrames:
    """Writes the hub's ready-made frames straight to the connection's transport.

    Through ASGI each message to each client is encoded, framed (and compressed, when the
    browser negotiated permessage-deflate) and written with a system call of its own: about
    10-20 us, so 100 dashboards at 1,000 events/s would need more than one core. Here a batch
    of events costs one write per client, by the hub (`write_now`) or by the client's sender
    (`write`). This needs uvicorn's websockets-sansio protocol (the server `lifeline up` runs),
    reached as the owner of Starlette's `receive`; with any other server `of` returns None and
    events go through ASGI `send_text`. Flow control is the transport's, as for uvicorn's own
    send: while the client does not read, the hub stops writing (`writable_now` is false), the
    sender's writes wait, the hub queue fills and the hub marks the client lagging.
    """

    def __init__(self, protocol):
        self.protocol = protocol

    @classmethod
    def of(cls, websocket: WebSocket) -> DirectFrames | None:
        protocol = getattr(websocket._receive, "__self__", None)
        if WebSocketsSansIOProtocol is None or not isinstance(protocol, WebSocketsSansIOProtocol) \
                or not hasattr(protocol, "writable"):
            return None
        return cls(protocol)

    async def write(self, frames: bytes) -> None:
        protocol = self.protocol
        await protocol.writable.wait()
        if not self._open():
            raise WebSocketDisconnect(1006)
        protocol.transport.write(frames)

    def writable_now(self) -> bool:
        return self.protocol.writable.is_set() and self._open()

    def write_now(self, frames: bytes) -> None:
        self.protocol.transport.write(frames)

    def _open(self) -> bool:
        # No frame may follow a close frame (RFC 6455 §5.5.1), ours or the client's.
        protocol = self.protocol
        return not (protocol.disconnected or protocol.close_sent or protocol.transport.is_closing())


async def _drain_client(websocket: WebSocket) -> None:
    """Read (and ignore) what the client sends, to notice when it goes away."""
    with contextlib.suppress(WebSocketDisconnect):
        while True:
            await websocket.receive_text()


def _json_error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)
