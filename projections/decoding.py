"""Notifications -> ``Positioned`` facts, fast enough for a rebuild.

Projections need a few plain fields of each event, not domain objects, so the
stored state is parsed with orjson and ids and timestamps are kept as the strings
the views store (32-digit hex ids, ISO 8601 timestamps). That is several times
quicker than ``mapper.to_domain_event``, which builds a ``UUID`` and a ``datetime``
for every value. The library's mapper is still the authority: its cipher and
compressor are applied first, and any event the fast path does not fully
understand (a class with ``class_version`` > 1 that needs upcasting, a custom type
other than UUID and datetime, a number orjson cannot hold) is decoded by
``to_domain_event`` and normalised to the same strings.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import orjson
from eventsourcing.persistence import JSONTranscoder, Mapper, Notification
from eventsourcing.utils import resolve_topic

from infrastructure.transcoder import OrjsonTranscoder
from projections.base import Positioned

_FAST_TYPES = ("uuid_hex", "datetime_iso")
# Transcoders that write the library's tagged JSON format exactly (see
# infrastructure.transcoder): their states may be read by the fast path.
_TAGGED_JSON_TRANSCODERS = (JSONTranscoder, OrjsonTranscoder)


class _Slow(Exception):
    """This state needs the library's decoder."""


class EventDecoder:
    def __init__(self, mapper: Mapper[Any]) -> None:
        self.mapper = mapper
        self.fast_allowed = type(mapper.transcoder) in _TAGGED_JSON_TRANSCODERS
        self._topics: dict[str, tuple[str, bool]] = {}

    def decode(self, notification: Notification) -> Positioned:
        kind, fast = self._topic(notification.topic)
        data = None
        if fast:
            try:
                data = self._fast(notification.state)
            except _Slow:
                data = None
        if data is None:
            data = self._slow(notification)
        return Positioned(
            notification.id,
            kind,
            notification.originator_id.hex,
            notification.originator_version,
            data,
        )

    def _topic(self, topic: str) -> tuple[str, bool]:
        found = self._topics.get(topic)
        if found is None:
            cls = resolve_topic(topic)
            fast = self.fast_allowed and getattr(cls, "class_version", 1) == 1
            found = self._topics[topic] = (cls.__qualname__, fast)
        return found

    def _fast(self, state: bytes) -> dict[str, Any]:
        mapper = self.mapper
        if mapper.cipher:
            state = mapper.cipher.decrypt(state)
        if mapper.compressor:
            state = mapper.compressor.decompress(state)
        try:
            data: dict[str, Any] = orjson.loads(state)
        except orjson.JSONDecodeError:
            raise _Slow() from None
        if "class_version" in data:
            raise _Slow()
        for key, value in data.items():
            if type(value) is float:
                # orjson reads an integer beyond 64 bits (a world account's balance)
                # as a float; the library's decoder reads it exactly.
                raise _Slow()
            if type(value) is dict:
                custom = value.get("_type_")
                if custom in _FAST_TYPES and "_data_" in value:
                    data[key] = value["_data_"]
                elif custom is not None or any(type(v) is not str for v in value.values()):
                    raise _Slow()  # only flat str -> str maps (metadata) are taken as is
        return data

    def _slow(self, notification: Notification) -> dict[str, Any]:
        event = self.mapper.to_domain_event(notification)
        return {
            key: _normalise(value)
            for key, value in vars(event).items()
            if key not in ("originator_id", "originator_version")
        }


def _normalise(value: Any) -> Any:
    if isinstance(value, UUID):
        return value.hex
    if isinstance(value, datetime):
        return value.isoformat()
    return value
