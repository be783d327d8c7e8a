"""The Replayer: current code against recorded histories, before a deploy (pure)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from processors.run.state import Effects
from processors.workflow_code.registry import Registry
from streams import Replayer, activity, workflow
from tests.unit.test_run_core import conv, new_run

T = timedelta(seconds=5)


@activity.defn
def withdraw(amount: int) -> str:
    return f"-{amount}"


@activity.defn
def deposit(amount: int) -> str:
    return f"+{amount}"


@workflow.defn(name="Transfer")
class Transfer:
    @workflow.run
    async def run(self, amount: int) -> str:
        w = await workflow.execute_activity(withdraw, amount, start_to_close_timeout=T)
        d = await workflow.execute_activity(deposit, amount, start_to_close_timeout=T)
        return w + d


@workflow.defn(name="Transfer")
class TransferReordered:
    @workflow.run
    async def run(self, amount: int) -> str:
        d = await workflow.execute_activity(deposit, amount, start_to_close_timeout=T)
        w = await workflow.execute_activity(withdraw, amount, start_to_close_timeout=T)
        return w + d


REG = Registry([Transfer], [withdraw, deposit])


def _history(finish: bool = True) -> list:  # type: ignore[type-arg]
    run, _, _ = new_run(Transfer, 5, registry=REG)
    run.complete_activity(1, 1, conv.to_payload("-5"), 2000, Effects())
    if finish:
        run.complete_activity(2, 1, conv.to_payload("+5"), 3000, Effects())
    events: list = list(run.events)  # type: ignore[type-arg]
    return events


def test_unchanged_code_replays_open_and_closed_runs_cleanly() -> None:
    results = Replayer(workflows=[Transfer]).replay_all([_history(), _history(finish=False)])
    assert [r.ok for r in results] == [True, True]
    assert results[0].events == 6 and results[0].workflow_type == "Transfer"


def test_a_reordered_activity_is_reported_as_non_deterministic() -> None:
    result = Replayer(workflows=[TransferReordered]).replay(_history())
    assert not result.ok and result.error is not None
    assert "event 2" in result.error and "withdraw" in result.error
    assert "test_replayer.py:" in result.error  # where the code diverged


def test_an_unknown_workflow_type_and_an_empty_history_are_clear_errors() -> None:
    unknown = Replayer(workflows=[]).replay(_history())
    assert not unknown.ok and "not registered" in (unknown.error or "")
    with pytest.raises(ValueError, match="empty history"):
        Replayer(workflows=[Transfer]).replay([])


def test_replaying_does_not_touch_the_history() -> None:
    history = _history()
    before = [(e.event_id, type(e.attributes).__name__) for e in history]
    Replayer(workflows=[TransferReordered]).replay(history)
    assert [(e.event_id, type(e.attributes).__name__) for e in history] == before
