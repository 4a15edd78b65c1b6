"""Buffered random ids: version 4, unique, and not shared with a forked child."""

from __future__ import annotations

import os
import uuid

from infrastructure.ids import new_id


def test_ids_are_random_version_4_uuids_and_unique() -> None:
    ids = [new_id() for _ in range(20_000)]  # several refills of the buffer
    assert len(set(ids)) == len(ids)
    assert all(i.version == 4 and i.variant == uuid.RFC_4122 for i in ids)


def test_a_forked_child_does_not_repeat_its_parents_ids() -> None:
    new_id()  # the parent's buffer now holds ids it will hand out next
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: send its next ids, then leave at once
        os.close(reader)
        os.write(writer, b"".join(new_id().bytes for _ in range(100)))
        os._exit(0)
    os.close(writer)
    with os.fdopen(reader, "rb") as pipe:
        data = pipe.read()
    os.waitpid(pid, 0)
    child = {uuid.UUID(bytes=data[i : i + 16]) for i in range(0, len(data), 16)}
    parent = {new_id() for _ in range(100)}
    assert len(child) == 100 and not child & parent
