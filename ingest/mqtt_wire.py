"""The few MQTT 3.1.1 packets a telemetry subscriber needs, as bytes (OASIS MQTT 3.1.1, §2-3).

Only what `ingest.telemetry_subscriber` sends and reads: CONNECT/CONNACK, SUBSCRIBE/SUBACK,
UNSUBSCRIBE/UNSUBACK, PUBLISH (QoS 0 and 1) and its PUBACK, PINGREQ/PINGRESP, DISCONNECT.
"""

from __future__ import annotations

import struct

CONNACK, PUBLISH, PUBACK, SUBACK, UNSUBACK, PINGRESP = 2, 3, 4, 9, 11, 13
PINGREQ = b"\xc0\x00"
DISCONNECT = b"\xe0\x00"
SUBACK_FAILURE = 0x80

#: CONNACK return codes (§3.2.2.3)
CONNACK_REFUSED = {1: "unacceptable protocol version", 2: "client identifier rejected", 3: "server unavailable",
                   4: "bad user name or password", 5: "not authorised"}


class ProtocolError(Exception):
    """The broker sent something this subscriber cannot read; the connection is dropped."""


def _string(text: str) -> bytes:
    data = text.encode("utf-8")
    return struct.pack("!H", len(data)) + data


def _remaining_length(length: int) -> bytes:
    out = bytearray()
    while True:
        byte, length = length % 128, length // 128
        out.append(byte | (0x80 if length else 0))
        if not length:
            return bytes(out)


def _packet(first_byte: int, body: bytes) -> bytes:
    return bytes((first_byte,)) + _remaining_length(len(body)) + body


def connect(client_id: str, keepalive_s: int, *, clean_session: bool, username: str | None,
            password: str | None) -> bytes:
    flags = (0x02 if clean_session else 0) | (0x80 if username is not None else 0) | (
        0x40 if password is not None else 0)
    body = _string("MQTT") + bytes((4, flags)) + struct.pack("!H", keepalive_s) + _string(client_id)
    if username is not None:
        body += _string(username)
    if password is not None:
        body += _string(password)
    return _packet(0x10, body)


def subscribe(packet_id: int, topic_filters: list[str], qos: int) -> bytes:
    body = struct.pack("!H", packet_id) + b"".join(_string(f) + bytes((qos,)) for f in topic_filters)
    return _packet(0x82, body)


def unsubscribe(packet_id: int, topic_filters: list[str]) -> bytes:
    return _packet(0xA2, struct.pack("!H", packet_id) + b"".join(_string(f) for f in topic_filters))


def puback(packet_id: bytes) -> bytes:
    """`packet_id` as the two bytes it arrived in."""
    return b"\x40\x02" + packet_id


def split_packets(data: bytes, start: int = 0):
    """Yield (packet type, flags, body start, body end) of each complete packet in `data` from
    `start`; the caller keeps `data[end of the last one:]` for the next read."""
    size = len(data)
    while start + 2 <= size:
        first = data[start]
        length, multiplier, i = 0, 1, start + 1
        while True:
            if i >= size:
                return  # the length itself is not complete yet
            byte = data[i]
            length += (byte & 0x7F) * multiplier
            i += 1
            if byte < 0x80:
                break
            multiplier *= 128
            if multiplier > 128**3:
                raise ProtocolError("remaining length longer than 4 bytes")
        end = i + length
        if end > size:
            return
        yield first >> 4, first & 0x0F, i, end
        start = end
