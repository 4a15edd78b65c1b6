"""OpenAPI links: which operations take the id that another one answers.

A response whose body is an account (``AccountOut``) or a transfer (``TransferOut``)
links to every operation whose path takes that kind of id, through the body's ``id``.
Clients generated from the document see how the calls chain, and schemathesis's
stateful phase follows the links (open an account, then deposit to it, freeze it,
read its statement; create a transfer, then post, void or reverse it), instead of
guessing ids that do not exist.
"""

from __future__ import annotations

from typing import Any

# Response schema -> the path parameter its ``id`` fills.
ID_PARAMETERS = {
    "#/components/schemas/AccountOut": "account_id",
    "#/components/schemas/TransferOut": "transfer_id",
}


def document_links(openapi: dict[str, Any]) -> dict[str, Any]:
    takers = _operations_taking(openapi)
    for path_item in openapi.get("paths", {}).values():
        for operation in path_item.values():
            for status, response in operation.get("responses", {}).items():
                if not status.startswith("2"):
                    continue
                schema = response.get("content", {}).get("application/json", {}).get("schema", {})
                parameter = ID_PARAMETERS.get(schema.get("$ref", ""))
                if parameter is None:
                    continue
                links = response.setdefault("links", {})
                for operation_id in takers[parameter]:
                    links[operation_id] = {
                        "operationId": operation_id,
                        "parameters": {parameter: "$response.body#/id"},
                    }
    return openapi


def _operations_taking(openapi: dict[str, Any]) -> dict[str, list[str]]:
    takers: dict[str, list[str]] = {parameter: [] for parameter in ID_PARAMETERS.values()}
    for path, path_item in openapi.get("paths", {}).items():
        for operation in path_item.values():
            for parameter in takers:
                if "{" + parameter + "}" in path:
                    takers[parameter].append(operation["operationId"])
    return takers
