"""What the read models hold that a user would call private, sealed like the events.

With ``EVENTLEDGER_CIPHER_KEY`` set, the event store encrypts every event, but the
views are plain tables: account names, account metadata and transfer descriptions
would sit there in clear. ``PrivateText`` seals those values with the same key and the
same cipher as the events (the library's AES-GCM: a random nonce per value, and a tag
that fails on any change), stored as ``aes:<base64>``. Amounts, balances, currencies,
ids, statuses and times stay in clear: the views exist to sort, sum and page on them.

Opening is strict about what it accepts as sealed: a value decrypts only if it was
sealed with this key (the GCM tag proves it), so a value written before the key was
set, or a name that a user happened to start with ``aes:``, is returned as stored.
Without a key, sealed values are shown as stored: unreadable, as they should be.
"""

from __future__ import annotations

import binascii
from base64 import b64decode, b64encode

from eventsourcing.cryptography import AESCipher
from eventsourcing.utils import Environment

SEALED_PREFIX = "aes:"


class PrivateText:
    """Seals and opens private view values; the identity when no key is given."""

    def __init__(self, cipher_key: str | None) -> None:
        self._cipher = (
            None if cipher_key is None else AESCipher(Environment(env={"CIPHER_KEY": cipher_key}))
        )

    def seal(self, text: str) -> str:
        if self._cipher is None:
            return text
        sealed = self._cipher.encrypt(text.encode("utf-8"))
        return SEALED_PREFIX + b64encode(sealed).decode("ascii")

    def open(self, stored: str) -> str:
        if self._cipher is None or not stored.startswith(SEALED_PREFIX):
            return stored
        try:
            sealed = b64decode(stored[len(SEALED_PREFIX) :], validate=True)
            return self._cipher.decrypt(sealed).decode("utf-8")
        except (ValueError, binascii.Error):
            # Not sealed with this key: a value from before the key, shown as stored.
            return stored
