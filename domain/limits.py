"""Limits on everything a client can send, checked before anything is recorded."""

from __future__ import annotations

from collections.abc import Mapping

from domain.errors import InvalidRequest

TEXT_LENGTH_MAX = 500
METADATA_KEYS_MAX = 50
METADATA_KEY_LENGTH_MAX = 40
METADATA_VALUE_LENGTH_MAX = 500
TIMEOUT_SECONDS_MAX = 30 * 24 * 3600
OVERDRAFT_LIMIT_MAX = 2**63 - 1
BATCH_SIZE_MAX = 1000
EVENTS_PAGE_SIZE_MAX = 1000
VIEW_PAGE_SIZE_MAX = 1000


def check_text(field: str, value: str) -> str:
    assert isinstance(value, str), type(value)
    if len(value) > TEXT_LENGTH_MAX:
        raise InvalidRequest(f"{field} is longer than {TEXT_LENGTH_MAX} characters")
    if "\x00" in value:
        # PostgreSQL text cannot hold NUL: refuse it before it reaches any view.
        raise InvalidRequest(f"{field} contains a NUL character")
    return value


EVENT_FORMAT_TAG_KEYS = frozenset({"_type_", "_data_"})


def check_metadata(metadata: Mapping[str, str] | None) -> dict[str, str]:
    """Returns a copy of ``metadata`` (str -> str) if it is within the limits."""
    metadata = dict(metadata or {})
    if len(metadata) > METADATA_KEYS_MAX:
        raise InvalidRequest(f"metadata holds at most {METADATA_KEYS_MAX} keys")
    if metadata.keys() == EVENT_FORMAT_TAG_KEYS:
        # The stored event format reads any object of exactly these two keys as a
        # tagged value (a UUID, a datetime): such metadata would come back as
        # something else, or not at all, and the event would stall every reader.
        raise InvalidRequest("metadata may not hold exactly the keys _type_ and _data_")
    for key, value in metadata.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise InvalidRequest("metadata maps strings to strings")
        if "\x00" in key or "\x00" in value:
            raise InvalidRequest("metadata contains a NUL character")
        if not 1 <= len(key) <= METADATA_KEY_LENGTH_MAX:
            raise InvalidRequest(f"metadata keys are 1 to {METADATA_KEY_LENGTH_MAX} characters")
        if len(value) > METADATA_VALUE_LENGTH_MAX:
            raise InvalidRequest(
                f"metadata values are at most {METADATA_VALUE_LENGTH_MAX} characters"
            )
    return metadata


def check_timeout(timeout_seconds: int) -> int:
    assert isinstance(timeout_seconds, int) and not isinstance(timeout_seconds, bool)
    if not 1 <= timeout_seconds <= TIMEOUT_SECONDS_MAX:
        raise InvalidRequest(f"timeout_seconds must be 1 to {TIMEOUT_SECONDS_MAX}")
    return timeout_seconds
