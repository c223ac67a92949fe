"""The hub's ready-made frames reach real websocket clients through uvicorn, as `lifeline up`
serves them: on connections with and without permessage-deflate, in order with ASGI sends."""

from __future__ import annotations

import threading

import uvicorn
from fastapi import FastAPI, WebSocket
from websockets.sync.client import connect

from dashboard.empty_query import DropEmptyQueryParameters
from dashboard.hub import text_frame
from dashboard.websocket import DirectFrames
from lifeline.broker import free_port
from tests.service import wait_for


def test_direct_frames_reach_clients_with_and_without_compression():
    app = FastAPI()
    app.add_middleware(DropEmptyQueryParameters)  # as dashboard.app assembles it

    @app.websocket("/ws")
    async def stream(websocket: WebSocket) -> None:
        await websocket.accept()
        frames = DirectFrames.of(websocket)
        await websocket.send_text("direct" if frames is not None else "asgi")  # compressed when negotiated
        if frames is not None:
            await frames.write(b"".join(text_frame(f'{{"n": {i}, "text": "é"}}'.encode()) for i in range(3)))
        await websocket.send_text("done")
        await websocket.receive_text()

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, ws="websockets-sansio",
                                           log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started, 20, "uvicorn to start")
        for compression in ("deflate", None):
            with connect(f"ws://127.0.0.1:{port}/ws?x=", compression=compression) as client:
                received = [client.recv(timeout=10) for _ in range(5)]
                client.send("bye")
            assert received == ["direct", '{"n": 0, "text": "é"}', '{"n": 1, "text": "é"}',
                                '{"n": 2, "text": "é"}', "done"], compression
    finally:
        server.should_exit = True
        thread.join(20)
