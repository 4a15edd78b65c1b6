"""The orjson transcoder writes and reads exactly what the library's JSONTranscoder does.

Method: generate event states of every shape the transcoders take (registered types
nested in dicts, lists and tuples; text with escapes and non-ASCII; integers beyond
64 bits; floats; subclasses of plain types) and compare bytes and decoded values
with the stock transcoder, both ways round.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import pytest
from eventsourcing.persistence import (
    DatetimeAsISO,
    DecimalAsStr,
    JSONTranscoder,
    TranscodingNotRegisteredError,
    UUIDAsHex,
)
from hypothesis import given
from hypothesis import strategies as st

from infrastructure.transcoder import OrjsonTranscoder


def registered(transcoder: JSONTranscoder) -> JSONTranscoder:
    for transcoding in (UUIDAsHex(), DecimalAsStr(), DatetimeAsISO()):
        transcoder.register(transcoding)
    return transcoder


FAST = registered(OrjsonTranscoder())
STOCK = registered(JSONTranscoder())


class Level(enum.IntEnum):
    HIGH = 1


leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),  # unbounded: beyond 64 bits too
    st.floats(allow_nan=False),
    st.text(),
    st.uuids(),
    st.datetimes(timezones=st.just(UTC)),
    st.decimals(allow_nan=False, allow_infinity=False),
    st.just(Level.HIGH),
)
values = st.recursive(
    leaves,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.tuples(inner, inner),
        st.dictionaries(st.text(max_size=8), inner, max_size=4),
    ),
    max_leaves=20,
)
states = st.dictionaries(st.text(max_size=12), values, max_size=8)


def outcome(decode: Any, stored: bytes) -> tuple[str, Any]:
    try:
        return "value", decode(stored)
    except Exception as error:  # compared with the stock transcoder's, never hidden
        return "error", type(error)


@given(states)
def test_same_bytes_and_same_values_as_the_stock_transcoder(state: dict[str, Any]) -> None:
    stored = FAST.encode(state)
    assert stored == STOCK.encode(state)
    # An object of exactly the keys _type_ and _data_ is the format's own tag: both
    # transcoders misread or refuse it alike (metadata may not take that shape).
    assert outcome(FAST.decode, stored) == outcome(STOCK.decode, stored)


def test_a_ledger_event_round_trips_through_orjson() -> None:
    state = {
        "timestamp": datetime(2026, 11, 27, 10, 0, 0, 123456, tzinfo=UTC),
        "amount": 2**63 - 1,
        "transfer_id": UUID("2f1f0c58-2f7e-4b3a-9a44-8a4bd4d1d0c1"),
        "metadata": {"note": 'quote " backslash \\ newline \n é \u2028'},
    }
    stored = FAST.encode(state)
    assert stored == STOCK.encode(state)
    assert FAST.decode(stored) == state


def test_what_orjson_would_change_goes_through_the_stock_coder() -> None:
    # orjson refuses integers beyond 64 bits when writing and reads them back as floats.
    state = {"amount": 2**80, "nan": float("nan"), "level": Level.HIGH, "n": -(2**64)}
    stored = FAST.encode(state)
    assert stored == STOCK.encode(state)
    assert FAST.decode(stored)["amount"] == 2**80
    assert FAST.decode(stored)["n"] == -(2**64)


def test_an_unregistered_type_is_refused_as_by_the_stock_transcoder() -> None:
    with pytest.raises(TranscodingNotRegisteredError):
        FAST.encode({"value": object()})
    with pytest.raises(TranscodingNotRegisteredError):
        FAST.decode(b'{"value":{"_type_":"nobody","_data_":1}}')


def test_decimals_keep_their_digits() -> None:
    state = {"rate": Decimal("0.1000000000000000000000000001")}
    assert FAST.decode(FAST.encode(state)) == state
