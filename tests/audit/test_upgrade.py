"""A store chained with sha256-chain-v1 keeps verifying: re-chained with v2 once it is
shown unchanged, and reported, not re-chained, when it is not.

Method: populate a ledger and chain its stored rows the way the earlier version did
(v1 checkpoints after every event, its head, no algorithm recorded), keeping its
digest as an auditor would have. Then run this version: an unchanged store is
re-chained with v2 by the first ``digest``, and the v1 digest still verifies (its
algorithm is computed beside, up to the upgrade's position). A store changed after
it was chained is not re-chained (that would bless the change): ``digest`` refuses
(CLI exit 1, HTTP 409), ``verify`` checks with v1 and reports the change and
``chain_algorithm``, the chain follower stays alive and logs it once; ``audit
rechain --yes`` accepts the log as it is, and the v1 digest then shows the change.
On SQLite, an id whose case was changed after v1 chained it (v1's blind spot: it
hashed the parsed UUID) also blocks the upgrade, through the stored-form check.
"""

from __future__ import annotations

import json
import logging
import threading
from uuid import UUID

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from api.app import create_app
from api.cli import app as cli
from projections.audit import Audit, ChainUpgradeBlocked
from projections.audit.hashing import ALGORITHM, GENESIS, LEGACY_ALGORITHM, link_v1, parse_digest
from tests.audit.conftest import Audited, Tamper, populate


def chain_with_v1(audited: Audited, tamper: Tamper) -> str:
    """Chains the stored log as the earlier version did; returns its digest."""
    checkpoints, chain_hash, position = [], GENESIS, 0
    for number, (position, originator, version, topic, state) in enumerate(tamper.stored_rows(), 1):
        kind, data = originator
        uuid = data if kind == "uuid" else UUID(data.decode()).bytes
        chain_hash = link_v1(chain_hash, position, uuid, version, topic[1].decode(), state)
        checkpoints.append((position, chain_hash, number))
    with audited.views.transaction() as tx:
        tx.execute("DELETE FROM audit_chain_meta")  # the earlier version had none
        tx.executemany(
            "INSERT INTO audit_chain_checkpoints (position, hash, events) VALUES (?, ?, ?)",
            checkpoints,
        )
        tx.execute(
            "INSERT INTO audit_chain_head (name, hash, events) VALUES (?, ?, ?)",
            ("audit_chain", chain_hash, len(checkpoints)),
        )
        tx.set_position("audit_chain", position)
    return f"{chain_hash.hex()}@{position}"


def fresh_audit(audited: Audited) -> Audit:
    """The audit as a newly started process of this version sees the store."""
    return Audit(audited.ledger, audited.views)


class TestAnUnchangedV1Store:
    def test_is_rechained_and_its_v1_digest_still_verifies(
        self, audited: Audited, tamper: Tamper
    ) -> None:
        populate(audited.ledger)
        v1_digest = chain_with_v1(audited, tamper)
        audit = fresh_audit(audited)
        assert audit.chain.algorithm() == LEGACY_ALGORITHM
        head = audit.digest()
        assert head["algorithm"] == ALGORITHM
        assert head["events"] == len(tamper.positions())
        assert audit.chain.store.upgrade() == (int(v1_digest.split("@")[1]), LEGACY_ALGORITHM)
        assert head["digest"] != v1_digest
        result = audit.verify(parse_digest(v1_digest))
        assert result.ok, result.problems
        assert f"digest ({LEGACY_ALGORITHM}, taken before the chain was upgraded)" in (
            result.checks
        )
        assert audit.verify(parse_digest(head["digest"])).ok
        populate(audited.ledger)  # later events change nothing for either digest
        assert audit.verify(parse_digest(v1_digest)).ok


class TestAV1StoreChangedAfterItWasChained:
    def test_is_reported_not_rechained_until_accepted(
        self, audited: Audited, tamper: Tamper
    ) -> None:
        populate(audited.ledger)
        v1_digest = chain_with_v1(audited, tamper)
        position = tamper.position_of("Transfer.Posted", 1)
        tamper.flip_timestamp_digit(position)
        audit = fresh_audit(audited)
        with pytest.raises(ChainUpgradeBlocked):
            audit.digest()
        result = audit.verify(parse_digest(v1_digest))
        assert result.head["algorithm"] == LEGACY_ALGORITHM
        assert (result.problems[0].check, result.problems[0].position) == ("chain", position)
        assert "chain_algorithm" in {p.check for p in result.problems}
        assert audit.chain.algorithm() == LEGACY_ALGORITHM  # still as it was

        database = ["--database", audited.settings.database_url]
        digest = CliRunner().invoke(cli, ["audit", "digest", *database])
        assert digest.exit_code == 1 and "audit rechain" in " ".join(digest.output.split())
        settings = audited.settings.model_copy(update={"run_projections": False})
        with TestClient(create_app(settings)) as client:
            assert client.get("/v1/audit/digest").status_code == 409
            report = client.post("/v1/audit/verify").json()
            assert report["ok"] is False and report["problems"][0]["position"] == position

        rechained = CliRunner().invoke(cli, ["audit", "rechain", "--yes", "--json", *database])
        assert rechained.exit_code == 0, rechained.output
        assert json.loads(rechained.stdout)["algorithm"] == ALGORITHM
        audit = fresh_audit(audited)
        assert audit.verify().ok  # the log as it is now
        report = audit.verify(parse_digest(v1_digest))  # the digest from before says no
        assert [p.check for p in report.problems] == ["digest"]
        assert LEGACY_ALGORITHM in report.problems[0].detail

    def test_rechain_asks_to_be_confirmed(self, audited: Audited) -> None:
        result = CliRunner().invoke(
            cli, ["audit", "rechain", "--database", audited.settings.database_url]
        )
        assert result.exit_code == 2 and "--yes" in result.output

    def test_the_chain_follower_stays_alive_and_says_it_once(
        self, audited: Audited, tamper: Tamper, caplog: pytest.LogCaptureFixture
    ) -> None:
        populate(audited.ledger)
        chain_with_v1(audited, tamper)
        tamper.flip_timestamp_digit(tamper.position_of("Account.Credited", 1))
        audit, stop = fresh_audit(audited), threading.Event()
        thread = threading.Thread(target=audit.follow, args=(stop, 0.01))
        with caplog.at_level(logging.ERROR, logger="projections.audit"):
            thread.start()
            stop.wait(0.5)
            assert thread.is_alive()
            stop.set()
            thread.join(10)
        blocked = [r for r in caplog.records if "is not extended" in r.getMessage()]
        assert len(blocked) == 1
        assert audit.chain.algorithm() == LEGACY_ALGORITHM


@pytest.mark.parametrize("audit_settings", ["sqlite"], indirect=True)
def test_an_id_whose_case_changed_after_v1_chained_it_blocks_the_upgrade(
    audited: Audited, tamper: Tamper
) -> None:
    populate(audited.ledger)
    chain_with_v1(audited, tamper)
    position = tamper.position_of("Account.Credited", 2)
    tamper.run(
        "UPDATE stored_events SET originator_id = upper(originator_id) WHERE rowid = ?",
        (position,),
    )
    audit = fresh_audit(audited)
    with pytest.raises(ChainUpgradeBlocked) as blocked:
        audit.digest()
    assert ("originator_id", position) in {
        (p.check, p.position) for p in blocked.value.result.problems
    }
    result = audit.verify(invariants=False)
    checks = {(p.check, p.position) for p in result.problems}
    assert ("originator_id", position) in checks
    assert not any(check == "chain" for check, _ in checks)  # v1 could not see it
    assert "chain_algorithm" in {check for check, _ in checks}
