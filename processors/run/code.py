"""A run's code in memory (a `processors.run.state.Run` mixin): loaded at start, rebuilt by replay
after a restore, checked against the history on the way, and retried for a blocked run once
fixed code is deployed."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from processors.workflow_code.instance import Step, WorkflowInstance
from processors.workflow_code.registry import Registry, UnknownWorkflowError
from processors.workflow_code.replay import CHANGED, NonDeterminismError, describe_decision, replay
from processors.workflow_code.replay import location as command_location
from streams.wire.events import (
    EventAttributes,
    HistoryEvent,
    MarkerRecorded,
    WorkflowStarted,
    WorkflowUnblocked,
)
from streams.wire.records import Failure

if TYPE_CHECKING:
    from processors.run.effects import Effects


class CodeLifecycle:
    """Loading, replaying and unblocking a run's workflow code."""

    workflow_id: str
    run_id: str
    events: list[HistoryEvent]
    blocked: Failure | None
    instance: WorkflowInstance | None
    _registry: Registry | None
    _append: Callable[[EventAttributes, int, Effects], HistoryEvent]
    _apply_step: Callable[[Step, int, Effects], None]
    _block: Callable[[str, Failure, int, Effects], None]

    @property
    def closed(self) -> bool:
        raise NotImplementedError

    def _ensure_instance(self, registry: Registry, now: int, fx: Effects) -> None:
        """Rebuilds the live code by replay if it is not in memory (after restore)."""
        if self.instance is not None or self.closed or self.blocked is not None:
            return
        try:
            pending = self._replay(registry)
        except NonDeterminismError as e:
            self._block(
                "non_determinism", Failure(str(e), "NonDeterminismError", "workflow"), now, fx
            )
            return
        except UnknownWorkflowError as e:
            self._block(
                "workflow_error", Failure(str(e), "UnknownWorkflowError", "workflow"), now, fx
            )
            return
        if pending.decisions or pending.blocked is not None:
            # history ends with a step whose commands are not recorded: the code changed
            first = pending.decisions[0] if pending.decisions else None
            detail = (
                f"{describe_decision(first)} at {command_location(first)}" if first else "an error"
            )
            failure = Failure(
                f"workflow {self.workflow_id!r} replayed to the end of its history "
                f"(event {len(self.events)}) and then issued {detail} that history does not "
                f"have; {CHANGED}",
                "NonDeterminismError",
                kind="workflow",
            )
            self._block("non_determinism", failure, now, fx)

    def try_unblock(self, registry: Registry, now: int, fx: Effects) -> bool:
        """For a blocked run: replays with the code deployed now, and resumes if it fits."""
        if self.blocked is None or self.closed:
            return False
        self._registry = registry
        try:
            pending = self._replay(registry)
        except (NonDeterminismError, UnknownWorkflowError):
            self.instance = None
            return False
        if pending.blocked is not None:
            self.instance = None
            return False
        self._append(WorkflowUnblocked("code replayed cleanly"), now, fx)
        self._apply_step(pending, now, fx)
        return True

    def _load_instance(self, registry: Registry) -> None:
        started = self.events[0]
        assert isinstance(started.attributes, WorkflowStarted)
        definition = registry.workflow(started.attributes.workflow_type)
        self.instance = WorkflowInstance(
            definition,
            self.workflow_id,
            self.run_id,
            started.attributes,
            started.time,
            registry.converter,
            guard=registry.determinism_guard,
            max_payload_bytes=registry.max_payload_bytes,
        )
        self.instance.suggest_continue_as_new_after = registry.suggest_continue_as_new_after
        self.instance.recorded_patches = {
            e.attributes.patch_id for e in self.events if isinstance(e.attributes, MarkerRecorded)
        }

    def _replay(self, registry: Registry) -> Step:
        self.instance = None
        self._load_instance(registry)
        assert self.instance is not None
        try:
            return replay(self.workflow_id, self.events, self.instance)
        except NonDeterminismError:
            self.instance = None
            raise

    def live_instance(self, registry: Registry) -> WorkflowInstance:
        """The run's code with its current state, rebuilt by replay if it is not loaded
        (also for a closed run: queries read its final state). Records nothing."""
        if self.instance is not None:
            return self.instance
        self._load_instance(registry)
        instance = self.instance
        assert instance is not None
        try:
            replay(self.workflow_id, self.events, instance)
        finally:
            if self.closed or self.blocked is not None:
                self.instance = None  # only running runs keep their code loaded
        return instance
