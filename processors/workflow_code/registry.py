"""What a worker can run: its workflow classes and activity functions, by name."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from streams.activity import ActivityDefinition
from streams.errors import UnknownActivityError, UnknownWorkflowError
from streams.payload import DataConverter
from streams.settings import RunLimits
from streams.workflow import WorkflowDefinition


class Registry:
    """Workflow definitions and activities by name, plus the converter they share and the
    limits their runs are held to."""

    def __init__(
        self,
        workflows: Iterable[type] = (),
        activities: Iterable[Callable[..., Any]] = (),
        converter: DataConverter | None = None,
        limits: RunLimits | None = None,
    ) -> None:
        self.workflows = {d.name: d for d in (WorkflowDefinition.of(w) for w in workflows)}
        self.activities = {d.name: d for d in (ActivityDefinition.of(a) for a in activities)}
        self.converter = converter or DataConverter()
        self.limits = limits or RunLimits()

    # the limits by name, as the run core reads them
    @property
    def determinism_guard(self) -> bool:
        return self.limits.determinism_guard

    @property
    def max_payload_bytes(self) -> int:
        return self.limits.max_payload_bytes

    @property
    def suggest_continue_as_new_after(self) -> int:
        return self.limits.suggest_continue_as_new_after

    @property
    def max_history_events(self) -> int:
        return self.limits.max_history_events

    @property
    def max_history_bytes(self) -> int:
        return self.limits.max_history_bytes

    @property
    def deadlock_timeout(self) -> float:
        return self.limits.deadlock_timeout

    @property
    def max_signals(self) -> int:
        return self.limits.max_signals

    @property
    def max_pending(self) -> int:
        return self.limits.max_pending

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
