"""Puts back into the OpenAPI document the values FastAPI changes on the way: the
nulls of examples, and the integer bounds of body fields.

FastAPI builds its document through a model that drops every null (the values inside
examples too, fastapi/fastapi#5559) and holds the ``minimum`` and ``maximum`` of a
component schema as floats (a parameter's schema it keeps as it is).
So a statement's last page (``"next_cursor": null``) came out without a field its
schema requires, an example its own schema refuses; and an overdraft limit of at most
2**63 - 1 came out as ``9.223372036854776e18``, which is 2**63, one past it. Each
model's own JSON schema has them as written: this copies its ``examples`` and bounds,
and those of the models inside it, over the component of the same name.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, get_args

from fastapi import APIRouter
from fastapi.routing import APIRoute
from pydantic import BaseModel

AS_WRITTEN = ("examples", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")


def document_exact_values(
    openapi: dict[str, Any], routers: Iterable[APIRouter], *extra: type[BaseModel]
) -> dict[str, Any]:
    components = openapi.get("components", {}).get("schemas", {})
    for model in (*_route_models(routers), *extra):
        own = model.model_json_schema()
        for name, schema in (model.__name__, own), *own.get("$defs", {}).items():
            if name in components:
                _copy_as_written(schema, components[name])
    return openapi


def _copy_as_written(own: dict[str, Any], documented: dict[str, Any]) -> None:
    """``own`` and ``documented`` are one schema: the same keys, the same nesting."""
    for keyword in AS_WRITTEN:
        if keyword in own:
            documented[keyword] = own[keyword]
    for name, part in own.get("properties", {}).items():
        _copy_as_written(part, documented["properties"][name])
    for keyword in ("anyOf", "allOf", "oneOf"):
        for own_part, documented_part in zip(
            own.get(keyword, []), documented.get(keyword, []), strict=True
        ):
            _copy_as_written(own_part, documented_part)
    for keyword in ("items", "additionalProperties"):
        if isinstance(own.get(keyword), dict):
            _copy_as_written(own[keyword], documented[keyword])


def _route_models(routers: Iterable[APIRouter]) -> Iterator[type[BaseModel]]:
    for router in routers:
        for route in router.routes:
            if not isinstance(route, APIRoute):
                continue
            body = route.body_field.field_info.annotation if route.body_field else None
            for annotation in (route.response_model, body):
                # A body that may be left out is ``Model | None``.
                for candidate in (annotation, *get_args(annotation)):
                    if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                        yield candidate
