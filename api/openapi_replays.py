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


def document_replays(openapi: dict[str, Any]) -> dict[str, Any]:
    for path_item in openapi.get("paths", {}).values():
        for operation in path_item.values():
            responses = operation.get("responses", {})
            if "201" in responses and "200" not in responses:
                replay = copy.deepcopy(responses["201"])
                replay["description"] = REPLAY_DESCRIPTION
                replay["headers"] = {
                    "Idempotent-Replayed": {"schema": {"type": "string", "enum": ["true"]}}
                }
                responses["200"] = replay
    return openapi
