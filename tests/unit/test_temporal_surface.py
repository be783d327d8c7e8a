"""Code written for temporalio's Python SDK runs as written: its sandbox context managers,
`args=[...]`, `start_activity`, result types from annotations, and its names for ours."""

from __future__ import annotations

import ast
import asyncio
import inspect
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest

from processors.run.state import Effects, Run, replay_history
from processors.workflow_code.registry import Registry
from streams import (
    Client,
    NotInActivityError,
    NotInWorkflowError,
    WorkflowHandle,
    activity,
    workflow,
)
from streams.activity import ActivityInfo
from streams.payload import DataConverter
from streams.wire.events import TimerStarted, WorkflowStarted
from streams.wire.records import RunStatus

with workflow.unsafe.imports_passed_through():
    import json  # a Temporal user passes libraries through its sandbox like this

conv = DataConverter()
REPLAYING: list[bool] = []  # what workflow.unsafe.is_replaying() said at each run's start
STEP = timedelta(seconds=5)


@dataclass(frozen=True)
class Receipt:
    account: str
    amount: int


@activity.defn
async def charge(account: str, amount: int) -> Receipt:
    return Receipt(account, amount)


@workflow.defn(sandboxed=False)
class Charges:
    """Two charges started at once with start_activity, arguments as args=[...]."""

    @workflow.run
    async def run(self, account: str, amounts: list[int]) -> Receipt:
        REPLAYING.append(workflow.unsafe.is_replaying())
        with workflow.unsafe.sandbox_unrestricted():
            note = json.dumps({"account": account})
        first = workflow.start_activity(
            charge, args=[account, amounts[0]], start_to_close_timeout=STEP
        )
        second = workflow.start_activity(
            charge, args=[account, amounts[1]], start_to_close_timeout=STEP
        )
        receipts = await asyncio.gather(first, second)
        assert all(isinstance(r, Receipt) for r in receipts), receipts
        workflow.logger.info("charged %s", note)
        return Receipt(account, sum(r.amount for r in receipts))


@workflow.defn
class Refund:
    @workflow.run
    async def run(self, account: str, amount: int) -> dict[str, int]:
        raw = await workflow.execute_activity(
            charge, args=[account, -amount], start_to_close_timeout=STEP, result_type=dict
        )
        assert isinstance(raw, dict), raw  # result_type= wins over the annotation
        return raw


class Fees:
    """Activities as methods of a class whose instance the worker registers."""

    def __init__(self, percent: int) -> None:
        self.percent = percent

    @activity.defn
    def fee(self, amount: int) -> int:
        return amount * self.percent // 100


@workflow.defn
class Chained:
    """A local activity given args=[...], then continue-as-new given args=[...]."""

    @workflow.run
    async def run(self, amount: int, rounds: int) -> int:
        fee = await workflow.execute_local_activity_method(
            Fees.fee, args=[amount], start_to_close_timeout=STEP
        )
        if rounds > 1:
            workflow.continue_as_new(args=[amount - fee, rounds - 1])
        return int(amount - fee)


@workflow.defn
class Patient:
    @workflow.run
    async def run(self) -> str:
        try:
            await workflow.wait_condition(lambda: False, timeout=90)  # seconds, as temporalio
        except TimeoutError:
            return "gave up"
        return "never"


def started(workflow_type: str, *args: object) -> tuple[Run, Effects, Registry]:
    registry = Registry([Charges, Refund, Chained, Patient], [charge, Fees(percent=10).fee])
    run, fx = Run("wf", "run-1", 0, registry), Effects()
    run.start(WorkflowStarted(workflow_type, "q", conv.to_payloads(list(args)), "c"), 1000, fx)
    return run, fx, registry


def test_activities_given_args_lists_are_scheduled_in_call_order_and_gathered() -> None:
    run, fx, registry = started("Charges", "alice", [30, 12])
    tasks = [task for _, task in fx.tasks]
    assert [t.activity_id for t in tasks] == [1, 2]
    hints = registry.activity("charge").arg_types
    assert [conv.from_payloads(t.args, hints) for t in tasks] == [["alice", 30], ["alice", 12]]
    run.complete_activity(2, 1, conv.to_payload(Receipt("alice", 12)), 2000, Effects())
    assert run.status is RunStatus.RUNNING  # the gather waits for both
    run.complete_activity(1, 1, conv.to_payload(Receipt("alice", 30)), 3000, Effects())
    assert run.status is RunStatus.COMPLETED, run.blocked
    assert conv.from_payload(run.result, Receipt) == Receipt("alice", 42)
    # the same history replays: start_activity schedules at the call, not when its task runs
    assert replay_history(run.events, registry).error is None


def test_is_replaying_is_false_live_and_true_on_replay(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="everflow.workflow")
    REPLAYING.clear()
    run, _, registry = started("Charges", "bob", [1, 2])
    run.complete_activity(1, 1, conv.to_payload(Receipt("bob", 1)), 2000, Effects())
    run.complete_activity(2, 1, conv.to_payload(Receipt("bob", 2)), 2000, Effects())
    assert REPLAYING == [False]
    (record,) = [r for r in caplog.records if "charged" in r.getMessage()]
    assert '{"account": "bob"}' in record.getMessage()  # sandbox_unrestricted ran its body
    assert replay_history(run.events, registry).error is None
    assert REPLAYING == [False, True]
    with pytest.raises(NotInWorkflowError):
        workflow.unsafe.is_replaying()


def test_result_type_given_to_an_activity_call_shapes_its_result() -> None:
    run, _, _ = started("Refund", "carol", 5)
    run.complete_activity(1, 1, conv.to_payload(Receipt("carol", -5)), 2000, Effects())
    assert run.status is RunStatus.COMPLETED, run.blocked
    assert conv.from_payload(run.result) == {"account": "carol", "amount": -5}


def test_arguments_both_positional_and_as_args_are_refused_with_the_call_named() -> None:
    assert workflow.arguments((), ["a", 1], "execute_activity") == ("a", 1)
    assert workflow.arguments(("a", 1), None, "execute_activity") == ("a", 1)
    with pytest.raises(TypeError, match="start_workflow got arguments both positionally"):
        workflow.arguments(("a",), ["b"], "start_workflow")
    with pytest.raises(TypeError, match="args= takes a list"):
        workflow.arguments((), "alice", "signal")


def test_run_method_names_its_workflow_and_its_return_annotation_is_the_result_type() -> None:
    definition = workflow.WorkflowDefinition.of(Charges.run)
    assert definition.name == "Charges" and definition.result_type is Receipt
    assert workflow.WorkflowDefinition.of(Refund).result_type == dict[str, int]


def test_client_calls_take_temporal_keywords() -> None:
    # every call a Temporal user makes with args= / result_type= takes them here too
    for call, keywords in [
        (Client.start_workflow, {"args", "result_type", "id", "task_queue"}),
        (Client.execute_workflow, {"args", "result_type", "id", "task_queue"}),
        (WorkflowHandle.result, {"result_type"}),
        (Client.get_workflow_handle, {"result_type"}),
        (WorkflowHandle.signal, {"args"}),
        (WorkflowHandle.query, {"args", "result_type"}),
        (WorkflowHandle.execute_update, {"args", "result_type"}),
        (workflow.execute_activity, {"args", "result_type"}),
        (workflow.start_activity, {"args", "result_type"}),
        (workflow.execute_local_activity, {"args", "result_type"}),
        (workflow.start_local_activity, {"args", "result_type"}),
        (workflow.start_child_workflow, {"args", "result_type", "id"}),
        (workflow.execute_child_workflow, {"args", "result_type", "id"}),
        (workflow.continue_as_new, {"args"}),
    ]:
        parameters = inspect.signature(call).parameters
        assert keywords <= set(parameters), (call.__qualname__, keywords - set(parameters))


def test_temporal_names_for_activity_info_and_cancellation() -> None:
    info = ActivityInfo("wf", "run-1", "Charges", 1, "charge", 1, "q", "wf/1")
    assert info.workflow_run_id == "run-1"
    with pytest.raises(NotInActivityError, match=r"activity\.is_cancelled\(\)"):
        activity.is_cancelled()
    assert not workflow.unsafe.in_sandbox()


def test_activity_methods_of_a_registered_instance_are_called_bound() -> None:
    fees = Fees(percent=10)
    definition = activity.ActivityDefinition.of(fees.fee)
    assert definition.name == "fee" and definition.arg_types == (int,)  # self is not sent
    assert definition.fn(250) == 25  # the instance's own percent


def test_local_activity_and_continue_as_new_take_args_lists() -> None:
    run, fx, registry = started("Chained", 200, 2)
    (task,) = fx.local_tasks
    assert task.activity_type == "fee" and conv.from_payloads(task.args) == [200]
    fee = registry.activity("fee").fn(*conv.from_payloads(task.args))
    run.complete_activity(task.activity_id, 1, conv.to_payload(fee), 2000, Effects())
    assert run.status is RunStatus.CONTINUED_AS_NEW and run.next_run is not None
    _next_run_id, args = run.next_run
    assert conv.from_payloads(args) == [180, 1]


def test_wait_condition_takes_its_timeout_in_seconds_too() -> None:
    run, fx, _ = started("Patient")
    (started_timer,) = [e.attributes for e in fx.events if isinstance(e.attributes, TimerStarted)]
    assert started_timer.fire_at == 1000 + 90_000
    (timer,) = fx.timers
    assert run.fire_timer(timer, timer.fire_at, Effects())
    assert run.status is RunStatus.COMPLETED and conv.from_payload(run.result) == "gave up"


# what temporalio offers under these names (its modules `temporalio`, `.client`, `.worker`,
# `.common`, `.exceptions`; `workflow.*` and `activity.*`): the seed's listings use no other
TEMPORALIO_IMPORTS = {
    "activity", "workflow", "Client", "Worker", "RetryPolicy", "ActivityError",
    "ApplicationError", "ChildWorkflowError", "WorkflowFailureError",
}  # fmt: skip
TEMPORALIO_WORKFLOW = {
    "defn", "run", "signal", "query", "update", "execute_activity", "start_activity",
    "execute_local_activity", "execute_child_workflow", "start_child_workflow", "sleep",
    "wait_condition", "now", "random", "uuid4", "info", "logger", "unsafe", "patched",
    "continue_as_new",
}  # fmt: skip
TEMPORALIO_ACTIVITY = {"defn", "info", "heartbeat", "logger", "is_cancelled"}
SEED = Path(__file__).resolve().parents[2] / "examples" / "seed"


@pytest.mark.parametrize("listing", ["activities", "workflows", "run_worker", "starter"])
def test_seed_listings_use_only_names_temporalio_has(listing: str) -> None:
    tree = ast.parse((SEED / f"{listing}.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "streams":
            names = {alias.name for alias in node.names}
            assert names <= TEMPORALIO_IMPORTS, names - TEMPORALIO_IMPORTS
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            known = {"workflow": TEMPORALIO_WORKFLOW, "activity": TEMPORALIO_ACTIVITY}
            if node.value.id in known:
                assert node.attr in known[node.value.id], f"{node.value.id}.{node.attr}"
