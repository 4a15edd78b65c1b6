"""Money is an ``int`` count of minor units with a currency code beside it.

No floats, no Decimals: an amount that is not a plain ``int`` is a programmer error
at this layer (the API refuses it before it gets here).

Ranges: every number of an account (its balance, pending debits, pending credits,
available balance, and its balance with its pending credits) stays within the signed
64-bit range, except a world account's, which stays within signed 128 bits (as
TigerBeetle's balances do). A client can fill its own accounts, never a currency:
taking a world account out of its range would take about 1.7e23 transfers of 10^15.
"""

from __future__ import annotations

import re
from functools import cache
from itertools import product
from string import ascii_uppercase
from uuid import NAMESPACE_URL, UUID, uuid5

from domain.errors import AmountOutOfRange, InvalidCurrency, ReservedId, UnknownCurrency

AMOUNT_MIN = 1
AMOUNT_MAX = 10**15
BALANCE_MIN = -(2**63)
BALANCE_MAX = 2**63 - 1
WORLD_BALANCE_MAX = 2**127 - 1
WORLD_BALANCE_MIN = -WORLD_BALANCE_MAX

CURRENCY_PATTERN = re.compile(r"^[A-Z]{3}$")

# ISO 4217 active codes, plus XTS (reserved for testing) and XXX (no currency).
ISO_4217_CODES = frozenset(
    """
    AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BOV BRL
    BSD BTN BWP BYN BZD CAD CDF CHE CHF CHW CLF CLP CNY COP COU CRC CUC CUP CVE CZK DJF
    DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS GIP GMD GNF GTQ GYD HKD HNL HRK HTG
    HUF IDR ILS INR IQD IRR ISK JMD JOD JPY KES KGS KHR KMF KPW KRW KWD KYD KZT LAK LBP
    LKR LRD LSL LYD MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MXV MYR MZN NAD NGN
    NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN PYG QAR RON RSD RUB RWF SAR SBD SCR SDG
    SEK SGD SHP SLE SLL SOS SRD SSP STN SVC SYP SZL THB TJS TMT TND TOP TRY TTD TWD TZS
    UAH UGX USD USN UYI UYU UYW UZS VED VES VND VUV WST XAF XAG XAU XBA XBB XBC XBD XCD
    XCG XDR XOF XPD XPF XPT XSU XTS XUA XXX YER YER ZAR ZMW ZWG ZWL
    """.split()
)


def check_amount(amount: int) -> int:
    """Returns ``amount`` if it is an int in [1, 10**15], else raises AmountOutOfRange."""
    # bool is an int subclass; True is not one cent.
    assert isinstance(amount, int) and not isinstance(amount, bool), type(amount)
    if not AMOUNT_MIN <= amount <= AMOUNT_MAX:
        raise AmountOutOfRange(
            f"amount must be an integer between {AMOUNT_MIN} and {AMOUNT_MAX} minor units"
        )
    return amount


def check_currency(currency: str, accepted: frozenset[str] = ISO_4217_CODES) -> str:
    """Returns ``currency`` if it is three upper-case letters and accepted."""
    assert isinstance(currency, str), type(currency)
    if not CURRENCY_PATTERN.fullmatch(currency):
        raise InvalidCurrency("currency must be three upper-case letters, like USD")
    if currency not in accepted:
        raise UnknownCurrency(f"currency {currency} is not an ISO 4217 code")
    return currency


def world_account_id(currency: str) -> UUID:
    """The system account through which money of ``currency`` enters and leaves."""
    return uuid5(NAMESPACE_URL, f"world:{currency}")


@cache
def _world_account_ids() -> frozenset[int]:
    """The world id of every code of three upper-case letters (17,576 of them): a
    currency accepted later must not find its world id taken. Built on first use,
    in about 60 ms."""
    return frozenset(
        world_account_id("".join(letters)).int for letters in product(ascii_uppercase, repeat=3)
    )


def is_world_account_id(aggregate_id: UUID) -> bool:
    return aggregate_id.int in _world_account_ids()


def check_not_reserved(aggregate_id: UUID, what: str) -> UUID:
    """Returns ``aggregate_id`` unless it is a world account's id, reserved for it.

    The one guard for every id a client chooses (accounts, transfers, batch items,
    reversals, however the id was given or derived): an account or a transfer at a
    world id would stop that currency's deposits for good.
    """
    if is_world_account_id(aggregate_id):
        raise ReservedId(f"{aggregate_id} is reserved for a world account; use another {what}")
    return aggregate_id


_WORLD_RANGE = (WORLD_BALANCE_MIN, WORLD_BALANCE_MAX)
_RANGE = (BALANCE_MIN, BALANCE_MAX)


def balance_range(is_world: bool) -> tuple[int, int]:
    """The lowest and highest value of every number of an account (module docstring)."""
    return _WORLD_RANGE if is_world else _RANGE
