"""``GET /``: where to go from here, for someone who typed the server's address.

A small JSON document (what an API client or ``curl`` expects; a browser shows it
too), open like ``/healthz``: it names only public paths. Not in the OpenAPI
document, which describes the API itself; the README mentions it.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from api.routing import LedgerRoute

router = APIRouter(route_class=LedgerRoute)

ROOT_DOCUMENT: dict[str, Any] = {
    "name": "eventledger",
    "docs": "/docs",
    "openapi": "/openapi.json",
    "api": "/v1",
    "health": "/healthz",
}


@router.get("/", include_in_schema=False)
async def root() -> dict[str, Any]:
    return ROOT_DOCUMENT
