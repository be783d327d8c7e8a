"""History limits of a run: a run whose history grows past the configured length or size
fails with an error that says to continue as new; at 80% of either limit it is warned
about once. Pure functions of the history's length and size."""

from __future__ import annotations

import logging

from streams.wire.records import Failure

log = logging.getLogger(__name__)

WARN_AT = 0.8
# updates a run may have accepted and not yet finished (Temporal's default): more wait
# in the senders' retries, not in the run's memory
MAX_UPDATES_IN_FLIGHT = 10


def limit_failure(
    workflow_id: str, run_id: str, length: int, size: int, max_events: int, max_bytes: int
) -> Failure | None:
    """The failure of a run whose history (`length` events, `size` bytes) reached a limit;
    None while it is within both."""
    if length < max_events and size < max_bytes:
        return None
    what = (
        f"{length} events (limit {max_events})"
        if length >= max_events
        else f"{size} bytes (limit {max_bytes})"
    )
    message = (
        f"workflow {workflow_id!r} run {run_id}: history reached {what}; "
        "a run this long must hand over with workflow.continue_as_new() (check "
        "workflow.info().is_continue_as_new_suggested() in its loop)"
    )
    log.error("%s", message)
    return Failure(message, "HistoryLimitExceeded", "workflow")


def near_limits(
    workflow_id: str, run_id: str, length: int, size: int, max_events: int, max_bytes: int
) -> bool:
    """Whether the history is near a limit (and says so in the log)."""
    if length < WARN_AT * max_events and size < WARN_AT * max_bytes:
        return False
    log.warning(
        "workflow %r run %s: history at %d events / %d bytes, near its limits "
        "(%d events / %d bytes); the run fails there unless it continues as new",
        workflow_id,
        run_id,
        length,
        size,
        max_events,
        max_bytes,
    )
    return True


def signal_limit_message(workflow_id: str, run_id: str, received: int, max_signals: int) -> str:
    """Why a run that has received `received` signals refuses one more; empty while it
    is under `max_signals`."""
    if received < max_signals:
        return ""
    return (
        f"workflow {workflow_id!r} run {run_id} has received the maximum of {max_signals} "
        "signals (EVERFLOW_MAX_SIGNALS) and refuses more; a run that takes an unbounded "
        "stream of signals must continue as new (workflow.continue_as_new()) before it "
        "gets there"
    )


def updates_in_flight_message(workflow_id: str, run_id: str, in_flight: int) -> str:
    """Why a run with `in_flight` unfinished updates refuses one more; empty under the
    limit."""
    if in_flight < MAX_UPDATES_IN_FLIGHT:
        return ""
    return (
        f"workflow {workflow_id!r} run {run_id} has {in_flight} updates in flight, the "
        f"maximum ({MAX_UPDATES_IN_FLIGHT}); send this one again once some have finished"
    )
