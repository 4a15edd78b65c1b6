"""API fuzzing with schemathesis against the app's own OpenAPI document.

Method: schemathesis loads ``/openapi.json`` from the in-process ASGI app (lifespan
running, on a SQLite file in ``tmp_path``, open mode: no keys) and generates requests
for every operation, valid and invalid (its explicit examples, then generated
cases), then runs its stateful phase: a state machine that chains
operations through the document's links (``api/openapi_links.py``: open an
account, then deposit to it, read it, freeze it...; create a transfer, then post,
void or reverse it). Hypothesis is derandomized (a
fixed seed) and the number of examples and steps is bounded, so a run is repeatable
and takes well under a minute.

Checks on every response: no 5xx; the status is one the operation documents; the
content type is the documented one; the body matches the documented schema (problem
documents included). Checks that need a semantic model of ours (``positive data is
accepted``) are left out: the ledger refuses valid-looking requests for business
reasons (unknown account, insufficient funds), documented as 404 and 422.
"""

from __future__ import annotations

import os
import sys
import time
import traceback
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from api.app import create_app
from infrastructure.api_keys import build_keystore, create_key
from infrastructure.settings import Settings
from tests.api.support import assert_problem

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
# ``make test`` runs the short sizes; ``make soak`` sets the long ones (FUZZ_EXAMPLES,
# FUZZ_STATEFUL_EXAMPLES, FUZZ_STATEFUL_STEPS) and reports what ran.
EXAMPLES_PER_OPERATION = int(os.environ.get("FUZZ_EXAMPLES", "20"))
STATEFUL_EXAMPLES = int(os.environ.get("FUZZ_STATEFUL_EXAMPLES", "30"))
STATEFUL_STEPS = int(os.environ.get("FUZZ_STATEFUL_STEPS", "12"))
FUZZ_SETTINGS: dict[str, Any] = {
    "derandomize": True,
    "deadline": None,
    "database": None,
    "suppress_health_check": list(HealthCheck),
}
# No shrinking of stateful sequences: the rules schemathesis enables depend on the
# server's earlier answers, so a replayed sequence can draw differently and Hypothesis
# would report "inconsistent data generation" instead of the failure it found.
STATEFUL_PHASES = (Phase.explicit, Phase.reuse, Phase.generate)


# create_app builds nothing until its lifespan runs (schemathesis runs it from the
# first request of a test to its teardown), so the app can exist at import; the
# fixture below points it at a SQLite file of the module's own before any request.
# (schemathesis's lazy ``from_fixture`` does not work with pytest 9.)
APP = create_app(Settings(database_url="memory://"))


def without_security(document: dict[str, Any]) -> dict[str, Any]:
    """The document as fuzzed: every call sends the fixture's key, so schemathesis must
    not send made-up tokens of the bearer scheme beside it (a 401 reaches no ledger code;
    the key rules are tested in test_auth.py)."""
    document.get("components", {}).pop("securitySchemes", None)
    for path_item in document["paths"].values():
        for operation in path_item.values():
            operation.pop("security", None)
    return document


schema = schemathesis.openapi.from_dict(without_security(APP.openapi()))
schema.app = APP


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The app on a SQLite file with one admin key; yields the header that sends it.

    Every call sends the key: with the bearer scheme in the document, schemathesis
    would otherwise send made-up tokens, and nearly every call would be a 401 (the key
    rules are tested in test_auth.py), never reaching the ledger."""
    path: Path = tmp_path_factory.mktemp("fuzz") / "fuzz.db"
    memory_settings = APP.state.settings
    fuzz_settings = Settings(database_url=f"sqlite:///{path}", pending_sweep_interval_seconds=0)
    key, _ = create_key(build_keystore(fuzz_settings), ["admin"], name="fuzz")
    APP.state.settings = fuzz_settings
    yield {"Authorization": f"Bearer {key}"}
    APP.state.settings = memory_settings


@schema.parametrize()
@settings(max_examples=EXAMPLES_PER_OPERATION, **FUZZ_SETTINGS)
def test_every_operation_answers_as_documented(case: Any, fuzzed: dict[str, str]) -> None:
    case.call_and_validate(checks=CHECKS, headers=fuzzed)


def test_stateful_sequences_answer_as_documented(fuzzed: dict[str, str]) -> None:
    machine = schema.as_state_machine()
    answered: Counter[tuple[str, int]] = Counter()
    failures: list[str] = []

    class Sequences(machine):  # type: ignore[misc,valid-type]
        def get_call_kwargs(self, case: Any) -> dict[str, Any]:
            return {"headers": fuzzed}

        def call(self, case: Any, **kwargs: Any) -> Any:
            try:
                return super().call(case, **kwargs)
            except Exception as error:  # noqa: BLE001 - collected, asserted below
                # The app raised instead of answering (in process, a 500 is raised).
                trace = "".join(traceback.format_exception(error)[-6:])
                failures.append(f"{case.method} {case.path} raised:\n{trace}"[:3000])
                print(failures[-1], file=sys.stderr)  # Hypothesis's replay may hide it
                raise

        def validate_response(self, response: Any, case: Any, **kwargs: Any) -> None:
            operation = f"{case.method} {case.path}"
            answered[(operation, response.status_code)] += 1
            try:
                case.validate_response(response, checks=CHECKS)
            except Exception as failure:  # noqa: BLE001 - collected, asserted below
                # Collected rather than raised: Hypothesis would replay the sequence to
                # confirm it, and the replay draws differently (see STATEFUL_PHASES).
                failures.append(f"{operation} -> {response.status_code}: {failure}"[:2000])

    Sequences.run(
        settings=settings(
            max_examples=STATEFUL_EXAMPLES,
            stateful_step_count=STATEFUL_STEPS,
            phases=STATEFUL_PHASES,
            **FUZZ_SETTINGS,
        )
    )
    calls = sum(answered.values())
    succeeded = {operation for (operation, status), _ in answered.items() if status < 300}
    # The sequences followed the document's links: an id one call created was used by a
    # later call that succeeded, which a guessed id never does.
    followed = {o for o in succeeded if "{transfer_id}" in o or "{account_id}" in o}
    print(
        f"\nstateful: {calls} calls in {STATEFUL_EXAMPLES} sequences of up to "
        f"{STATEFUL_STEPS}; {len(succeeded)} operations succeeded at least once, "
        f"{len(followed)} of them on an id from an earlier answer; 5xx: "
        f"{sum(n for (_, status), n in answered.items() if status >= 500)}"
    )
    assert failures == [], "\n\n".join(failures[:5])
    assert calls >= STATEFUL_EXAMPLES and followed


# What the fuzzer found, pinned down.


def test_a_replayed_create_is_a_documented_200() -> None:
    """Found: an idempotent replay answers 200, which no operation documented."""
    document = APP.openapi()
    for path, method in (
        ("/v1/accounts", "post"),
        ("/v1/accounts/{account_id}/deposits", "post"),
        ("/v1/transfers", "post"),
        ("/v1/transfers/batch", "post"),
        ("/v1/transfers/{transfer_id}/reverse", "post"),
    ):
        responses = document["paths"][path][method]["responses"]
        assert responses["200"]["content"] == responses["201"]["content"], path
        assert "Idempotent-Replayed" in responses["200"]["headers"]


def test_a_min_position_past_the_head_is_422_at_once(tmp_path: Path) -> None:
    """Found: a made-up ``min_position`` made the read routes wait their whole bounded
    wait and then answer 503, as if the view were merely behind."""
    app = create_app(Settings(database_url=f"sqlite:///{tmp_path / 'ahead.db'}"))
    with TestClient(app) as client:
        account = client.post("/v1/accounts", json={"currency": "USD"}).json()
        head = account["position"]
        for url in ("/v1/accounts", f"/v1/accounts/{account['id']}/statement", "/v1/projections"):
            started = time.perf_counter()
            ahead = client.get(url, params={"min_position": head + 1})
            assert_problem(ahead, 422, "validation_error")
            assert time.perf_counter() - started < 1.0
            assert client.get(url, params={"min_position": head}).status_code == 200


def test_the_document_links_each_created_id_to_the_operations_that_take_it() -> None:
    """The stateful phase follows these links; without them it guesses ids."""
    paths = APP.openapi()["paths"]
    transfer_links = paths["/v1/transfers"]["post"]["responses"]["201"]["links"]
    targets = {link["operationId"] for link in transfer_links.values()}
    taking_a_transfer = {
        operation["operationId"]
        for path, item in paths.items()
        if "{transfer_id}" in path
        for operation in item.values()
    }
    assert targets == taking_a_transfer and len(targets) == 4
    account_links = paths["/v1/accounts"]["post"]["responses"]["201"]["links"]
    assert len(account_links) == 10
    assert all(
        link["parameters"] == {"account_id": "$response.body#/id"}
        for link in account_links.values()
    )
    deposit = paths["/v1/accounts/{account_id}/deposits"]["post"]["responses"]
    assert deposit["200"]["links"].keys() == transfer_links.keys()  # replays link too
