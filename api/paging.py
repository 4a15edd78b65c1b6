"""The one shape of every list answer, and its query parameters.

A list answers ``{"items": [...], "next_cursor": string | null}`` plus what that list
carries besides its items (the view's ``position``; a statement's account and
currency). ``?cursor=`` takes the ``next_cursor`` of the previous page; it is opaque to
clients (an account id for the account list, a log position for a statement, a
version for an account's events) and parsed strictly where it is used. ``?limit=``
bounds the page.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Query

PAGE_SIZE_DEFAULT = 100
CURSOR_LENGTH_MAX = 64
NEXT_CURSOR_DESCRIPTION = "pass as ?cursor= for the next page; null on the last page"

CursorQuery = Annotated[
    str | None,
    Query(
        max_length=CURSOR_LENGTH_MAX,
        description="The next_cursor of the previous page (opaque); none for the first page.",
    ),
]


def limit_query(page_size_max: int) -> Any:
    """``?limit=`` with its bounds in the schema: 1..page_size_max items per page."""
    return Query(ge=1, le=page_size_max, description=f"Items per page, 1..{page_size_max}.")
