"""MQTT 3.1.1 framing of the lean subscriber: packets split across reads are kept whole."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from ingest import mqtt_wire as wire


def publish(topic: str, payload: bytes, packet_id: int | None) -> bytes:
    """A PUBLISH as a broker sends it (QoS 1 when it has a packet id)."""
    body = len(topic.encode()).to_bytes(2, "big") + topic.encode()
    if packet_id is not None:
        body += packet_id.to_bytes(2, "big")
    return wire._packet(0x32 if packet_id is not None else 0x30, body + payload)  # noqa: SLF001


packets = st.lists(st.tuples(st.text(min_size=1, max_size=30), st.binary(max_size=20_000),
                             st.one_of(st.none(), st.integers(1, 65535))), min_size=1, max_size=8)


@settings(max_examples=200, deadline=None)
@given(packets, st.data())
def test_packets_cut_anywhere_come_out_whole_and_in_order(sent, data):
    stream = b"".join(publish(*p) for p in sent)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=5)))
    received, pending = [], b""
    for start, end in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        pending += stream[start:end]
        consumed = 0
        for kind, flags, body_start, body_end in wire.split_packets(pending):
            assert kind == wire.PUBLISH
            topic_end = body_start + 2 + int.from_bytes(pending[body_start:body_start + 2], "big")
            packet_id = None
            if flags & 0x06:
                packet_id = int.from_bytes(pending[topic_end:topic_end + 2], "big")
                topic_end += 2
            received.append((pending[body_start + 2:topic_end - (2 if packet_id else 0)].decode(),
                             pending[topic_end:body_end], packet_id))
            consumed = body_end
        pending = pending[consumed:]
    assert pending == b""
    assert received == sent


def test_remaining_length_uses_up_to_four_bytes():
    assert wire._remaining_length(127) == b"\x7f"  # noqa: SLF001
    assert wire._remaining_length(128) == b"\x80\x01"  # noqa: SLF001
    assert wire._remaining_length(268_435_455) == b"\xff\xff\xff\x7f"  # noqa: SLF001
