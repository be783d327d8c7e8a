"""The workflow SDK as user code sees it: arguments, results, determinism helpers, logging."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from processors.run.state import Effects, Run
from processors.workflow_code.registry import Registry
from streams import __all__ as public_names
from streams import activity, workflow
from streams.payload import DataConverter, ZlibCodec
from streams.testing import WorkflowEnvironment
from streams.wire.events import ActivityCompleted, HistoryEvent, WorkflowStarted

conv = DataConverter()


@dataclass(frozen=True)
class Address:
    city: str
    zip: str


@dataclass(frozen=True)
class Customer:
    name: str
    address: Address
    tags: list[str]


@activity.defn
def register(customer: Customer, plan: str, seats: int) -> Customer:
    return customer


@workflow.defn
class Signup:
    @workflow.run
    async def run(self, customer: Customer, plan: str) -> dict[str, object]:
        echoed = await workflow.execute_activity(
            register, customer, plan, 3, start_to_close_timeout=timedelta(seconds=5)
        )
        assert isinstance(echoed, Customer) and isinstance(echoed.address, Address)
        workflow.logger.info("signed up %s", customer.name)
        return {
            "city": echoed.address.city,
            "id": str(workflow.uuid4()),
            "n": workflow.random().randint(0, 10**9),
            "at": workflow.now().isoformat(),
            "info": workflow.info().workflow_type,
        }


def start(registry: Registry) -> tuple[Run, Effects]:
    run, fx = Run("wf", "run-7", 0, registry), Effects()
    customer = Customer("Ada", Address("London", "N1"), ["vip"])
    args = conv.to_payloads([customer, "pro"])
    run.start(WorkflowStarted("Signup", "q", args, "c"), 5000, fx)
    return run, fx


def test_dataclass_and_several_arguments_reach_activity_and_results_come_back_typed() -> None:
    received: list[tuple[object, ...]] = []

    @activity.defn(name="register")
    def fake_register(customer: Customer, plan: str, seats: int) -> Customer:
        received.append((customer, plan, seats))
        return customer

    start = datetime(1970, 1, 1, 0, 0, 5, tzinfo=UTC)

    async def body() -> tuple[dict[str, Any], list[HistoryEvent]]:
        async with await WorkflowEnvironment.start_time_skipping(
            workflows=[Signup], activities=[fake_register], start_time=start
        ) as env:
            customer = Customer("Ada", Address("London", "N1"), ["vip"])
            handle = await env.client.start_workflow(
                Signup.run, customer, "pro", id="wf", task_queue=env.task_queue
            )
            return await handle.result(), await handle.fetch_history()

    result, history = asyncio.run(body())
    ((customer, plan, seats),) = received
    assert customer == Customer("Ada", Address("London", "N1"), ["vip"])
    assert (plan, seats) == ("pro", 3)
    assert result["city"] == "London" and result["info"] == "Signup"
    # the event's time (the virtual clock's, set to 00:00:05), not the wall clock
    (completed,) = [e for e in history if isinstance(e.attributes, ActivityCompleted)]
    assert result["at"] == datetime.fromtimestamp(completed.time / 1000, UTC).isoformat()
    assert result["at"].startswith("1970-01-01T00:00:")


def test_uuid4_and_random_are_the_same_on_replay() -> None:
    registry = Registry([Signup], [register])
    first, _ = start(registry)
    first.complete_activity(
        1, 1, conv.to_payload(Customer("Ada", Address("L", "1"), [])), 6000, Effects()
    )
    replayed = Run("wf", "run-7", 0, registry)
    for event in first.events[:-2]:  # up to and including ActivityScheduled
        replayed.apply(event)
    replayed.complete_activity(
        1, 1, conv.to_payload(Customer("Ada", Address("L", "1"), [])), 6000, Effects()
    )
    a, b = conv.from_payload(first.result), conv.from_payload(replayed.result)
    assert (a["id"], a["n"]) == (b["id"], b["n"])


def test_workflow_logger_is_silent_while_replaying(caplog: pytest.LogCaptureFixture) -> None:
    registry = Registry([Signup], [register])
    caplog.set_level(logging.INFO, logger="everflow.workflow")
    run, _ = start(registry)
    run.complete_activity(
        1, 1, conv.to_payload(Customer("Ada", Address("L", "1"), [])), 6000, Effects()
    )
    live = [r for r in caplog.records if "signed up Ada" in r.getMessage()]
    assert len(live) == 1 and "workflow_id=wf" in live[0].getMessage()
    caplog.clear()
    replayed = Run("wf", "run-7", 0, registry)
    for event in run.events:
        replayed.apply(event)
    replayed.status = run.status.RUNNING
    replayed.replay()  # the full history again, logging nothing
    assert not [r for r in caplog.records if "signed up" in r.getMessage()]


def test_zlib_codec_round_trips_and_compresses_large_payloads() -> None:
    converter = DataConverter(codecs=[ZlibCodec(min_bytes=100)])
    big = {"rows": ["x" * 50] * 100}
    (encoded,) = converter.to_payloads([big])
    assert encoded.metadata["encoding"] == b"binary/zlib" and len(encoded.data) < 500
    assert converter.from_payloads([encoded]) == [big]
    (small,) = converter.to_payloads(["tiny"])
    assert small.metadata["encoding"] == b"json/plain"


def test_public_api_is_pinned() -> None:
    assert sorted(public_names) == sorted(
        [
            "ActivityCanceledError",
            "ActivityError",
            "ActivityTimeoutError",
            "ApplicationError",
            "BrokerError",
            "ChildWorkflowError",
            "Client",
            "ConfigError",
            "DeadlockError",
            "DataConverter",
            "EverflowError",
            "FailureError",
            "FilterError",
            "NonDeterminismError",
            "NondeterministicCallError",
            "NotInActivityError",
            "NotInWorkflowError",
            "NotRegisteredError",
            "IdConflictPolicy",
            "IdReusePolicy",
            "KafkaAuthenticationError",
            "KafkaAuthorizationError",
            "Payload",
            "PayloadChecksumError",
            "PayloadDecodeError",
            "PayloadKeyError",
            "PayloadNotFoundError",
            "PayloadStoreError",
            "PayloadTooLargeError",
            "PendingLimitError",
            "QueryError",
            "ReadOnlyContextError",
            "RPCTimeoutError",
            "ReplayResult",
            "Replayer",
            "RequestRejectedError",
            "RetryPolicy",
            "ScheduleAlreadyRunningError",
            "ScheduleSpecError",
            "SearchAttributeError",
            "SignalLimitError",
            "TopicMismatchError",
            "TimerDurationError",
            "UnknownActivityError",
            "UnknownHandlerError",
            "UnknownWorkflowError",
            "VisibilityUnavailableError",
            "Worker",
            "WorkflowAlreadyStartedError",
            "WorkflowBlockedError",
            "WorkflowFailureError",
            "WorkflowIdError",
            "WorkflowHandle",
            "WorkflowNotFoundError",
            "WorkflowNotRunningError",
            "WorkflowResultTimeoutError",
            "ZlibCodec",
            "activity",
            "workflow",
        ]
    )
