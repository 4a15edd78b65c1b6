"""The checker of the HTTP bank workload (see ``http_bank``): the history against the
event store, read directly once every server is stopped, and ``audit verify``."""

from __future__ import annotations

import json
import os
import subprocess
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from domain.money import world_account_id
from infrastructure.persistence import build_ledger
from infrastructure.settings import Settings
from tests.api.servers import EVENTLEDGER
from tests.reliability.http_bank import CURRENCY, Bank, History
from tests.reliability.http_bank_servers import ROOT
from tests.reliability.test_crash_loop import read_history


@dataclass
class Report:
    summary: dict[str, Any]
    bad_reads: list[str] = field(default_factory=list)
    lost: list[UUID] = field(default_factory=list)  # acknowledged, not posted in the store
    doubled: list[UUID] = field(default_factory=list)  # more than once in the store
    unbalanced: list[UUID] = field(default_factory=list)  # postings not one debit + credit
    wrong_rejections: list[UUID] = field(default_factory=list)
    applied_failures: list[UUID] = field(default_factory=list)  # "failed", yet stored
    phantoms: list[UUID] = field(default_factory=list)  # stored, never sent
    final_balances: dict[str, int] = field(default_factory=dict)
    final_problems: list[str] = field(default_factory=list)
    audit: dict[str, Any] = field(default_factory=dict)
    unknown_applied: int = 0

    def problems(self) -> dict[str, object]:
        names = (
            "bad_reads", "lost", "doubled", "unbalanced", "wrong_rejections",
            "applied_failures", "phantoms", "final_problems",
        )  # fmt: skip
        found: dict[str, object] = {name: v for name in names if (v := getattr(self, name))}
        if not self.audit.get("ok"):
            found["audit"] = {k: self.audit.get(k) for k in ("ok", "problems")}
        return found


def check(bank: Bank, history: History, database_url: str) -> Report:
    """Run once every server is stopped."""
    report = Report(history.summary())
    report.bad_reads = _check_reads(bank, history)
    ledger = build_ledger(Settings(database_url=database_url, aggregate_cache_size=0))
    try:
        stored = read_history(ledger)
        loaded = {account: ledger.get_account(account).balance for account in bank.accounts}
        recorded_codes = {
            op.transfer_id: ledger.get_transfer(op.transfer_id).error_code
            for op in history.transfers("rejected")
            if op.transfer_id in stored.kind
        }
    finally:
        ledger.close()
    ours = set(bank.accounts) | {world_account_id(CURRENCY)}
    sent = {op.transfer_id for op in history.transfers()}
    for op in history.transfers():
        transfer_id = op.transfer_id
        assert transfer_id is not None
        count = stored.first_events[transfer_id]
        postings = sorted(stored.postings.get(transfer_id, []))
        expected = sorted([(op.from_account, -op.amount), (op.to_account, op.amount)])
        if count > 1 or len(postings) > 2:
            report.doubled.append(transfer_id)
        if op.outcome == "ok":
            if stored.kind.get(transfer_id) != "Posted":
                report.lost.append(transfer_id)
            elif postings != expected:
                report.unbalanced.append(transfer_id)
        elif op.outcome == "rejected":
            recorded = stored.kind.get(transfer_id), recorded_codes.get(transfer_id)
            if recorded != ("Rejected", op.code) or postings:
                report.wrong_rejections.append(transfer_id)
        elif op.outcome == "failed":
            if count or postings:
                report.applied_failures.append(transfer_id)
        elif count:
            report.unknown_applied += 1
            if stored.kind.get(transfer_id) == "Posted" and postings != expected:
                report.unbalanced.append(transfer_id)
    for transfer_id, event in stored.posted.items():
        touches = {event.debit_account_id, event.credit_account_id} & set(bank.accounts)
        if touches and transfer_id not in sent and transfer_id not in bank.setup:
            report.phantoms.append(transfer_id)
    report.final_problems = _check_final(bank, stored, loaded, ours)
    report.final_balances = {str(a)[:8]: loaded[a] for a in bank.accounts}
    report.audit = audit_verify(database_url)
    return report


def _check_reads(bank: Bank, history: History) -> list[str]:
    bad = []
    for op in history.reads():
        assert op.balances is not None
        if op.balances.keys() != set(bank.accounts):
            bad.append(f"read at {op.started:.2f}: {len(op.balances)} of the accounts")
            continue
        if sum(op.balances.values()) != bank.total:
            bad.append(f"read at {op.started:.2f}: sum {sum(op.balances.values())}")
        for account, balance in op.balances.items():
            if balance < -bank.limits[account]:
                bad.append(f"read at {op.started:.2f}: {account} at {balance}")
    return bad


def _check_final(bank: Bank, stored: Any, loaded: dict[UUID, int], ours: set[UUID]) -> list[str]:
    problems = []
    folded: Counter[UUID] = Counter()
    for postings in stored.postings.values():
        for account, signed in postings:
            if account in ours:
                folded[account] += signed
    for account in bank.accounts:
        if loaded[account] != folded[account]:
            problems.append(f"{account}: loaded {loaded[account]} != folded {folded[account]}")
        if loaded[account] < -bank.limits[account]:
            problems.append(f"{account}: {loaded[account]} beyond its limit")
    if sum(loaded.values()) != bank.total:
        problems.append(f"final sum {sum(loaded.values())} != {bank.total}")
    return problems


def audit_verify(database_url: str) -> dict[str, Any]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("EVENTLEDGER_")}
    done = subprocess.run(
        [EVENTLEDGER, "audit", "verify", "--json", "--database", database_url],
        capture_output=True, text=True, timeout=300, cwd=ROOT, env=environment,
    )  # fmt: skip
    try:
        result: dict[str, Any] = json.loads(done.stdout)
    except ValueError:
        return {"ok": False, "problems": [done.stdout[-2000:], done.stderr[-2000:]]}
    return result
