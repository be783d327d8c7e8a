"""A run's code in memory: loaded at start, rebuilt by replay after a restore, checked
against the history on the way, and retried for a blocked run once fixed code is deployed.
Functions of the run's events and the worker's registry; `Run` keeps the instance."""

from __future__ import annotations

from processors.workflow_code.decisions import Step
from processors.workflow_code.instance import WorkflowInstance
from processors.workflow_code.registry import Registry
from processors.workflow_code.replay import CHANGED, describe_decision, replay
from processors.workflow_code.replay import location as decision_location
from streams.wire.events import HistoryEvent, MarkerRecorded, WorkflowStarted
from streams.wire.records import Failure


def load_code(
    registry: Registry, workflow_id: str, run_id: str, events: list[HistoryEvent]
) -> WorkflowInstance:
    """A fresh instance of the run's workflow code, before any event is delivered to it.
    Raises UnknownWorkflowError if this worker has no such workflow."""
    started = events[0]
    assert isinstance(started.attributes, WorkflowStarted)
    definition = registry.workflow(started.attributes.workflow_type)
    instance = WorkflowInstance(
        definition,
        workflow_id,
        run_id,
        started.attributes,
        started.time,
        registry.converter,
        guard=registry.determinism_guard,
        max_payload_bytes=registry.max_payload_bytes,
        deadlock_timeout=registry.deadlock_timeout,
        max_pending=registry.max_pending,
        recorded_patches={
            e.attributes.patch_id for e in events if isinstance(e.attributes, MarkerRecorded)
        },
    )
    instance.suggest_continue_as_new_after = registry.suggest_continue_as_new_after
    return instance


def replay_code(
    registry: Registry, workflow_id: str, run_id: str, events: list[HistoryEvent]
) -> tuple[WorkflowInstance, Step]:
    """The run's code brought to the end of its history, and what it decided beyond the
    record. Raises NonDeterminismError or UnknownWorkflowError."""
    instance = load_code(registry, workflow_id, run_id, events)
    return instance, replay(workflow_id, events, instance)


def unrecorded(workflow_id: str, length: int, pending: Step) -> Failure | None:
    """Why a run whose replay left decisions (or an error) its history does not have
    cannot go on: its code changed. None when the replay ended cleanly."""
    if not pending.decisions and pending.blocked is None:
        return None
    first = pending.decisions[0] if pending.decisions else None
    detail = f"{describe_decision(first)} at {decision_location(first)}" if first else "an error"
    return Failure(
        f"workflow {workflow_id!r} replayed to the end of its history "
        f"(event {length}) and then issued {detail} that history does not "
        f"have; {CHANGED}",
        "NonDeterminismError",
        kind="workflow",
    )
