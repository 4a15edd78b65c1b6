"""The audit hash chain over the stored event log, byte for byte, as stored.

The chain is defined on what the database stores, in the form it stores it, not on
decoded events nor on values parsed from the rows: an auditor can recompute it with
nothing but SQL access and SHA-256 (no key is needed even when events are encrypted:
the chain covers the stored, encrypted bytes). Algorithm ``sha256-chain-v2``::

    h_0 = 32 zero bytes
    h_n = SHA-256( h_{n-1}
                 || position            8 bytes, signed big-endian
                 || field(originator_id)
                 || field(originator_version)
                 || field(topic)
                 || field(state) )
    field(v) = kind (1 byte) || len(data) (4 bytes, unsigned big-endian) || data

    kind  data
    "t"   text: the stored bytes (SQLite TEXT exactly as stored; PostgreSQL text, UTF-8)
    "b"   bytes: the stored bytes (SQLite BLOB, PostgreSQL bytea)
    "u"   uuid: the 16 bytes of a PostgreSQL uuid column, RFC 4122 order
    "i"   integer: 8 bytes, signed big-endian
    "r"   real: 8 bytes, IEEE 754 binary64, big-endian (SQLite REAL)
    "n"   null: no data

So an originator id is hashed as the 32 hex digits SQLite holds (upper-casing them
changes the hash, though it parses to the same UUID), and a value stored with another
type (a state as TEXT, a version as text) changes it too. The events are taken in
ascending position order; a position with no event (a sequence number PostgreSQL
consumed for a rolled-back insert) contributes nothing, but every hash covers the
positions of all events before it, so deleting, inserting or moving an event changes
every later hash. A digest is written ``HEX@POSITION``: the hash after the event at
``POSITION``.

``sha256-chain-v1``, the algorithm before, hashed the parsed UUID's bytes, the version
as unsigned and the topic and state without their types: it missed a change of the
stored id's form. It is kept to check a store chained with it before re-chaining it
(``projections.audit.upgrade``) and to check digests taken before that.
"""

from __future__ import annotations

import hashlib
import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

ALGORITHM = "sha256-chain-v2"
LEGACY_ALGORITHM = "sha256-chain-v1"
ALGORITHMS = (LEGACY_ALGORITHM, ALGORITHM)
GENESIS = bytes(32)


class StoredText(bytes):
    """A TEXT value as SQLite stores it: its bytes, valid UTF-8 or not (the SQLite
    event log reads text columns into this type, so nothing is decoded to hash it)."""


class StoredUuid(bytes):
    """The 16 bytes of a PostgreSQL uuid column."""


# A stored event as the chain reads it: position, then originator id, version, topic
# and state as the database holds them (StoredText, StoredUuid, str, bytes, int,
# float or None; a UUID from the in-memory store).
Row = tuple[int, Any, Any, Any, Any]
_DIGEST_PATTERN = re.compile(r"^([0-9a-fA-F]{64})@([0-9]+)$")

_POSITION = struct.Struct(">q")
_LENGTH = struct.Struct(">I")
_INTEGER = struct.Struct(">cIq")
_REAL = struct.Struct(">cId")
_KIND = struct.Struct(">cI")  # a field's kind and length
_HEAD = struct.Struct(">qcI")  # the position, then the id's kind and length


def field(value: Any) -> bytes:
    """One stored value, tagged with its kind and length (see the module docstring)."""
    kind = type(value)
    data: bytes
    if kind is StoredText:
        tag, data = b"t", value
    elif kind is bytes or kind is bytearray or kind is memoryview:
        tag, data = b"b", bytes(value)
    elif kind is int:
        return _INTEGER.pack(b"i", 8, value)
    elif kind is str:
        tag, data = b"t", value.encode("utf-8", "surrogatepass")
    elif kind is StoredUuid:
        tag, data = b"u", value
    elif kind is UUID:
        tag, data = b"u", value.bytes
    elif kind is float:
        return _REAL.pack(b"r", 8, value)
    elif value is None:
        tag, data = b"n", b""
    else:
        raise TypeError(f"no stored kind for a {kind.__name__}")
    return tag + _LENGTH.pack(len(data)) + data


def link(
    previous: bytes,
    position: int,
    originator_id: Any,
    originator_version: Any,
    topic: Any,
    state: Any,
) -> bytes:
    """The hash after one event, given the hash before it (the reference form)."""
    assert len(previous) == 32, previous
    return hashlib.sha256(
        previous
        + _POSITION.pack(position)
        + field(originator_id)
        + field(originator_version)
        + field(topic)
        + field(state)
    ).digest()


def chain_hashes(previous: bytes, rows: Sequence[Row]) -> list[bytes]:
    """The hash after each of ``rows``, starting from ``previous``: ``link`` in a
    tight loop, for throughput. The ledger's usual kinds (a text or uuid id, an
    integer version, a bytes state) are packed inline; topics repeat, so their fields
    are kept; anything else goes through ``field``."""
    sha256 = hashlib.sha256
    pack_position = _POSITION.pack
    pack_head = _HEAD.pack
    pack_kind = _KIND.pack
    pack_integer = _INTEGER.pack
    topics: dict[Any, bytes] = {}
    hashes = []
    chain_hash = previous
    for position, originator_id, version, topic, state in rows:
        topic_field = topics.get(topic)
        if topic_field is None:
            topic_field = topics[topic] = field(topic)
        kind = type(originator_id)
        if kind is StoredText:
            head = pack_head(position, b"t", len(originator_id)) + originator_id
        elif kind is StoredUuid:
            head = pack_head(position, b"u", 16) + originator_id
        else:
            head = pack_position(position) + field(originator_id)
        chain_hash = sha256(
            chain_hash
            + head
            + (pack_integer(b"i", 8, version) if type(version) is int else field(version))
            + topic_field
            + (pack_kind(b"b", len(state)) + state if type(state) is bytes else field(state))
        ).digest()
        hashes.append(chain_hash)
    return hashes


# sha256-chain-v1, for stores chained before v2 and the digests taken from them.

_HEADER_V1 = struct.Struct(">Q16sQI")


def link_v1(
    previous: bytes,
    position: int,
    originator_id: bytes,
    originator_version: int,
    topic: str,
    state: bytes,
) -> bytes:
    """The v1 hash after one event: the id as its UUID's 16 bytes, the version
    unsigned, the topic and the state without their types."""
    topic_bytes = topic.encode("utf-8")
    return hashlib.sha256(
        previous
        + _HEADER_V1.pack(position, originator_id, originator_version, len(topic_bytes))
        + topic_bytes
        + _LENGTH.pack(len(state))
        + state
    ).digest()


def chain_hashes_v1(previous: bytes, rows: Sequence[Row]) -> list[bytes]:
    """The v1 hash after each of ``rows``. A row v1 cannot hash (an id that is not a
    UUID, a negative version, a state that is not bytes) could not have been chained
    by v1 as it is: it gets a hash no v1 chain holds, so the chain differs there."""
    hashes = []
    chain_hash = previous
    for row in rows:
        parts = _v1_parts(row)
        if parts is None:
            unhashable = chain_hash + b"\x00not hashable by v1" + field(row[1])
            chain_hash = hashlib.sha256(unhashable).digest()
        else:
            chain_hash = link_v1(chain_hash, *parts)
        hashes.append(chain_hash)
    return hashes


def _v1_parts(row: Row) -> tuple[int, bytes, int, str, bytes] | None:
    """The values v1 hashed, or None if v1 could not have read this row as it is now
    (it read the id and the topic as text or uuid, the state as bytes)."""
    position, originator_id, version, topic, state = row
    try:
        if type(originator_id) is StoredUuid:
            uuid_bytes = bytes(originator_id)
        elif type(originator_id) is UUID:
            uuid_bytes = originator_id.bytes
        elif type(originator_id) in (StoredText, str):
            text = originator_id.decode() if type(originator_id) is StoredText else originator_id
            uuid_bytes = UUID(text).bytes
        else:
            return None
        topic_text = topic.decode() if type(topic) is StoredText else topic
    except ValueError:  # not a UUID, not UTF-8
        return None
    if (
        type(version) is not int
        or not 0 <= version < 2**64
        or type(topic_text) is not str
        or type(state) is not bytes
    ):
        return None
    return position, uuid_bytes, version, topic_text, state


CHAIN_FUNCTIONS = {ALGORITHM: chain_hashes, LEGACY_ALGORITHM: chain_hashes_v1}


@dataclass(frozen=True)
class Digest:
    """The chain hash after the event at ``position``; kept outside the database."""

    position: int
    hash: bytes

    def __str__(self) -> str:
        return f"{self.hash.hex()}@{self.position}"


def parse_digest(text: str) -> Digest:
    """Parses ``HEX@POSITION``; raises ValueError naming the expected form."""
    match = _DIGEST_PATTERN.fullmatch(text.strip())
    if match is None:
        raise ValueError("a digest is 64 hex digits, '@' and a position, like abcd...ef@1200")
    return Digest(position=int(match.group(2)), hash=bytes.fromhex(match.group(1)))
