"""Human-in-the-loop repair of a run (a `processors.run.state.Run` mixin): pause, unpause and
retry one activity, reset a run to an earlier event, unblock a run after a fix. Each is
a command on the `commands` topic and leaves an event in the history, so audits see it.

- pause: no new attempt starts; a failed attempt (even the last one its policy allows)
  waits for an operator instead of failing the activity.
- unpause: a waiting activity gets its next attempt now.
- retry: the next attempt now (unpaused), with a fresh attempt budget (the account was
  fixed).
- reset (in `processors.run.commands`): a new run from events 1..N of the current one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from processors.workflow_code.registry import Registry
from streams.errors import NonDeterminismError, UnknownWorkflowError
from streams.wire.events import (
    ActivityPaused,
    ActivityReset,
    ActivityRetried,
    ActivityUnpaused,
    EventAttributes,
    HistoryEvent,
)
from streams.wire.records import Failure, Rejected, RunDescription, TimerKind

if TYPE_CHECKING:
    from processors.run.activities import ActivityState
    from processors.run.effects import Effects
    from processors.workflow_code.instance import Step

ACTIONS = ("retry", "pause", "unpause")


class Repair:
    workflow_id: str
    run_id: str
    activities: dict[int, ActivityState]
    blocked: Failure | None
    _registry: Registry | None
    _append: Callable[[EventAttributes, int, Effects], HistoryEvent]
    _apply_step: Callable[[Step, int, Effects], None]
    _block: Callable[[str, Failure, int, Effects], None]
    _replay: Callable[[Registry], Step]
    dispatch: Callable[[ActivityState, int, Effects, bool], None]
    _clear: Callable[[ActivityState, list[TimerKind], Effects], None]
    describe: Callable[..., RunDescription]
    try_unblock: Callable[[Registry, int, Effects], bool]

    @property
    def closed(self) -> bool:
        raise NotImplementedError

    def control_activity(
        self, activity_id: int, action: str, reason: str, now: int, fx: Effects
    ) -> RunDescription | Rejected:
        if action not in ACTIONS:
            return Rejected("invalid_argument", f"unknown action {action!r}; use one of {ACTIONS}")
        state = self.activities.get(activity_id)
        if self.closed or state is None:
            open_ids = sorted(self.activities) if not self.closed else []
            return Rejected(
                "not_found",
                f"workflow {self.workflow_id!r} run {self.run_id} has no open activity "
                f"{activity_id} (open: {open_ids or 'none'}); an activity whose failure "
                "reached the workflow runs again only after `everflow workflow reset`",
            )
        if action == "pause":
            if not state.paused:
                self._append(ActivityPaused(activity_id, reason), now, fx)
                if state.backoff:  # its pending retry waits for unpause
                    self._clear(state, [TimerKind.ACTIVITY_RETRY], fx)
        elif action == "unpause":
            if state.paused:
                self._append(ActivityUnpaused(activity_id, reason), now, fx)
                if state.backoff:
                    self._retry_now(state, now, fx)
        else:  # retry: unpaused, a fresh budget, and the next attempt now if none runs
            if state.paused:
                self._append(ActivityUnpaused(activity_id, reason), now, fx)
            self._append(ActivityReset(activity_id, reason), now, fx)
            if state.backoff:
                self._retry_now(state, now, fx)
        return self.describe()

    def _retry_now(self, state: ActivityState, now: int, fx: Effects) -> None:
        self._clear(state, [TimerKind.ACTIVITY_RETRY], fx)
        self._append(ActivityRetried(state.scheduled.activity_id, state.attempt + 1), now, fx)
        self.dispatch(state, now, fx, False)

    def unblock(self, registry: Registry, now: int, fx: Effects) -> RunDescription | Rejected:
        if self.blocked is None or self.closed:
            return Rejected("not_blocked", f"workflow {self.workflow_id!r} is not blocked")
        if not self.try_unblock(registry, now, fx):
            return Rejected(
                "still_blocked",
                f"workflow {self.workflow_id!r} still does not replay with the code deployed "
                f"now: {self.blocked.message if self.blocked else ''}",
            )
        return self.describe()

    def resume(self, registry: Registry, now: int, fx: Effects) -> None:
        """After a reset: replays the copied events and goes on live from their end."""
        self._registry = registry
        try:
            pending = self._replay(registry)
        except (NonDeterminismError, UnknownWorkflowError) as e:
            kind = type(e).__name__
            self._block("non_determinism", Failure(str(e), kind, "workflow"), now, fx)
            return
        self._apply_step(pending, now, fx)
