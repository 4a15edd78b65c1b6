"""The audit hash chain over the stored event log, byte for byte.

The chain is defined on what the database stores, not on decoded events, so an
auditor can recompute it with nothing but SQL access and SHA-256 (no key is needed
even when events are encrypted: the chain covers the stored, encrypted bytes)::

    h_0 = 32 zero bytes
    h_n = SHA-256( h_{n-1}
                 || position          8 bytes, unsigned big-endian
                 || originator_id     16 bytes, the UUID's bytes (RFC 4122 order)
                 || originator_version 8 bytes, unsigned big-endian
                 || len(topic)        4 bytes, unsigned big-endian
                 || topic             UTF-8
                 || len(state)        4 bytes, unsigned big-endian
                 || state )           the stored bytes, as they are in the table

The events are taken in ascending position order; a position with no event (a
sequence number PostgreSQL consumed for a rolled-back insert) contributes nothing,
but every hash covers the positions of all events before it, so deleting, inserting
or moving an event changes every later hash. A digest is written ``HEX@POSITION``:
the hash after the event at ``POSITION``.
"""

from __future__ import annotations

import hashlib
import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from uuid import UUID

ALGORITHM = "sha256-chain-v1"
GENESIS = bytes(32)

_LENGTH = struct.Struct(">I")
# A stored event as the chain reads it: position, originator id (16 bytes), version,
# topic, state.
Row = tuple[int, bytes, int, str, bytes]
_DIGEST_PATTERN = re.compile(r"^([0-9a-fA-F]{64})@([0-9]+)$")

# The fixed-size part between the previous hash and the topic: position,
# originator id, version, topic length.
_HEADER = struct.Struct(">Q16sQI")


def link(
    previous: bytes,
    position: int,
    originator_id: bytes,
    originator_version: int,
    topic: str,
    state: bytes,
) -> bytes:
    """The hash after one event, given the hash before it."""
    assert len(previous) == 32 and len(originator_id) == 16, (previous, originator_id)
    topic_bytes = topic.encode("utf-8")
    return hashlib.sha256(
        previous
        + _HEADER.pack(position, originator_id, originator_version, len(topic_bytes))
        + topic_bytes
        + _LENGTH.pack(len(state))
        + state
    ).digest()


def originator_bytes(originator_id: UUID | str) -> bytes:
    """The 16 bytes of an originator id, from a UUID or its hex text (as SQLite keeps it)."""
    if isinstance(originator_id, UUID):
        return originator_id.bytes
    return UUID(originator_id).bytes


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


def chain_hashes(previous: bytes, rows: Sequence[Row]) -> list[bytes]:
    """The hash after each of ``rows`` (position, originator id bytes, version, topic,
    state), starting from ``previous``: ``link`` in a tight loop, for throughput."""
    sha256 = hashlib.sha256
    pack_header = _HEADER.pack
    pack_length = _LENGTH.pack
    topics: dict[str, bytes] = {}
    hashes = []
    chain_hash = previous
    for position, originator_id, version, topic, state in rows:
        topic_bytes = topics.get(topic)
        if topic_bytes is None:
            topic_bytes = topics[topic] = topic.encode("utf-8")
        chain_hash = sha256(
            chain_hash
            + pack_header(position, originator_id, version, len(topic_bytes))
            + topic_bytes
            + pack_length(len(state))
            + state
        ).digest()
        hashes.append(chain_hash)
    return hashes
