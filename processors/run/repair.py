"""Human-in-the-loop repair of a run: pause, unpause and retry one activity, reset a run
to an earlier event, unblock a run after a fix. Each is a command on the `commands` topic
and leaves an event in the history, so audits see it.

- pause: no new attempt starts; a failed attempt (even the last one its policy allows)
  waits for an operator instead of failing the activity.
- unpause: a waiting activity gets its next attempt now.
- retry: the next attempt now (unpaused), with a fresh attempt budget (the account was
  fixed).
- reset: a new run from events 1..N of the current one (`reset_refusal` says when not).
- unblock: `Run.try_unblock`.
"""

from __future__ import annotations

from processors.run.effects import Effects
from processors.run.state import Run
from streams.wire.events import ActivityScheduled
from streams.wire.records import Rejected, RejectionCode

ACTIONS = ("retry", "pause", "unpause")


def control_activity(
    run: Run, activity_id: int, action: str, reason: str, now: int, fx: Effects
) -> Rejected | None:
    """An operator's pause, unpause or retry of one open activity; why not, if refused."""
    if action not in ACTIONS:
        return Rejected(
            RejectionCode.INVALID_ARGUMENT, f"unknown action {action!r}; use one of {ACTIONS}"
        )
    activities = run.activities
    state = activities.open.get(activity_id)
    if run.closed or state is None:
        open_ids = sorted(activities.open) if not run.closed else []
        return Rejected(
            RejectionCode.NOT_FOUND,
            f"workflow {run.workflow_id!r} run {run.run_id} has no open activity "
            f"{activity_id} (open: {open_ids or 'none'}); an activity whose failure "
            "reached the workflow runs again only after `everflow workflow reset`",
        )
    if action == "pause":
        activities.pause(state, reason, now, fx)
    elif action == "unpause":
        activities.unpause(state, reason, now, fx)
    else:
        activities.retry(state, reason, now, fx)
    return None


def reset_refusal(run: Run, n: int) -> str | None:
    """Why `run` cannot be reset to its event `n` (None: it can). The reset point must
    leave no activity, timer or child in flight."""
    wf = run.workflow_id
    if not 1 <= n <= len(run.events):
        return f"workflow {wf!r} run {run.run_id} has events 1..{len(run.events)}, not {n}"
    probe = Run(wf, run.run_id, run.partition, run.registry)
    for event in run.events[:n]:
        probe.apply(event)
    if probe.closed:
        return f"event {n} of workflow {wf!r} closes the run; reset to an earlier event"
    busy = (
        [f"activity {i}" for i in sorted(probe.activities.open)]
        + [f"timer {i}" for i in sorted(probe.timers.pending)]
        + [f"child {i}" for i in sorted(probe.children.open)]
    )
    if busy:
        return (
            f"at event {n} of workflow {wf!r} {', '.join(busy)} would be in flight; reset to "
            "an event where nothing is (before it was scheduled, or after its outcome)"
        )
    return None


def scheduled_before(run: Run, activity_id: int) -> int | None:
    """The event just before the activity was scheduled (a reset point)."""
    for event in run.events:
        a = event.attributes
        if isinstance(a, ActivityScheduled) and a.activity_id == activity_id:
            return event.event_id - 1
    return None
