"""The front's message codec (proxy/pldiffix_proxy/codec.py): framing and the fields it reads."""

from __future__ import annotations

import struct

import pytest

from pldiffix_proxy import codec
from pldiffix_proxy.codec import ProtocolError


def test_reader_cuts_a_stream_into_messages_across_feeds():
    stream = codec.query("SELECT 1") + codec.SYNC + codec.query("SELECT 2")
    reader = codec.Reader(1024)
    got = []
    for i in range(len(stream)):  # one byte at a time
        reader.feed(stream[i : i + 1])
        got.extend(reader.messages())
    assert [(m.kind, m.body) for m in got] == [
        (b"Q", b"SELECT 1\0"),
        (b"S", b""),
        (b"Q", b"SELECT 2\0"),
    ]
    assert b"".join(m.raw for m in got) == stream


@pytest.mark.parametrize("length", [0, 3, 1025, 0xFFFFFFFF])
def test_reader_refuses_lengths_out_of_bounds(length):
    reader = codec.Reader(1024)
    reader.feed(b"Q" + struct.pack("!I", length))
    with pytest.raises(ProtocolError, match="out of bounds"):
        reader.messages()


def _startup(parameters: bytes) -> bytes:
    body = struct.pack("!I", codec.PROTOCOL_3) + parameters
    return struct.pack("!I", len(body) + 4) + body


def test_startup_parameters_are_read():
    startup = codec.parse_startup(_startup(b"user\0ana\0database\0bank\0\0"))
    assert startup.code == codec.PROTOCOL_3
    assert startup.parameters == {"user": "ana", "database": "bank"}


@pytest.mark.parametrize(
    ("packet", "reason"),
    [
        (_startup(b"user\0ana\0"), "not terminated"),
        (_startup(b"user\0\0"), "pairs"),
        (_startup(b"database\0bank\0\0"), "no user"),
        (_startup(b"user\0\xff\0\0"), "UTF-8"),
        (struct.pack("!II", 8, 2 << 16), "unsupported protocol version 2.0"),
        (struct.pack("!III", 12, codec.CANCEL_REQUEST, 1), "16 bytes"),
        (b"\0\0\0\x05x", "too short"),
    ],
)
def test_bad_startup_packets_are_refused(packet, reason):
    with pytest.raises(ProtocolError, match=reason):
        codec.parse_startup(packet)


@pytest.mark.parametrize("length", [4, 7, 10_001])
def test_startup_length_is_bounded(length):
    with pytest.raises(ProtocolError):
        codec.startup_length(struct.pack("!I", length))


def test_bind_round_trips_with_null_and_binary_values():
    raw = codec.encode_bind("p", "s", [0, 1], [b"Rome", None], [1])
    message = codec.Reader(1024)
    message.feed(raw)
    (parsed,) = message.messages()
    bind = codec.parse_bind(parsed.body)
    assert (bind.portal, bind.statement) == ("p", "s")
    assert bind.values == [b"Rome", None]
    assert [bind.format_of(0), bind.format_of(1)] == [0, 1]
    assert bind.result_formats == [1]


def test_one_format_code_applies_to_every_parameter():
    body = codec.encode_bind("", "", [1], [b"a", b"b"], [])[5:]
    bind = codec.parse_bind(body)
    assert [bind.format_of(0), bind.format_of(1)] == [1, 1]


@pytest.mark.parametrize(
    "body",
    [
        b"\0\0\xff\xff",  # negative format count
        b"\0\0\0\0\0\x01\0\0\0\x09ab",  # a value longer than the message
        b"\0\0\0\x02\0\0\0\0\0\x01\0\0\0\x01a\0\0",  # two format codes, one parameter
        b"portal",  # unterminated name
    ],
)
def test_malformed_binds_are_refused(body):
    with pytest.raises(ProtocolError):
        codec.parse_bind(body)


def test_parse_message_fields():
    body = codec.parse("s1", "SELECT $1", [23])[5:]
    assert codec.parse_parse(body) == codec.Parse("s1", "SELECT $1", [23])


def test_row_description_round_trips():
    columns = [
        codec.Column("city", 0, 0, 25, -1, -1, 0),
        codec.Column("count", 16384, 2, 20, 8, -1, 1),
    ]
    raw = codec.encode_row_description(columns)
    assert raw[:1] == b"T"
    assert codec.parse_row_description(raw[5:]) == columns


def test_describe_and_close_targets():
    assert codec.parse_target(codec.describe("S", "s1")[5:]) == ("S", "s1")
    assert codec.parse_target(codec.close("P", "")[5:]) == ("P", "")
    with pytest.raises(ProtocolError):
        codec.parse_target(b"Xname\0")


def test_error_response_carries_its_fields():
    raw = codec.error_response("0A000", "no", hint="try this")
    fields = codec.parse_error_fields(raw[5:])
    assert fields["C"] == "0A000" and fields["M"] == "no" and fields["H"] == "try this"
    assert fields["S"] == "ERROR"


def test_internal_context_is_dropped_from_errors_of_the_fronts_own_statements():
    body = b"SERROR\0C0A000\0Mno\0Htry\0WPL/pgSQL function diffix.proxy_plan\0P12\0qSELECT\0\0"
    raw = codec.without_internal_context(body)
    fields = codec.parse_error_fields(raw[5:])
    assert fields == {"S": "ERROR", "C": "0A000", "M": "no", "H": "try"}
    assert raw.endswith(b"\0\0")


def test_cancel_request_carries_the_relayed_backend_key():
    packet = codec.cancel_request(b"\x00\x00\x10\x01\xde\xad\xbe\xef")
    startup = codec.parse_startup(packet)
    assert startup.code == codec.CANCEL_REQUEST
    assert startup.raw[8:] == b"\x00\x00\x10\x01\xde\xad\xbe\xef"


def test_reader_tells_the_size_of_a_message_begun():
    reader = codec.Reader(1 << 20)
    message = codec.query("x" * 1000)
    reader.feed(message[:4])
    assert reader.incomplete_length() is None
    reader.feed(message[4:100])
    assert reader.incomplete_length() == len(message)
    assert reader.messages() == []
    reader.feed(message[100:])
    assert [m.raw for m in reader.messages()] == [message]
    assert reader.incomplete_length() is None and reader.buffered() == 0


def test_reader_bound_can_be_raised_after_sign_in():
    reader = codec.Reader(codec.MAX_AUTH_MESSAGE_LENGTH)
    reader.feed(codec.query("x" * codec.MAX_AUTH_MESSAGE_LENGTH))
    with pytest.raises(ProtocolError, match="65540 is out of bounds"):
        reader.incomplete_length()
    reader.max_length = 1 << 20
    assert len(reader.messages()) == 1


def test_a_hint_is_added_after_the_servers_own():
    error = codec.error_response("28000", "no", hint="first", severity="FATAL")
    fields = codec.parse_error_fields(codec.with_hint(error[5:], "second")[5:])
    assert (fields["C"], fields["M"], fields["H"]) == ("28000", "no", "first\nsecond")
    plain = codec.parse_error_fields(
        codec.with_hint(codec.error_response("28000", "no")[5:], "h")[5:]
    )
    assert plain["H"] == "h"
