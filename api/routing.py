"""The route class of every router: authorize first, then read the body, strictly.

FastAPI's request handler reads and parses a route's body before it solves the route's
dependencies, the auth dependency included. So without this class a client without a
key could make the server receive, buffer and parse a megabyte before being told 401.
``LedgerRoute`` runs ``api.auth.authorize`` for the scope the route's ``require_scope``
dependency names before handing the request on, and hands it on as a
``StrictJsonRequest`` (api.strict_json), whose JSON is parsed once, strictly, and off
the event loop when large; a body that is not declared JSON is refused first (415).
What a body may then cost (size, time, how many at once) is bounded where it is read:
api.middleware.RequestBodies.

A router opts in with ``APIRouter(route_class=LedgerRoute)``; a test checks that every
route of the app does.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from fastapi import params
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response

from api.auth import authorize
from api.errors import Problem
from api.strict_json import StrictJsonRequest, media_type_refusal


def required_scope(dependencies: Sequence[params.Depends]) -> str | None:
    """The scope a route's ``require_scope`` dependency names; None for open routes."""
    scopes = {
        scope
        for dependency in dependencies
        if (scope := getattr(dependency.dependency, "required_scope", None)) is not None
    }
    assert len(scopes) <= 1, scopes
    return scopes.pop() if scopes else None


class LedgerRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        scope = required_scope(self.dependencies)

        takes_body = self.body_field is not None

        async def authorized_handler(request: Request) -> Response:
            if scope is not None:
                await authorize(request, scope)
            if takes_body and (refusal := media_type_refusal(request.headers)) is not None:
                raise Problem(415, "unsupported_media_type", refusal)
            return await handler(StrictJsonRequest(request.scope, request.receive))

        return authorized_handler
