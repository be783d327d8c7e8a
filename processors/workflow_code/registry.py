"""What a worker can run: its workflow classes and activity functions, by name."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from streams.activity import ActivityDefinition
from streams.errors import UnknownActivityError, UnknownWorkflowError
from streams.payload import DEFAULT_MAX_PAYLOAD_BYTES, DataConverter
from streams.workflow import WorkflowDefinition


class Registry:
    """Workflow definitions and activities by name, plus the converter they share."""

    def __init__(
        self,
        workflows: Iterable[type] = (),
        activities: Iterable[Callable[..., Any]] = (),
        converter: DataConverter | None = None,
        determinism_guard: bool = True,
        max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
        suggest_continue_as_new_after: int = 10_000,
        max_history_events: int = 50_000,
        max_history_bytes: int = 50 * 1024 * 1024,
    ) -> None:
        self.workflows = {d.name: d for d in (WorkflowDefinition.of(w) for w in workflows)}
        self.activities = {d.name: d for d in (ActivityDefinition.of(a) for a in activities)}
        self.converter = converter or DataConverter()
        self.determinism_guard = determinism_guard
        self.max_payload_bytes = max_payload_bytes
        # history length at which info().is_continue_as_new_suggested() turns true
        self.suggest_continue_as_new_after = suggest_continue_as_new_after
        # a run that reaches either limit fails (warned at 80%): continue_as_new before it
        self.max_history_events = max_history_events
        self.max_history_bytes = max_history_bytes

    def workflow(self, name: str) -> WorkflowDefinition:
        try:
            return self.workflows[name]
        except KeyError:
            known = ", ".join(sorted(self.workflows)) or "none"
            raise UnknownWorkflowError(
                f"workflow type {name!r} is not registered on this worker (known: {known}); "
                "deploy a worker that has it"
            ) from None

    def activity(self, name: str) -> ActivityDefinition:
        try:
            return self.activities[name]
        except KeyError:
            known = ", ".join(sorted(self.activities)) or "none"
            raise UnknownActivityError(
                f"activity type {name!r} is not registered on this worker (known: {known}); "
                "deploy a worker that has it on this task queue"
            ) from None
