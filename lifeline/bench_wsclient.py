"""A minimal websocket client for the benchmarks (RFC 6455 over asyncio).

Just enough to read the alert stream: the opening handshake, unfragmented text frames,
ping and close. A general-purpose client spends 10-20 us of Python per message; this one a
few, so a hundred clients sharing the machine with the service measure the service rather
than themselves. Every frame of one network read gets that read's arrival time.
"""

from __future__ import annotations

import asyncio
import base64
import os
import struct
import time
from collections.abc import Callable
from urllib.parse import urlsplit

OP_TEXT, OP_CLOSE, OP_PING, OP_PONG = 0x1, 0x8, 0x9, 0xA
NO_STATUS, ABNORMAL = 1005, 1006

OnMessage = Callable[[bytes, float], None]  # (payload, arrival time.time())


class HandshakeRefused(ConnectionError):
    pass


class AlertStream(asyncio.Protocol):
    """One websocket connection; `closed` resolves to the close code."""

    def __init__(self, on_message: OnMessage):
        self.on_message = on_message
        self.buffer = bytearray()
        loop = asyncio.get_running_loop()
        self.opened: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[int] = loop.create_future()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        now = time.time()
        self.buffer += data
        if not self.opened.done():
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            status = bytes(self.buffer[:self.buffer.find(b"\r\n")])
            del self.buffer[:end + 4]
            if b" 101 " not in status + b" ":
                self.opened.set_exception(HandshakeRefused(status.decode(errors="replace")))
                self.transport.close()
                return
            self.opened.set_result(None)
        self._read_frames(now)

    def _read_frames(self, now: float) -> None:
        buffer, offset = self.buffer, 0
        while len(buffer) - offset >= 2:
            opcode, size, start = buffer[offset] & 0x0F, buffer[offset + 1] & 0x7F, offset + 2
            if size == 126:
                if len(buffer) - offset < 4:
                    break
                size, start = struct.unpack_from("!H", buffer, offset + 2)[0], offset + 4
            elif size == 127:
                if len(buffer) - offset < 10:
                    break
                size, start = struct.unpack_from("!Q", buffer, offset + 2)[0], offset + 10
            if len(buffer) < start + size:
                break
            payload = bytes(buffer[start:start + size])
            offset = start + size
            if opcode == OP_TEXT:
                self.on_message(payload, now)
            elif opcode == OP_PING:
                self._send(OP_PONG, payload)
            elif opcode == OP_CLOSE:
                code = struct.unpack_from("!H", payload)[0] if len(payload) >= 2 else NO_STATUS
                self._finish(code)
                return
        del buffer[:offset]

    def _send(self, opcode: int, payload: bytes) -> None:
        # Client frames must be masked; the all-zero mask leaves the payload as it is.
        self.transport.write(struct.pack("!BB", 0x80 | opcode, 0x80 | len(payload)) + b"\0\0\0\0" + payload)

    def _finish(self, code: int) -> None:
        if not self.closed.done():
            self.closed.set_result(code)
        if self.transport is not None and not self.transport.is_closing():
            self._send(OP_CLOSE, struct.pack("!H", code if code not in (NO_STATUS, ABNORMAL) else 1000))
            self.transport.close()

    def close(self) -> None:
        self._finish(1000)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            self.opened.set_exception(ConnectionError("closed during the handshake"))
        if not self.closed.done():
            self.closed.set_result(ABNORMAL)


async def connect(url: str, on_message: OnMessage) -> AlertStream:
    """Open `ws://host:port/path?query` and return the stream once the server accepted it."""
    parts = urlsplit(url)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    _transport, stream = await asyncio.get_running_loop().create_connection(
        lambda: AlertStream(on_message), parts.hostname, parts.port or 80)
    key = base64.b64encode(os.urandom(16)).decode()
    stream.transport.write(f"GET {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
                           .encode())
    await stream.opened
    return stream
