"""Versioning of long-running code (a `processors.workflow_code.instance.WorkflowInstance` mixin).

`workflow.patched("fix")` returns True where the run meets it live, and records a
`MarkerRecorded("fix")` event there; on replay it returns True only if the run's history
has that marker, so runs that passed this point with the old code keep the old branch.
The answer is kept for the rest of the run. `workflow.deprecate_patch("fix")` is for code
that keeps only the new branch once no run without the marker is left: it records the
marker live and accepts histories with or without it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class RecordMarker:
    patch_id: str
    deprecated: bool = False
    location: str = ""


class Patches:
    _decisions: list[Any]
    _replaying: bool
    _location: Callable[[], str]

    def _init_patches(self) -> None:
        self.recorded_patches: set[str] = set()  # markers in the run's history (for replay)
        self._patches: dict[str, bool] = {}

    def patched(self, patch_id: str) -> bool:
        if patch_id not in self._patches:
            take = not self._replaying or patch_id in self.recorded_patches
            if take:
                self._decisions.append(RecordMarker(patch_id, False, self._location()))
            self._patches[patch_id] = take
        return self._patches[patch_id]

    def deprecate_patch(self, patch_id: str) -> None:
        if patch_id not in self._patches:
            if not self._replaying or patch_id in self.recorded_patches:
                self._decisions.append(RecordMarker(patch_id, True, self._location()))
            self._patches[patch_id] = True
