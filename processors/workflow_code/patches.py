"""Versioning of long-running code: `workflow.patched()` and `workflow.deprecate_patch()`.

`workflow.patched("fix")` returns True where the run meets it live, and records a
`MarkerRecorded("fix")` event there; on replay it returns True only if the run's history
has that marker, so runs that passed this point with the old code keep the old branch.
The answer is kept for the rest of the run. `workflow.deprecate_patch("fix")` is for code
that keeps only the new branch once no run without the marker is left: it records the
marker live and accepts histories with or without it.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RecordMarker:
    patch_id: str
    deprecated: bool = False
    location: str = ""


class Patches:
    """One run's patch answers.

    `recorded` are the markers in the run's history (what replay may take); `record` takes
    a marker as the run's next decision; `location` names the user code deciding.
    """

    def __init__(
        self,
        recorded: Collection[str],
        record: Callable[[RecordMarker], None],
        location: Callable[[], str],
    ) -> None:
        self._recorded = recorded
        self._record = record
        self._location = location
        self._answers: dict[str, bool] = {}

    def patched(self, patch_id: str, replaying: bool) -> bool:
        """Whether the run takes the new branch of `patch_id`; the first answer is kept."""
        if patch_id not in self._answers:
            take = not replaying or patch_id in self._recorded
            if take:
                self._record(RecordMarker(patch_id, False, self._location()))
            self._answers[patch_id] = take
        return self._answers[patch_id]

    def mark(self) -> int:
        """A point to roll back to (see `rollback`)."""
        return len(self._answers)

    def rollback(self, mark: int) -> None:
        """Forgets the answers given since `mark`: their markers were not recorded."""
        for patch_id in list(self._answers)[mark:]:
            del self._answers[patch_id]

    def deprecate_patch(self, patch_id: str, replaying: bool) -> None:
        """Records the marker of a patch whose old branch is gone, where the history allows."""
        if patch_id not in self._answers:
            if not replaying or patch_id in self._recorded:
                self._record(RecordMarker(patch_id, True, self._location()))
            self._answers[patch_id] = True
