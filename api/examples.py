"""The examples of the OpenAPI document: one small story, told consistently.

Alice (USD) deposits 100.00, pays Bob 25.00 of rent as a pending transfer, captures
20.00 of it, then reverses 5.00. Every body's example is a step of that story, so the
ids, amounts (minor units) and RFC 3339 times agree from one example to the next.
tests/api/test_openapi_document.py validates each against its own schema.
"""

from __future__ import annotations

from typing import Any

ALICE = "0b5c3a4e-6f1e-4d55-9a3b-2f7e0c1d9a10"
BOB = "7c2e9f14-3a6b-4c8d-8e1f-5a4b3c2d1e0f"
DEPOSIT_ID = "5a1e7b2c-4d3f-4e6a-8b9c-0d1e2f3a4b5c"
RENT_ID = "3f9d2c1b-8a7e-4b6c-9d5e-1f2a3b4c5d6e"
REVERSAL_ID = "9e8d7c6b-5a49-4c3d-8e2f-1a0b9c8d7e6f"
OPENED_AT = "2026-01-15T09:30:00Z"
PAID_AT = "2026-01-15T09:31:00Z"
CAPTURED_AT = "2026-01-15T09:40:00Z"
EXPIRES_AT = "2026-01-15T10:31:00Z"
CHAIN_HASH = "2c73c88c12535e8406ea07c890208d738e386bb0ccc256779c9673c6d90c9f6e"

OPEN_ACCOUNT = {"currency": "USD", "name": "Alice", "metadata": {"customer": "C-1001"}}
UPDATE_ACCOUNT = {"name": "Alice Smith", "metadata": {"customer": "C-1001", "tier": "gold"}}
CHANGE_OVERDRAFT = {"overdraft_limit": 5000}
DEPOSIT = {"amount": 10000, "description": "top-up", "metadata": {"order": "A-1001"}}
CREATE_TRANSFER = {
    "from_account": ALICE,
    "to_account": BOB,
    "amount": 2500,
    "currency": "USD",
    "description": "rent",
    "pending": True,
    "timeout_seconds": 3600,
}
CREATE_TRANSFER_NOW = {
    "from_account": ALICE,
    "to_account": BOB,
    "amount": 2500,
    "currency": "USD",
    "description": "rent",
    "metadata": {"invoice": "2026-01"},
}
CREATE_BATCH = {
    "transfers": [
        {"from_account": ALICE, "to_account": BOB, "amount": 1200, "currency": "USD"},
        {"from_account": BOB, "to_account": ALICE, "amount": 300, "currency": "USD"},
    ]
}
POST_PENDING = {"amount": 2000}
REVERSE_TRANSFER = {"amount": 500, "description": "partial refund"}

ACCOUNT: dict[str, Any] = {
    "id": ALICE,
    "currency": "USD",
    "name": "Alice",
    "status": "open",
    "balance": 10000,
    "available_balance": 7500,
    "pending_debits": 2500,
    "pending_credits": 0,
    "overdraft_limit": 0,
    "metadata": {"customer": "C-1001"},
    "version": 3,
    "created_at": OPENED_AT,
    "updated_at": PAID_AT,
    "position": 9,
}
ACCOUNT_ROW = {key: value for key, value in ACCOUNT.items() if key != "position"}
ACCOUNT_ROW["is_world"] = False
TRANSFER: dict[str, Any] = {
    "id": RENT_ID,
    "from_account": ALICE,
    "to_account": BOB,
    "amount": 2500,
    "currency": "USD",
    "status": "posted",
    "description": "rent",
    "metadata": {"invoice": "2026-01"},
    "created_at": PAID_AT,
    "updated_at": CAPTURED_AT,
    "position": 14,
    "reverses": None,
    "reversed_amount": 0,
    "posted_amount": 2000,
    "pending": True,
    "expires_at": EXPIRES_AT,
    "error_code": None,
    "version": 2,
}
BATCH = {
    "transfers": [
        {
            **TRANSFER,
            "id": "1d2c3b4a-5e6f-4a7b-8c9d-0e1f2a3b4c5d",
            "amount": 1200,
            "description": "",
            "metadata": {},
            "created_at": CAPTURED_AT,
            "position": 16,
            "posted_amount": 1200,
            "pending": False,
            "expires_at": None,
            "version": 1,
        },
        {
            **TRANSFER,
            "id": "6b7a8c9d-0e1f-4a2b-9c3d-4e5f6a7b8c9d",
            "from_account": BOB,
            "to_account": ALICE,
            "amount": 300,
            "description": "",
            "metadata": {},
            "created_at": CAPTURED_AT,
            "position": 17,
            "posted_amount": 300,
            "pending": False,
            "expires_at": None,
            "version": 1,
        },
    ],
    "position": 17,
}
ACCOUNT_EVENTS = {
    "items": [
        {
            "version": 1,
            "type": "Opened",
            "timestamp": OPENED_AT,
            "data": {
                "currency": "USD",
                "name": "Alice",
                "metadata": {"customer": "C-1001"},
                "overdraft_limit": 0,
                "is_world": False,
            },
        },
        {
            "version": 2,
            "type": "Credited",
            "timestamp": OPENED_AT,
            "data": {"transfer_id": DEPOSIT_ID, "amount": 10000, "balance_after": 10000},
        },
    ],
    "next_cursor": "2",
}
BALANCE = {
    "account_id": ALICE,
    "currency": "USD",
    "version": 2,
    "timestamp": OPENED_AT,
    "balance": 10000,
    "available_balance": 10000,
    "pending_debits": 0,
    "pending_credits": 0,
    "status": "open",
}
ACCOUNT_LIST = {"items": [ACCOUNT_ROW], "next_cursor": ALICE, "position": 17}
STATEMENT = {
    "account_id": ALICE,
    "currency": "USD",
    "items": [
        {
            "position": 5,
            "transfer_id": DEPOSIT_ID,
            "amount": 10000,
            "balance_after": 10000,
            "timestamp": OPENED_AT,
            "description": "top-up",
        },
        {
            "position": 11,
            "transfer_id": RENT_ID,
            "amount": -2000,
            "balance_after": 8000,
            "timestamp": CAPTURED_AT,
            "description": "rent",
        },
    ],
    "next_cursor": None,
    "position": 17,
}
PROJECTIONS = {
    "projections": [
        {"name": "balances", "position": 17, "head": 17, "lag": 0, "rebuilding": None},
        {"name": "statements", "position": 15, "head": 17, "lag": 2, "rebuilding": None},
    ]
}
DIGEST = {
    "position": 17,
    "hash": CHAIN_HASH,
    "algorithm": "sha256-chain-v2",
    "events": 17,
    "digest": f"{CHAIN_HASH}@17",
}
VERIFY_IN = {"digest": f"{CHAIN_HASH}@17"}
VERIFY = {
    "ok": False,
    "events_checked": 17,
    "head": {"position": 17, "hash": CHAIN_HASH, "algorithm": "sha256-chain-v2"},
    "problems": [
        {
            "check": "balance",
            "position": 11,
            "account_id": ALICE,
            "detail": "balance_after 8000 does not follow from 10000 - 2500",
        }
    ],
    "problems_dropped": 0,
    "checks": ["chain", "checkpoints", "positions", "invariants", "read_model:balances"],
}
HEALTH = {"status": "ok", "position": None}
READY = {"status": "ready", "position": 17}
