"""History limits of a run (a `processors.run.state.Run` mixin): a run whose history grows past
the configured length or size fails with an error that says to continue as new; at 80% of
either limit it is warned about once."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from processors.workflow_code.registry import Registry
from streams.wire.events import EventAttributes, HistoryEvent, WorkflowFailed
from streams.wire.records import Failure

if TYPE_CHECKING:
    from processors.run.effects import Effects
    from processors.run.state import Run
    from processors.workflow_code.instance import WorkflowInstance

log = logging.getLogger(__name__)

WARN_AT = 0.8


class HistoryLimits:
    workflow_id: str
    run_id: str
    events: list[HistoryEvent]
    history_bytes: int
    limit_warned: bool
    instance: WorkflowInstance | None
    _append: Callable[[EventAttributes, int, Effects], HistoryEvent]
    _close: Callable[[int, Effects], None]

    def check_history_limits(
        self, registry: Registry, now: int, effects: Callable[[Run], Effects]
    ) -> None:
        """Fails the run if its history reached a limit; warns once when it comes near."""
        length, size = len(self.events), self.history_bytes
        max_events, max_bytes = registry.max_history_events, registry.max_history_bytes
        if length >= max_events or size >= max_bytes:
            what = (
                f"{length} events (limit {max_events})"
                if length >= max_events
                else f"{size} bytes (limit {max_bytes})"
            )
            message = (
                f"workflow {self.workflow_id!r} run {self.run_id}: history reached {what}; "
                "a run this long must hand over with workflow.continue_as_new() (check "
                "workflow.info().is_continue_as_new_suggested() in its loop)"
            )
            log.error("%s", message)
            fx = effects(self)  # type: ignore[arg-type]
            self.instance = None
            self._append(
                WorkflowFailed(Failure(message, "HistoryLimitExceeded", "workflow")), now, fx
            )
            self._close(now, fx)
        elif not self.limit_warned and (
            length >= WARN_AT * max_events or size >= WARN_AT * max_bytes
        ):
            self.limit_warned = True
            log.warning(
                "workflow %r run %s: history at %d events / %d bytes, near its limits "
                "(%d events / %d bytes); the run fails there unless it continues as new",
                self.workflow_id,
                self.run_id,
                length,
                size,
                max_events,
                max_bytes,
            )
