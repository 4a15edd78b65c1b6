"""A seeded simulation: many clients, injected faults and restarts, interleaved.

Method (after TigerBeetle's simulator): one thread and one ``random.Random(seed)``
decide everything: which client sends which transfer (some beyond the payer's funds,
some pending), when a group is committed and which queued transfers it holds, which
step of a commit fails at which call (``faults.STEPS``), when pending transfers are
captured or voided, and when the ledger restarts on the same store, dropping what was
queued (those clients never got an answer). Every client retries each transfer that
has no definite answer, with its own id. At the end the faults stop, every client
settles, and the bank invariants are checked (``bank_check``). A failure names its
seed and the command that replays it alone.

``SIM_SEEDS`` sets how many seeds run (``make soak`` runs many); ``SIM_SEED`` replays one.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from pathlib import Path
from uuid import UUID

import pytest

from domain.errors import LedgerError
from domain.transfer import TransferRequest
from infrastructure.persistence import build_ledger
from infrastructure.settings import Settings
from tests.conftest import database_url_for
from tests.reliability.bank_check import (
    Bank,
    check_bank,
    check_views_and_audit,
)
from tests.reliability.faults import STEPS, Faults, InjectedBug

STEPS_PER_SEED = 80
SEEDS_DEFAULT = 3


def seeds() -> list[int]:
    if "SIM_SEED" in os.environ:
        return [int(os.environ["SIM_SEED"])]
    return list(range(int(os.environ.get("SIM_SEEDS", SEEDS_DEFAULT))))


@pytest.fixture
def settings(
    store: str, commit_mode: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Settings:
    if store == "postgres":
        url = str(request.getfixturevalue("fresh_postgres_url"))
    else:
        url = database_url_for(store, tmp_path, request)
    return Settings(database_url=url, group_commit=commit_mode == "group", snapshot_interval=5)


class Simulation:
    def __init__(self, settings: Settings, seed: int) -> None:
        self.settings = settings
        self.rng = random.Random(seed)
        self.ledger = build_ledger(settings)
        self.bank = Bank(self.ledger, Faults(self.ledger), self.rng)
        self.queue: list[tuple[UUID, TransferRequest]] = []
        self.restarts = 0
        self.faults_fired = 0

    def run(self, steps: int) -> None:
        self.bank.open_and_fund()
        for number in range(steps):
            if number == steps // 2:
                self.restart()  # at least one, whatever the seed draws
            self.step()
        self.bank.faults.disarm()
        # Retries still queued are settled below; requests never sent never existed.
        self.bank.unsettled.update(t for t, _ in self.queue if t in self.bank.requests)
        self.queue.clear()
        self.bank.settle_the_rest()
        self.resolve_pending()

    def step(self) -> None:
        roll = self.rng.random()
        if roll < 0.45:
            self.queue += self.bank.random_requests(self.rng.randint(1, 4))
        elif roll < 0.75:
            self.commit_some()
        elif roll < 0.85:
            self.settle_a_pending_transfer()
        elif roll < 0.92:
            self.retry_some()
        elif roll < 0.96:
            self.restart()
        else:
            self.bank.open_one_more()

    def commit_some(self) -> None:
        if not self.queue:
            return
        count = self.rng.randint(1, len(self.queue))
        group, self.queue = self.queue[:count], self.queue[count:]
        if self.rng.random() < 0.35:
            self.bank.faults.arm(self.rng.choice(STEPS), self.rng.randint(1, 3))
        self.bank.send(group)

    def retry_some(self) -> None:
        waiting = sorted(self.bank.unsettled, key=str)
        chosen = [t for t in waiting if self.rng.random() < 0.5]
        self.bank.unsettled.difference_update(chosen)
        self.queue += [(transfer_id, self.bank.requests[transfer_id]) for transfer_id in chosen]

    def settle_a_pending_transfer(self) -> None:
        """Captures (all or part) or voids a pending transfer, under whatever fault is
        armed. Its outcome is read back from the store at the end, as a client would
        after an unknown answer."""
        pending = sorted(
            (t for t, a in self.bank.settled.items() if getattr(a, "status", "") == "pending"),
            key=str,
        )
        if not pending:
            return
        transfer_id = self.rng.choice(pending)
        amount = self.bank.requests[transfer_id].amount
        try:
            if self.rng.random() < 0.6:
                self.ledger.post_pending(transfer_id, self.rng.randint(1, amount))
            else:
                self.ledger.void_pending(transfer_id)
        except (LedgerError, InjectedBug):
            pass  # not pending any more, or a fault: the store says what happened

    def restart(self) -> None:
        """The process dies: what was queued is lost with it, unanswered."""
        for transfer_id, request in self.queue:
            self.bank.requests[transfer_id] = request
            self.bank.unsettled.add(transfer_id)
        self.queue.clear()
        self.faults_fired += sum(self.bank.faults.fired.values())
        self.ledger.close()
        self.ledger = build_ledger(self.settings)
        self.bank.ledger = self.ledger
        self.bank.faults = Faults(self.ledger)
        self.restarts += 1

    def resolve_pending(self) -> None:
        for transfer_id, answer in self.bank.settled.items():
            if getattr(answer, "status", "") != "pending":
                continue
            stored = self.ledger.get_transfer(transfer_id)
            if stored.status == "posted":
                self.bank.captured[transfer_id] = stored.posted_amount
            elif stored.status == "voided":
                self.bank.captured[transfer_id] = 0

    def close(self) -> None:
        self.ledger.close()


@pytest.fixture
def simulation(settings: Settings, seed: int) -> Iterator[Simulation]:
    simulation = Simulation(settings, seed)
    yield simulation
    simulation.close()


@pytest.mark.parametrize("commit_mode", ["group", "per_command"], indirect=True)
@pytest.mark.parametrize("store", ["sqlite", "postgres"], indirect=True)
@pytest.mark.parametrize("seed", seeds())
def test_the_bank_holds_under_a_seeded_storm(
    simulation: Simulation, settings: Settings, seed: int, store: str, commit_mode: str
) -> None:
    replay = (
        f"SIM_SEED={seed} pytest 'tests/reliability/test_simulation.py"
        f"::test_the_bank_holds_under_a_seeded_storm[{seed}-{store}-{commit_mode}]'"
    )
    try:
        simulation.run(STEPS_PER_SEED)
        fired = simulation.faults_fired + sum(simulation.bank.faults.fired.values())
        assert fired > 0 and simulation.restarts > 0, "the storm tested nothing"
        check_bank(simulation.ledger, simulation.bank)
        restarted = build_ledger(settings.model_copy(update={"group_commit": False}))
        try:
            check_bank(restarted, simulation.bank)
        finally:
            restarted.close()
        check_views_and_audit(simulation.ledger, settings)
    except AssertionError as failure:
        raise AssertionError(f"seed {seed} failed; replay with: {replay}") from failure
