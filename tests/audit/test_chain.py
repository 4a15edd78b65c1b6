"""The hash chain: its published algorithm, and the audit_chain projection's
exactly-once checkpoints.

Method: re-implement the verifier from the README's description in a few lines,
independently of ``projections.audit.hashing``, and compare with the digest (on
SQLite and PostgreSQL, reading the rows as each stores them); run two
followers at once on separate view connections and check the checkpoints are
exactly one per event with the right hashes; restart a follower midway.
"""

from __future__ import annotations

import hashlib
import struct
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from eventsourcing.cryptography import AESCipher

from infrastructure.persistence import build_ledger
from infrastructure.settings import Settings
from infrastructure.views import ViewStore
from projections.audit import Audit
from projections.audit.chain import AuditChain
from projections.audit.hashing import (
    ALGORITHM,
    GENESIS,
    Digest,
    StoredText,
    StoredUuid,
    chain_hashes,
    link,
    parse_digest,
)
from projections.audit.store import START, ChainBatch, ChainPoint
from tests.audit.conftest import Audited, Tamper, populate


def readme_field(value: Any) -> bytes:
    """One stored value, as the README's table says (rows from ``Tamper.stored_rows``)."""
    if isinstance(value, tuple):
        kind, data = {"text": b"t", "uuid": b"u"}[value[0]], value[1]
    elif isinstance(value, bytes):
        kind, data = b"b", value
    elif isinstance(value, int):
        kind, data = b"i", struct.pack(">q", value)
    elif isinstance(value, float):
        kind, data = b"r", struct.pack(">d", value)
    else:
        kind, data = b"n", b""
    return kind + struct.pack(">I", len(data)) + data


def readme_verifier(rows: list[tuple[Any, ...]]) -> str:
    """The README's algorithm, written from its text alone."""
    h = bytes(32)
    for position, *values in rows:
        h = hashlib.sha256(
            h + struct.pack(">q", position) + b"".join(readme_field(v) for v in values)
        ).digest()
    return f"{h.hex()}@{rows[-1][0]}"


class TestAlgorithm:
    def test_a_few_lines_of_sql_and_sha256_reproduce_the_digest(
        self, audited: Audited, tamper: Tamper
    ) -> None:
        populate(audited.ledger)
        digest = audited.audit.digest()
        rows = tamper.stored_rows()
        assert readme_verifier(rows) == digest["digest"]
        assert digest["algorithm"] == ALGORITHM == "sha256-chain-v2"
        assert digest["events"] == len(rows)

    @pytest.mark.parametrize("audit_settings", ["sqlite"], indirect=True)
    def test_the_readmes_verifier_as_pasted_prints_the_digest(
        self, tmp_path: Path, audited: Audited
    ) -> None:
        populate(audited.ledger)
        digest = audited.audit.digest()["digest"]
        readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
        after = readme[readme.index("A complete verifier for a SQLite ledger") :]
        script = after[after.index("```python\n") + 10 : after.index("\n```\n")]
        (tmp_path / "verify_chain.py").write_text(script)
        printed = subprocess.run(
            [sys.executable, str(tmp_path / "verify_chain.py"), audited.settings.database.path],
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        assert printed == digest

    def test_the_first_link_of_a_known_event(self) -> None:
        originator = StoredText(b"12345678123456781234567812345678")
        expected = hashlib.sha256(
            GENESIS
            + (1).to_bytes(8, "big")
            + b"t" + (32).to_bytes(4, "big") + bytes(originator)
            + b"i" + (8).to_bytes(4, "big") + (1).to_bytes(8, "big")
            + b"t" + (3).to_bytes(4, "big") + b"a:B"
            + b"b" + (2).to_bytes(4, "big") + b"{}"
        ).digest()  # fmt: skip
        assert link(GENESIS, 1, originator, 1, StoredText(b"a:B"), b"{}") == expected
        # PostgreSQL: the id is a uuid column's 16 bytes; text is UTF-8.
        uuid = UUID("12345678-1234-5678-1234-567812345678")
        assert link(GENESIS, 1, StoredUuid(uuid.bytes), 1, "a:B", b"{}") == hashlib.sha256(
            GENESIS
            + (1).to_bytes(8, "big")
            + b"u" + (16).to_bytes(4, "big") + uuid.bytes
            + b"i" + (8).to_bytes(4, "big") + (1).to_bytes(8, "big")
            + b"t" + (3).to_bytes(4, "big") + b"a:B"
            + b"b" + (2).to_bytes(4, "big") + b"{}"
        ).digest()  # fmt: skip

    def test_the_stored_form_is_hashed_not_the_parsed_value(self) -> None:
        lower = UUID("12345678-1234-5678-1234-56781234abcd").hex
        same_uuid = [StoredText(lower.encode()), StoredText(lower.upper().encode())]
        hashes = {link(GENESIS, 1, i, 1, "a:B", b"{}") for i in same_uuid}
        assert len(hashes) == 2
        # The same bytes as text or as a blob, the same number as text or integer.
        assert link(GENESIS, 1, same_uuid[0], 1, "a:B", b"{}") != link(
            GENESIS, 1, same_uuid[0], 1, "a:B", StoredText(b"{}")
        )
        assert link(GENESIS, 1, same_uuid[0], 1, "a:B", b"{}") != link(
            GENESIS, 1, same_uuid[0], StoredText(b"1"), "a:B", b"{}"
        )

    def test_the_fast_loop_equals_the_reference_link(self) -> None:
        rows: list[tuple[int, Any, Any, Any, Any]] = [
            (
                position,
                StoredText(UUID(int=position).hex.encode()),
                1 + position % 3,
                StoredText(f"t:{position % 2}".encode()),
                b"s" * position,
            )
            for position in (1, 2, 5, 6, 300)
        ]
        rows += [
            (301, StoredUuid(UUID(int=1).bytes), 2, "t:1", b"x"),
            (302, UUID(int=2), -3, StoredText(b"\xff"), StoredText(b"{}")),
            (303, b"blob id", 2.5, None, None),
            (304, None, StoredText(b"3"), b"topic as blob", 7),
        ]
        expected, chain_hash = [], GENESIS
        for row in rows:
            chain_hash = link(chain_hash, *row)
            expected.append(chain_hash)
        assert chain_hashes(GENESIS, rows) == expected

    def test_digests_round_trip_and_bad_ones_are_refused(self) -> None:
        digest = Digest(position=42, hash=bytes(range(32)))
        assert parse_digest(str(digest)) == digest
        for bad in ("", "abc@1", f"{'0' * 64}", f"{'0' * 64}@", f"{'g' * 64}@1", "@5"):
            try:
                parse_digest(bad)
            except ValueError:
                continue
            raise AssertionError(f"{bad!r} was accepted")


class TestAuditChainProjection:
    def test_keeps_a_checkpoint_per_event_and_its_head(self, audited: Audited) -> None:
        populate(audited.ledger)
        chain = audited.audit.chain
        assert chain.catch_up() == audited.ledger.head_position()
        head = chain.head()
        checkpoints = chain.store.checkpoints(0, head.position)
        assert len(checkpoints) == head.events == audited.ledger.head_position()
        assert checkpoints[-1] == head
        assert chain.catch_up() == 0  # nothing new: nothing written

    def test_sparse_checkpoints_locate_a_change_to_a_range(
        self, audited: Audited, tamper: Tamper
    ) -> None:
        populate(audited.ledger)
        chain = AuditChain(audited.ledger, views=audited.views, checkpoint_interval=10)
        audited.audit.chain = chain
        chain.catch_up()
        assert [c[2] for c in chain.store.checkpoints(0, 10**9)][:2] == [10, 20]
        position = tamper.positions()[12]
        tamper.flip_timestamp_digit(position)
        problem = audited.audit.verify().problems[0]
        assert problem.check == "chain" and problem.position == tamper.positions()[19]
        assert f"{tamper.positions()[9] + 1}..{problem.position}" in problem.detail

    def test_a_batch_is_applied_once_when_two_followers_race(self, audited: Audited) -> None:
        populate(audited.ledger)
        for _ in range(20):
            populate(audited.ledger)
        second_views = ViewStore.from_settings(audited.settings)
        try:
            followers = [
                AuditChain(audited.ledger, views=views, batch_size=7)
                for views in (audited.views, second_views)
            ]
            threads = [threading.Thread(target=f.catch_up) for f in followers]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        finally:
            second_views.close()
        chain = audited.audit.chain
        head = chain.head()
        assert head.position == head.events == audited.ledger.head_position()
        assert len(chain.store.checkpoints(0, head.position)) == head.events
        assert audited.audit.verify(catch_up=False).ok

    def test_a_stale_batch_is_refused(self, audited: Audited) -> None:
        populate(audited.ledger)
        store = audited.audit.chain.store
        audited.audit.chain.catch_up()
        stale = ChainBatch(previous=START, head=ChainPoint(1, bytes(32), 1))
        assert store.commit(stale) is False
        assert audited.audit.verify(catch_up=False).ok

    def test_a_restart_continues_where_it_stopped(self, audited: Audited) -> None:
        populate(audited.ledger)
        first = AuditChain(audited.ledger, views=audited.views, batch_size=5)
        first.step(stop=audited.ledger.head_position())
        assert first.head().position == 5
        populate(audited.ledger)
        restarted = AuditChain(audited.ledger, views=audited.views, batch_size=5)
        restarted.catch_up()
        assert restarted.head().events == audited.ledger.head_position()
        assert audited.audit.verify(catch_up=False).ok


def test_an_encrypted_compressed_log_verifies_and_its_chain_needs_no_key(
    tmp_path: object,
) -> None:
    """The chain covers the stored (encrypted) bytes; the invariants decrypt."""

    settings = Settings(
        database_url=f"sqlite:///{tmp_path}/secret.db",
        cipher_key=AESCipher.create_key(32),
        compress=True,
    )
    ledger = build_ledger(settings)
    views = ViewStore.from_settings(settings)
    try:
        populate(ledger)
        audit = Audit(ledger, views)
        digest = audit.digest()
        result = audit.verify()
        assert result.ok and "invariants" in result.checks, result.problems
        tamper = Tamper(settings)
        rows = tamper.stored_rows()
        tamper.close()
        assert b"balance_after" not in b"".join(bytes(r[4]) for r in rows)
        assert readme_verifier(rows) == digest["digest"]
    finally:
        views.close()
        ledger.close()


def test_the_in_memory_store_is_audited_too() -> None:
    settings = Settings(database_url="memory://")
    ledger = build_ledger(settings)
    views = ViewStore.from_settings(settings)
    try:
        populate(ledger)
        audit = Audit(ledger, views)
        assert audit.digest()["events"] == ledger.head_position()
        assert audit.verify().ok
    finally:
        views.close()
        ledger.close()
