"""The aggregate cache copies accounts on every load and save: the cheap copy must be
as independent as a deep copy, or a command could change a cached account in place."""

from __future__ import annotations

from copy import deepcopy
from uuid import uuid4

from domain.account import Account


def test_a_copy_shares_no_mutable_state() -> None:
    account = Account(
        id=uuid4(), currency="USD", name="a", metadata={"k": "v"}, overdraft_limit=5,
        is_world=False,
    )  # fmt: skip
    account.credit(uuid4(), 10)
    clone = deepcopy(account)
    assert vars(clone).keys() == vars(account).keys()
    assert clone.balance == 10 and len(clone.pending_events) == 2

    clone.debit(uuid4(), 3)
    clone.metadata["k"] = "changed"
    clone.opened_with[1]["k"] = "changed"
    assert account.balance == 10 and len(account.pending_events) == 2
    assert account.metadata == {"k": "v"} and account.opened_with[1] == {"k": "v"}
    assert (clone.version, account.version) == (3, 2)
