"""Each stored row against the form the ledger writes, and its values for the replay.

The ledger writes every event the same way: the originator id a UUID (SQLite: TEXT
of 32 lower-case hex digits, ``UUID.hex``; PostgreSQL: a uuid column), the version an
INTEGER from 1, the topic UTF-8 TEXT, the state a BLOB (bytea). A row in another form
was written by something else, and the ledger may not see it as the log shows it: an
id in upper case is not found when the account is loaded (SQLite compares text case
by case) although the notification log, and so the views, still parse it to the same
UUID. Each difference is a problem at the row's position:

- ``originator_id``: the stored id is not a UUID, or not in the ledger's form;
- ``stored_type``: a column holds another type than the ledger writes (a state as
  TEXT, a version as text, a NULL);
- ``version``: a version below 1;
- ``event_type``: a topic that is not UTF-8 text.

These checks are cheap (no decoding) and run in every verify, ``--chain-only`` too.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from operator import itemgetter
from typing import Any
from uuid import UUID

from projections.audit.hashing import Row, StoredText, StoredUuid

_HEX_DIGITS = b"0123456789abcdef"
VALUE_SHOWN_LENGTH_MAX = 40
# Python type of a stored value -> the name of its type in the database.
_STORED_TYPES = {
    StoredText: "TEXT",
    str: "TEXT",
    bytes: "BLOB",
    int: "INTEGER",
    float: "REAL",
    type(None): "NULL",
    StoredUuid: "uuid",
    UUID: "uuid",
}

# (check, detail) of one stored value.
Finding = tuple[str, str]


def stored_type(value: Any) -> str:
    return _STORED_TYPES.get(type(value), type(value).__name__)


def shown(value: Any) -> str:
    """A stored value for a problem's detail: short, bytes as text where they are."""
    if isinstance(value, bytes) and type(value) is not StoredUuid:
        value = value.decode("utf-8", "backslashreplace")
    text = repr(value)
    if len(text) > VALUE_SHOWN_LENGTH_MAX:
        text = text[: VALUE_SHOWN_LENGTH_MAX - 3] + "..."
    return text


def _usual(row: Row) -> bool:
    """The ledger's own form, in one test (the common case, kept fast)."""
    _, originator_id, version, topic, state = row
    kind = type(originator_id)
    return (
        (kind is StoredUuid or kind is UUID or (kind is StoredText and _id_form(originator_id)))
        and type(version) is int
        and version >= 1
        and (type(topic) is str or type(topic) is StoredText)
        and type(state) is bytes
    )


def _id_form(text: bytes) -> bool:
    """32 lower-case hex digits (nothing left once they are deleted)."""
    return len(text) == 32 and not text.translate(None, _HEX_DIGITS)


def findings(rows: Sequence[Row]) -> Iterator[tuple[int, Finding]]:
    """(index in ``rows``, (check, detail)) for each value not in the ledger's form."""
    if _all_usual(rows):
        return
    text_topics: set[bytes] = set()  # topics seen to be UTF-8 in these rows
    for index, row in enumerate(rows):
        topic = row[3]
        if _usual(row) and (type(topic) is str or topic in text_topics or _utf8(topic)):
            if type(topic) is StoredText:
                text_topics.add(topic)
            continue
        for finding in _row_findings(row):
            yield index, finding


def _all_usual(rows: Sequence[Row]) -> bool:
    """Every row in the ledger's form, checked column by column in a few passes at C
    speed (a verify's common case: about a quarter of the cost of row by row)."""
    if not rows:
        return True
    ids = list(map(itemgetter(1), rows))
    id_kinds = set(map(type, ids))
    if id_kinds == {StoredText}:
        if set(map(len, ids)) != {32} or b"".join(ids).translate(None, _HEX_DIGITS):
            return False
    elif id_kinds != {StoredUuid} and id_kinds != {UUID}:
        return False
    versions = list(map(itemgetter(2), rows))
    if set(map(type, versions)) != {int} or min(versions) < 1:
        return False
    if set(map(type, map(itemgetter(4), rows))) != {bytes}:
        return False
    return all(
        type(topic) is str or (type(topic) is StoredText and (topic.isascii() or _utf8(topic)))
        for topic in set(map(itemgetter(3), rows))
    )


def _utf8(data: bytes) -> bool:
    try:
        data.decode()
    except UnicodeDecodeError:
        return False
    return True


def _row_findings(row: Row) -> Iterator[Finding]:
    _, originator_id, version, topic, state = row
    if type(originator_id) in (StoredText, str):
        data = originator_id if type(originator_id) is StoredText else originator_id.encode()
        parsed = parse_id(originator_id)
        if parsed is None:
            yield "originator_id", f"the stored originator id {shown(originator_id)} is not a UUID"
        elif not _id_form(data):
            yield (
                "originator_id",
                f"the stored originator id {shown(originator_id)} is not in the form the "
                f"ledger writes (32 lower-case hex digits): loading {parsed} does not read "
                "this event, though the log and the views do",
            )
    elif type(originator_id) not in (StoredUuid, UUID):
        yield _type_finding("originator_id", originator_id, "TEXT")
    if type(version) is not int:
        yield _type_finding("originator_version", version, "INTEGER")
    elif version < 1:
        yield "version", f"the stored version {version} is below 1"
    if type(topic) not in (StoredText, str):
        yield _type_finding("topic", topic, "TEXT")
    elif type(topic) is StoredText and not _utf8(topic):
        yield "event_type", f"the stored topic {shown(topic)} is not UTF-8 text"
    if type(state) is not bytes:
        yield _type_finding("state", state, "BLOB")


def _type_finding(column: str, value: Any, expected: str) -> Finding:
    return (
        "stored_type",
        f"{column} is stored as {stored_type(value)} ({shown(value)}); the ledger writes "
        f"{expected}",
    )


def parse_id(originator_id: Any) -> UUID | None:
    """The UUID a stored id names, as the log's readers parse it (any form UUID()
    takes), or None."""
    if isinstance(originator_id, UUID):
        return originator_id
    kind = type(originator_id)
    if kind is StoredUuid:
        return UUID(bytes=bytes(originator_id))
    try:
        if kind is StoredText:
            return UUID(originator_id.decode())
        if kind is str:
            return UUID(originator_id)
    except ValueError:  # not UTF-8, not a UUID
        return None
    return None


class Replayable:
    """The values the replay needs from a row, or None when it cannot use the row
    (``findings`` says why): topics are decoded once each."""

    def __init__(self) -> None:
        self._topics: dict[Any, str | None] = {}

    def values(self, row: Row) -> tuple[UUID, int, str, bytes] | None:
        _, originator_id, version, topic, state = row
        originator = parse_id(originator_id)
        topic_text = self.topic(topic)
        if (
            originator is None
            or type(version) is not int
            or version < 1
            or topic_text is None
            or not isinstance(state, bytes)
        ):
            return None
        # A state stored as TEXT is still read by the ledger (the transcoder takes
        # text); the replay reads it the same way.
        return originator, version, topic_text, state

    def topic(self, topic: Any) -> str | None:
        found = self._topics.get(topic, "")
        if found != "":
            return found
        text: str | None = None
        if type(topic) is str:
            text = topic
        elif type(topic) is StoredText and _utf8(topic):
            text = topic.decode()
        self._topics[topic] = text
        return text
