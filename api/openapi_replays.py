"""Documents the idempotent replay of every creating command in the OpenAPI document.

A command that creates (201) answers a retry with the same id or Idempotency-Key with
the original result, but 200 and ``Idempotent-Replayed: true`` (DESIGN.md section 2).
The routes declare only their 201; this adds the 200 beside it, same body, so clients
generated from the document, and schemathesis, know it.
"""

from __future__ import annotations

import copy
from typing import Any

REPLAY_DESCRIPTION = (
    "Idempotent replay: the same id or Idempotency-Key and the same request were seen "
    "before; the original result, with the header `Idempotent-Replayed: true`"
)


REPLAYED_HEADER = {
    "Idempotent-Replayed": {
        "description": "present, `true`, when this answer replays an earlier request",
        "schema": {"type": "string", "enum": ["true"]},
    }
}


def document_replays(openapi: dict[str, Any]) -> dict[str, Any]:
    for path_item in openapi.get("paths", {}).values():
        for operation in path_item.values():
            responses = operation.get("responses", {})
            if "201" in responses and "200" not in responses:
                replay = copy.deepcopy(responses["201"])
                replay["description"] = REPLAY_DESCRIPTION
                replay["headers"] = copy.deepcopy(REPLAYED_HEADER)
                responses["200"] = replay
            elif "200" in responses and _takes_idempotency_key(operation):
                # A settlement answers 200 both times; the header tells a replay.
                responses["200"].setdefault("headers", {}).update(copy.deepcopy(REPLAYED_HEADER))
    return openapi


def _takes_idempotency_key(operation: dict[str, Any]) -> bool:
    return any(
        parameter.get("in") == "header" and parameter.get("name", "").lower() == "idempotency-key"
        for parameter in operation.get("parameters", [])
    )
