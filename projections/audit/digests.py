"""Checking a digest kept outside the database against the recomputed chain.

A digest names a position and the chain's hash after it. Once a legacy chain was
re-chained (``projections.audit.upgrade``), a digest at or before the position it was
re-chained from may have been taken with either algorithm: the legacy chain is then
computed beside the current one, up to the digest's position, and either may match.
"""

from __future__ import annotations

from collections.abc import Callable

from projections.audit.hashing import (
    ALGORITHM,
    CHAIN_FUNCTIONS,
    GENESIS,
    LEGACY_ALGORITHM,
    Digest,
    Row,
)

# report(check, detail, position, row stored there or None)
Report = Callable[[str, str, int, Row | None], None]


class DigestCheck:
    def __init__(self, digest: Digest, algorithm: str, upgraded_at: int | None) -> None:
        self.digest = digest
        self.algorithm = algorithm
        # Up to where the legacy chain is computed (0: not at all).
        self.legacy_until = (
            digest.position
            if algorithm == ALGORITHM and upgraded_at is not None and digest.position <= upgraded_at
            else 0
        )
        self.legacy_hash = GENESIS
        self.matched = algorithm  # the algorithm the digest matched
        self.seen = False

    def batch(
        self, after: int, rows: list[Row], hashes: list[bytes], index: int | None, report: Report
    ) -> None:
        """One batch after ``after``: ``hashes`` are the chain's after each row and
        ``index`` the digest's position in ``rows``, if it is there."""
        legacy = self._legacy_hashes(after, rows)
        if index is None:
            return
        self.seen = True
        position = self.digest.position
        if self.digest.hash == hashes[index]:
            return
        legacy_hash = legacy[index] if index < len(legacy) else None
        if legacy_hash is not None and self.digest.hash == legacy_hash:
            self.matched = LEGACY_ALGORITHM  # taken before the upgrade
            return
        either = (
            f" (or {legacy_hash.hex()} with {LEGACY_ALGORITHM}, for a digest taken before "
            "the chain was upgraded)"
            if legacy_hash is not None
            else ""
        )
        report(
            "digest",
            f"the recomputed chain at position {position} is {hashes[index].hex()}{either}, "
            f"the digest says {self.digest.hash.hex()}: the log up to {position} is "
            "not the one the digest was taken from",
            position,
            rows[index],
        )

    def finish(self, report: Report) -> None:
        if not self.seen:
            report(
                "digest",
                f"the digest names position {self.digest.position}, where no event is stored",
                self.digest.position,
                None,
            )

    @property
    def check_name(self) -> str:
        if self.matched == self.algorithm:
            return "digest"
        return f"digest ({self.matched}, taken before the chain was upgraded)"

    def _legacy_hashes(self, after: int, rows: list[Row]) -> list[bytes]:
        """The legacy chain's hashes of the rows up to ``legacy_until``."""
        if after >= self.legacy_until:
            return []
        upto = [row for row in rows if row[0] <= self.legacy_until]
        hashes = CHAIN_FUNCTIONS[LEGACY_ALGORITHM](self.legacy_hash, upto)
        if hashes:
            self.legacy_hash = hashes[-1]
        return hashes
