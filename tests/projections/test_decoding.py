"""The fast decoder reads every event exactly as the library's mapper does.

Method: a workload's whole log is decoded both ways (orjson fast path, and
``mapper.to_domain_event`` normalised to the same strings), with and without
encryption and compression, and the results must be equal.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from eventsourcing.cryptography import AESCipher

from domain.ledger import Ledger
from projections.decoding import EventDecoder
from tests.projections.conftest import Workload


@pytest.mark.parametrize("store", ["sqlite"])
@pytest.mark.parametrize("sealing", ["plain", "compressed", "encrypted"])
def test_the_fast_path_agrees_with_the_mapper(
    sealing: str, make_ledger: Callable[..., Ledger]
) -> None:
    overrides: dict[str, object] = {"compress": True} if sealing == "compressed" else {}
    if sealing == "encrypted":
        overrides = {"cipher_key": AESCipher.create_key(16), "compress": True}
    ledger = make_ledger(**overrides)
    work = Workload(ledger, seed=9)
    for _ in range(60):
        work.step()
    decoder = EventDecoder(ledger.mapper)
    assert decoder.fast_allowed  # the service's own transcoder takes the fast path
    notifications = ledger.recorder.select_notifications(1, 10_000)
    kinds = set()
    for notification in notifications:
        fast = decoder.decode(notification)
        slow = decoder._slow(notification)
        assert fast.data == slow, notification.topic
        assert fast.originator_id == notification.originator_id.hex
        kinds.add(fast.kind)
    assert {"Account.Opened", "Account.Credited", "Transfer.PendingPosted"} <= kinds
