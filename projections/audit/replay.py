"""The replaying half of ``audit verify``: each stored row decoded and fed to the
invariants, and the read-model checks run when the replay reaches each view's position.

Nothing stored makes it raise: a row the replay cannot use (``stored.Replayable``
says which), a state that does not decode or decodes to something other than an
event's fields, an event that lacks a field, a view that cannot be read: each is a
problem at its position. Only the databases being unavailable (``is_transient``)
stops a run, as it stops every other command.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from functools import partial
from typing import Any
from uuid import UUID

from eventsourcing.application import Application

from projections.audit.hashing import Row
from projections.audit.invariants import LedgerInvariants, Problem
from projections.audit.problems import PostingsCheck, ReadModelCheck
from projections.audit.stored import Replayable
from projections.audit.world_ids import WorldIds
from projections.failures import describe_error, is_transient


def state_decoder(application: Application[Any]) -> Callable[[bytes], Any]:
    """Stored state bytes -> the event's field dict, through the app's own mapper."""
    mapper = application.mapper
    cipher, compressor, transcoder = mapper.cipher, mapper.compressor, mapper.transcoder

    def decode(state: bytes) -> Any:
        if cipher is not None:
            state = cipher.decrypt(state)
        if compressor is not None:
            state = compressor.decompress(state)
        return transcoder.decode(state)

    return decode


class Replay:
    """Feeds rows, in log order, to the invariants and the world-id check."""

    def __init__(
        self, invariants: LedgerInvariants, replayable: Replayable, decode: Callable[[bytes], Any]
    ) -> None:
        self.invariants = invariants
        self.replayable = replayable
        self.decode = decode
        self.world_ids = WorldIds()

    def feed(self, row: Row) -> None:
        position = row[0]
        values = self.replayable.values(row)
        if values is None:
            return  # the stored-form check said why
        originator_id, version, topic, state = values
        try:
            data = self.decode(state)
        except Exception as error:  # noqa: BLE001 - any undecodable state is a finding.
            self._problem(f"stored state does not decode: {describe_error(error)}", position)
            return
        if not isinstance(data, dict):
            self._problem(f"stored state decodes to a {type(data).__name__}", position)
            return
        self._feed(position, originator_id, version, topic, data)

    def _feed(
        self, position: int, originator_id: UUID, version: int, topic: str, data: dict[str, Any]
    ) -> None:
        squatted = self.world_ids.check(position, originator_id, topic, data)
        if squatted is not None:
            self.invariants.report(squatted)
        try:
            self.invariants.feed(position, originator_id, version, topic, data)
        except Exception as error:  # noqa: BLE001 - a malformed event is a finding.
            detail = f"{topic} lacks or mistypes a field: {describe_error(error)}"
            self._problem(detail, position)

    def _problem(self, detail: str, position: int) -> None:
        self.invariants.report(Problem("decode", detail, position))


class ViewChecks:
    """The read-model checks of one run: each view is loaded first, then checked when
    the replay has reached exactly its position (``run_until``); a check that streams
    postings is also given each batch's (``stream``)."""

    def __init__(self, checks: Sequence[ReadModelCheck], invariants: LedgerInvariants) -> None:
        self.checks = checks
        self.invariants = invariants
        self.due: list[tuple[int, ReadModelCheck]] = []
        self.checked: list[str] = []
        self.skipped: list[str] = []
        self.streaming = [c for c in checks if isinstance(c, PostingsCheck)]

    def load(self) -> None:
        for check in self.checks:
            try:
                position = check.load()
            except Exception as error:
                self._failed(check.name, error, None)
                continue
            if position is None:
                self.skipped.append(check.name)
            else:
                self.due.append((position, check))
        self.due.sort(key=lambda due: due[0])

    def next_position(self) -> int | None:
        """The position of the next view to check, if any is left."""
        return self.due[0][0] if self.due else None

    def run_until(self, reached: int) -> None:
        """Runs the checks whose view position the replay has reached."""
        while self.due and self.due[0][0] <= reached:
            _, check = self.due.pop(0)
            self.checked.append(check.name)
            self._report(check.name, reached, partial(check.check, self.invariants, reached))

    def stream(self, after: int, last: int) -> None:
        postings = self.invariants.postings
        assert postings is not None
        for check in self.streaming:
            self._report(check.name, last, partial(check.check_postings, after, last, postings))

    def finish(self, last: int) -> None:
        """A view still due is past the log's end."""
        for position, check in self.due:
            self.invariants.report(
                Problem(
                    check.name,
                    f"the view is at position {position}, past the log's end {last}",
                    last + 1,
                )
            )

    def _report(self, name: str, position: int, found: Callable[[], Iterable[Problem]]) -> None:
        try:
            problems = list(found())
        except Exception as error:
            self._failed(name, error, position)
            return
        for problem in problems:
            self.invariants.report(problem)

    def _failed(self, name: str, error: Exception, position: int | None) -> None:
        if is_transient(error):
            raise error
        detail = f"the view could not be checked: {describe_error(error)}"
        self.invariants.report(Problem(name, detail, position))
