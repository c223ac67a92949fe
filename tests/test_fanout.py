"""The hub's ready-made frames reach real websocket clients through uvicorn, as `lifeline up`
serves them: on connections with and without permessage-deflate, in order with ASGI sends.
And the hub's two ways to a client: written straight to the connection once it caught up,
through its queue while it receives its opening or reads slowly; each event exactly once,
in order, owners only their own, a client that stops reading cut off."""

from __future__ import annotations

import asyncio
import functools
import json
import threading

import pytest
import uvicorn
from fastapi import FastAPI, WebSocket
from websockets.sync.client import connect

from alerting.lifecycle import AlertBook, Finding
from alerting.store import AlertStore
from dashboard import websocket as ws_route
from dashboard.empty_query import DropEmptyQueryParameters
from dashboard.hub import AlertHub, text_frame
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


# -- the hub's direct writes and its queues, on one event loop --------------------------------
class Connection:
    """A client connection as DirectFrames presents it, with flow control to pause."""

    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.writable = asyncio.Event()
        self.writable.set()

    def writable_now(self) -> bool:
        return self.writable.is_set()

    def write_now(self, frames: bytes) -> None:
        assert self.writable.is_set(), "written while paused"
        self.written.append(frames)

    async def write(self, frames: bytes) -> None:  # the client's sender
        await self.writable.wait()
        self.written.append(frames)

    def received(self, count: int) -> bool:
        return len(self.seqs()) == count

    def seqs(self) -> list[int]:
        return [message["seq"] for message in messages(b"".join(self.written))]

    def owners(self) -> set[str]:
        return {message["alert"]["owner"] for message in messages(b"".join(self.written))}


def messages(frames: bytes) -> list[dict]:
    """Unmasked server text frames, as the hub writes them, decoded."""
    out, offset = [], 0
    while offset < len(frames):
        assert frames[offset] == 0x81
        size, offset = frames[offset + 1], offset + 2
        if size == 126:
            size, offset = int.from_bytes(frames[offset:offset + 2], "big"), offset + 2
        out.append(json.loads(frames[offset:offset + size]))
        offset += size
    return out


def finding(sensor: str, level: int, ts: int, owner: str = "Gas Co.") -> Finding:
    """A finding that flips `sensor` between quiet (0) and yellow (1): one event each."""
    return Finding("gas-ch4-level", sensor, "ch4", "gas", "MH-0001", "gw-gas-01", owner, ts, 1 - level, level,
                   6.0 if level else 1.0, 5.0, 1000, "ch4")


@pytest.fixture
def book(tmp_path):
    store = AlertStore(tmp_path / "lifeline.db")
    yield AlertBook(store)
    store.close()


class Storm:
    """Batches of events, each flipping every sensor once, as the pipeline applies them."""

    def __init__(self, book: AlertBook, sensors: list[tuple[str, str]]):
        self.book, self.sensors, self.ts = book, sensors, 1000
        self.level = dict.fromkeys(sensors, 0)

    def batch(self) -> list[int]:
        self.ts += 1000
        findings = []
        for sensor, owner in self.sensors:
            self.level[sensor, owner] = 1 - self.level[sensor, owner]
            findings.append(finding(sensor, self.level[sensor, owner], self.ts, owner))
        return [event.seq for event in self.book.apply(findings)]


async def until(condition, turns: int = 100) -> None:
    """Let the event loop run (the hub fans out in a callback) until `condition` holds."""
    for _ in range(turns):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("the event loop never got there")


async def test_caught_up_clients_get_one_write_per_batch_with_only_their_owners_events(book):
    hub = AlertHub(book, book.store, asyncio.get_running_loop())
    book.subscribe(hub.on_event)
    clients = {owner: (hub.subscribe(owner), Connection()) for owner in (None, "Gas Co.", "Water Co.")}
    for subscriber, connection in clients.values():
        subscriber.go_direct(connection)
    storm = Storm(book, [("GAS-0001", "Gas Co."), ("WAT-0001", "Water Co."), ("GAS-0002", "Gas Co.")])
    seqs = storm.batch() + storm.batch()
    everyone, gas, water = (connection for _, connection in clients.values())
    await until(lambda: len(everyone.seqs()) == len(seqs))
    assert everyone.seqs() == seqs
    assert len(everyone.written) <= 2  # one write per fan-out, not per event
    assert gas.owners() == {"Gas Co."} and len(gas.seqs()) == 4
    assert water.owners() == {"Water Co."} and len(water.seqs()) == 2
    assert all(subscriber.queue.empty() for subscriber, _ in clients.values())


async def test_events_the_opening_covered_are_not_written_again(book):
    # The opening read from the store can include events whose fan-out is still pending.
    hub = AlertHub(book, book.store, asyncio.get_running_loop())
    book.subscribe(hub.on_event)
    storm = Storm(book, [("GAS-0001", "Gas Co."), ("GAS-0002", "Gas Co."), ("GAS-0003", "Gas Co.")])
    subscriber, connection = hub.subscribe(), Connection()
    seqs = storm.batch()  # committed; the hub has not fanned it out yet
    subscriber.covered = seqs[1]
    subscriber.go_direct(connection)
    await until(lambda: connection.written)
    assert connection.seqs() == seqs[2:]


async def test_a_paused_client_continues_from_its_queue_in_order_and_is_handed_back(book, monkeypatch):
    hub = AlertHub(book, book.store, asyncio.get_running_loop())
    book.subscribe(hub.on_event)
    connection = Connection()
    monkeypatch.setattr(ws_route.DirectFrames, "of", classmethod(lambda cls, websocket: connection))
    storm = Storm(book, [("GAS-0001", "Gas Co."), ("GAS-0002", "Gas Co.")])
    subscriber = hub.subscribe()
    opening = storm.batch()  # the client's opening covers these ...
    subscriber.covered = opening[-1]
    sent = storm.batch()  # ... and these arrive while it is being sent: queued
    await until(lambda: subscriber.queue.qsize() == 4)
    sender = asyncio.create_task(ws_route._send_live(None, subscriber))
    await until(lambda: subscriber.direct is connection)  # the queue sent, then handed to the hub
    assert connection.seqs() == sent

    sent += storm.batch()
    await until(lambda: len(connection.seqs()) == len(sent))
    connection.writable.clear()  # the client reads slowly: flow control pauses its connection
    written = len(connection.written)
    sent += storm.batch() + storm.batch()
    await until(lambda: subscriber.direct is None)  # back to its queue, whose sender waits
    assert len(connection.written) == written
    connection.writable.set()
    await until(lambda: subscriber.direct is connection)
    sent += storm.batch()
    await until(lambda: len(connection.seqs()) == len(sent))
    assert connection.seqs() == sent  # every event once, in order, across both hand-overs
    sender.cancel()


async def test_a_client_that_stops_reading_is_cut_off_and_holds_at_most_its_queue(book):
    hub = AlertHub(book, book.store, asyncio.get_running_loop(), queue_size=5)
    book.subscribe(hub.on_event)
    storm = Storm(book, [("GAS-0001", "Gas Co."), ("GAS-0002", "Gas Co.")])
    (stuck, stuck_connection), (reader, reader_connection) = ((hub.subscribe(), Connection()) for _ in range(2))
    for subscriber, connection in ((stuck, stuck_connection), (reader, reader_connection)):
        subscriber.go_direct(connection)
    stuck_connection.writable.clear()  # its socket buffer is full: it never reads again
    sent = []
    for _ in range(4):
        sent += storm.batch()
        await until(functools.partial(reader_connection.received, len(sent)))
    assert stuck.lagging.is_set() and stuck.queue.qsize() == 5 and hub.dropped == 1
    assert stuck_connection.written == [] and stuck.direct is None
    assert reader_connection.seqs() == sent and not reader.lagging.is_set()
