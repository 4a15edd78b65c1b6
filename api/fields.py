"""Field types of the API's bodies, with their descriptions and limits for users.

The limits come from their one home (``domain/limits.py``, ``domain/money.py``) and
appear in the OpenAPI document as schema constraints.
"""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from pydantic import ConfigDict, Field, StrictInt, StringConstraints

from domain.limits import (
    METADATA_KEY_LENGTH_MAX,
    METADATA_KEYS_MAX,
    METADATA_VALUE_LENGTH_MAX,
    OVERDRAFT_LIMIT_MAX,
    TEXT_LENGTH_MAX,
    TIMEOUT_SECONDS_MAX,
)
from domain.money import AMOUNT_MAX, AMOUNT_MIN

AMOUNT_DESCRIPTION = (
    f"Minor units of the currency (cents for USD), an integer from {AMOUNT_MIN} to "
    f"{AMOUNT_MAX:,} (10^15); outside that range the answer is 422 `amount_out_of_range`."
)
MINOR_UNITS = "Minor units of the account's currency (cents for USD)"
POSITION_DESCRIPTION = (
    "Position of this command's last event in the ledger's log; pass it as "
    "`?min_position=` to a read-model route to read your own write. Null when the "
    "command wrote nothing."
)
CURRENCY_OUT = "ISO 4217 currency code, three capital letters."
METADATA_DESCRIPTION = (
    f"Your own key-value strings, at most {METADATA_KEYS_MAX} keys of 1 to "
    f"{METADATA_KEY_LENGTH_MAX} characters, values of at most "
    f"{METADATA_VALUE_LENGTH_MAX} characters."
)
ACCOUNT_STATUS = "`open`, `frozen` (no money in or out) or `closed` (for good)."


def model_examples(*bodies: dict[str, Any]) -> ConfigDict:
    """The ``examples`` keyword a model's schema shows in the OpenAPI document."""
    return ConfigDict(json_schema_extra={"examples": [dict(body) for body in bodies]})


# The range is in the schema only: the ledger checks it and answers
# ``amount_out_of_range``, a code of its own, rather than a generic validation error.
Amount = Annotated[
    StrictInt,
    Field(
        description=AMOUNT_DESCRIPTION,
        examples=[2500],
        json_schema_extra={"minimum": AMOUNT_MIN, "maximum": AMOUNT_MAX},
    ),
]
# Documented, not validated here: api.strict_json refuses a NUL (U+0000) in any string
# of a body, which PostgreSQL text cannot hold, before the model sees it.
NO_NUL = Field(json_schema_extra={"pattern": "^[^\u0000]*$"})
Currency = Annotated[
    str,
    StringConstraints(min_length=3, max_length=3),
    Field(
        description="ISO 4217 currency code, e.g. USD.",
        examples=["USD"],
        json_schema_extra={"pattern": "^[A-Z]{3}$"},
    ),
]
Text = Annotated[str, StringConstraints(max_length=TEXT_LENGTH_MAX), NO_NUL]
MetadataKey = Annotated[
    str, StringConstraints(min_length=1, max_length=METADATA_KEY_LENGTH_MAX), NO_NUL
]
MetadataValue = Annotated[str, StringConstraints(max_length=METADATA_VALUE_LENGTH_MAX), NO_NUL]
Metadata = Annotated[
    dict[MetadataKey, MetadataValue],
    Field(max_length=METADATA_KEYS_MAX, examples=[{"order": "A-1001"}]),
]
ClientId = Annotated[
    UUID | None,
    Field(
        description="The id (a UUID) of what this request creates, which makes a retry "
        "safe: the same id and request again answer the original result (200, "
        "`Idempotent-Replayed: true`). Null or absent: derived from the Idempotency-Key "
        "header if one is sent, else a new random id."
    ),
]
Timeout = Annotated[StrictInt, Field(ge=1, le=TIMEOUT_SECONDS_MAX)]
OverdraftLimit = Annotated[StrictInt, Field(ge=0, le=OVERDRAFT_LIMIT_MAX)]
