"""The library's JSON event format, written and read with orjson.

``JSONTranscoder`` runs the standard library's encoder, which calls back into Python
for every UUID and datetime (a ledger event is mostly those). This transcoder writes
the same bytes: it first replaces every value of a registered type by the library's
tagged form ``{"_type_": name, "_data_": ...}`` and lets orjson write the result with
the same compact separators and unescaped UTF-8. Reading reverses it. Stored events
are therefore interchangeable with the stock transcoder, in both directions, and the
audit chain (computed over the stored bytes) is unaffected;
``tests/infrastructure/test_transcoder.py`` checks the byte-for-byte equality.

What orjson can't write or read exactly as the standard library would (an integer
beyond 64 bits, a float, a subclass of a plain type) falls back to the stock encoder
or decoder for that event.
"""

from __future__ import annotations

from typing import Any

import orjson
from eventsourcing.persistence import JSONTranscoder

# Written by orjson exactly as by the standard library. Floats are not (see _tagged).
_EXACT = frozenset({str, int, bool, type(None)})


class OrjsonTranscoder(JSONTranscoder):
    def encode(self, obj: Any) -> bytes:
        try:
            return orjson.dumps(self._tagged(obj))
        except (orjson.JSONEncodeError, _NotExact):
            return super().encode(obj)

    def decode(self, data: bytes) -> Any:
        try:
            return self._untagged(orjson.loads(data))
        except (orjson.JSONDecodeError, _NotExact):
            return super().decode(data)

    def _tagged(self, value: Any) -> Any:
        kind = type(value)
        if kind in _EXACT:
            return value
        if kind is dict:
            tagged = {}
            for key, item in value.items():
                if type(key) is not str:
                    raise _NotExact  # the standard library converts such keys; orjson refuses
                tagged[key] = item if type(item) in _EXACT else self._tagged(item)
            return tagged
        if kind is list or kind is tuple:
            return [item if type(item) in _EXACT else self._tagged(item) for item in value]
        transcoding = self.types.get(kind)
        if transcoding is not None:
            return {"_type_": transcoding.name, "_data_": self._tagged(transcoding.encode(value))}
        # A float (orjson writes 6.103515625e-05 as 0.00006103515625, and NaN as
        # null), or a subclass of a plain type (an enum, say): the standard library's.
        raise _NotExact

    def _untagged(self, value: Any) -> Any:
        kind = type(value)
        if kind is dict:
            if len(value) == 2 and "_type_" in value and "_data_" in value:
                # Decoded innermost first, as the stock decoder's object hook does.
                return self._decode_obj(
                    {"_type_": value["_type_"], "_data_": self._untagged(value["_data_"])}
                )
            return {
                key: item if type(item) in _EXACT else self._untagged(item)
                for key, item in value.items()
            }
        if kind is list:
            return [item if type(item) in _EXACT else self._untagged(item) for item in value]
        if kind is float:
            # orjson reads an integer beyond 64 bits as a float: let the stock decoder
            # read any number that came out as a float, exactly as it always has.
            raise _NotExact
        return value


class _NotExact(Exception):
    """orjson would not write exactly what the standard library writes."""
