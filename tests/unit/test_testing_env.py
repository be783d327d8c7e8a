"""The time-skipping test environment (`streams.testing`): runs driven through the real client
API over the run core in this process, activities run here or replaced by doubles, and a
virtual clock that skips idle time while a result is awaited."""

from __future__ import annotations

import asyncio
import logging
import sys
import time
import types
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest

from streams import (
    ActivityError,
    ApplicationError,
    ChildWorkflowError,
    PayloadTooLargeError,
    RetryPolicy,
    VisibilityUnavailableError,
    WorkflowBlockedError,
    WorkflowFailureError,
    WorkflowNotRunningError,
    WorkflowResultTimeoutError,
    activity,
    workflow,
)
from streams.schedules import (
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleIntervalSpec,
    ScheduleSpec,
)
from streams.settings import RunLimits
from streams.testing import WorkflowEnvironment
from streams.wire.commands import CommandBody
from streams.wire.events import ActivityAttemptFailed, ActivityRetried, TimerFired
from streams.wire.records import RunStatus

log = logging.getLogger(__name__)
FIVE_SECONDS = timedelta(seconds=5)


@activity.defn
def send_reminder(to: str) -> str:
    raise AssertionError("the real activity never runs in these tests: a double replaces it")


@activity.defn(name="send_reminder")
def fake_send_reminder(to: str) -> str:
    return f"reminded {to}"


@workflow.defn
class Reminder:
    @workflow.run
    async def run(self, to: str) -> str:
        started = workflow.now()
        await workflow.sleep(timedelta(days=30))
        sent = await workflow.execute_activity(
            send_reminder, to, start_to_close_timeout=FIVE_SECONDS
        )
        return f"{sent} after {(workflow.now() - started).days} days at {workflow.now()}"


@workflow.defn
class Approval:
    def __init__(self) -> None:
        self.approvals: list[str] = []
        self.limit = 1
        self.cleaned_up = False

    @workflow.run
    async def run(self) -> list[str]:
        try:
            await workflow.wait_condition(lambda: len(self.approvals) >= self.limit)
        except asyncio.CancelledError:
            self.cleaned_up = True  # cleans up, then ends as canceled
            raise
        return self.approvals

    @workflow.signal
    def approve(self, who: str) -> None:
        self.approvals.append(who)

    @workflow.query
    def pending(self) -> int:
        return self.limit - len(self.approvals)

    @workflow.query
    def cleaned(self) -> bool:
        return self.cleaned_up

    @workflow.update
    def raise_limit(self, limit: int) -> int:
        self.limit = limit
        return self.limit - len(self.approvals)

    @raise_limit.validator
    def check_limit(self, limit: int) -> None:
        if limit < 1:
            raise ApplicationError("the limit must be at least 1")


ATTEMPTS: list[tuple[int, datetime]] = []


@activity.defn
def flaky_charge(amount: int) -> str:
    info = activity.info()
    ATTEMPTS.append((info.attempt, datetime.now(UTC)))
    if info.attempt < 3:
        raise ConnectionError("the bank is down")
    return f"charged {amount}"


@workflow.defn
class Charge:
    @workflow.run
    async def run(self, amount: int) -> str:
        return await workflow.execute_activity(  # type: ignore[no-any-return]
            flaky_charge,
            amount,
            start_to_close_timeout=FIVE_SECONDS,
            retry_policy=RetryPolicy(initial_interval=timedelta(hours=1), maximum_attempts=5),
        )


def run(body: Callable[[], Awaitable[Any]]) -> Any:
    return asyncio.run(body())  # type: ignore[arg-type]


def test_a_30_day_sleep_completes_at_once_and_the_clock_moved_30_days() -> None:
    async def body() -> tuple[str, timedelta, datetime]:
        async with await WorkflowEnvironment.start_time_skipping(
            workflows=[Reminder], activities=[fake_send_reminder]
        ) as env:
            before, wall = env.now(), time.monotonic()
            result = await env.client.execute_workflow(
                Reminder.run, "ada", id="reminder-1", task_queue=env.task_queue
            )
            # reported, not asserted: the claim is the virtual clock's (`moved` below)
            log.info("a 30-day sleep took %.3f s of wall time", time.monotonic() - wall)
            return result, env.now() - before, env.now()

    result, moved, end = run(body)
    assert moved >= timedelta(days=30)
    assert result.startswith("reminded ada after 30 days at ")
    # workflow.now() read the virtual clock: the run ended when the environment's clock says
    finished = datetime.fromisoformat(result.rsplit(" at ", 1)[1])
    assert timedelta(0) <= end - finished < timedelta(minutes=1)


def test_the_start_time_sets_the_virtual_clock_that_workflow_now_reads() -> None:
    start = datetime(2030, 1, 1, tzinfo=UTC)

    async def body() -> str:
        async with await WorkflowEnvironment.start_time_skipping(
            workflows=[Reminder], activities=[fake_send_reminder], start_time=start
        ) as env:
            return await env.client.execute_workflow(  # type: ignore[no-any-return]
                Reminder.run, "ada", id="reminder-1", task_queue=env.task_queue
            )

    finished = datetime.fromisoformat(run(body).rsplit(" at ", 1)[1])
    assert start + timedelta(days=30) <= finished < start + timedelta(days=30, minutes=1)


def test_an_override_by_name_replaces_an_activity_with_a_double() -> None:
    calls: list[str] = []

    def double(to: str) -> str:  # a plain function: the mapping names it
        calls.append(to)
        return f"doubled {to}"

    async def body() -> str:
        async with await WorkflowEnvironment.start_time_skipping(
            workflows=[Reminder], activities=[send_reminder], overrides={"send_reminder": double}
        ) as env:
            return await env.client.execute_workflow(  # type: ignore[no-any-return]
                Reminder.run, "bob", id="reminder-2", task_queue=env.task_queue
            )

    assert run(body).startswith("doubled bob after 30 days")
    assert calls == ["bob"]
    assert not hasattr(double, "__everflow_activity__")  # the double itself is left alone


def test_signal_query_and_update_reach_the_run() -> None:
    async def body() -> tuple[int, int, int, list[str], str]:
        async with await WorkflowEnvironment.start_time_skipping(workflows=[Approval]) as env:
            handle = await env.client.start_workflow(
                Approval.run, id="approval-1", task_queue=env.task_queue
            )
            before = await handle.query(Approval.pending)
            left = await handle.execute_update(Approval.raise_limit, 2)
            with pytest.raises(ApplicationError, match="at least 1"):
                await handle.execute_update(Approval.raise_limit, 0)
            await handle.signal(Approval.approve, "ada")
            after = await handle.query(Approval.pending)
            await handle.signal(Approval.approve, "bob")
            result = await handle.result()
            status = (await handle.describe()).status.value
            return before, left, after, result, status

    assert run(body) == (1, 2, 1, ["ada", "bob"], RunStatus.COMPLETED.value)


def test_cancel_raises_cancelled_error_in_the_code_which_may_clean_up() -> None:
    async def body() -> tuple[str, bool]:
        async with await WorkflowEnvironment.start_time_skipping(workflows=[Approval]) as env:
            handle = await env.client.start_workflow(
                Approval.run, id="approval-2", task_queue=env.task_queue
            )
            await handle.execute_update(Approval.raise_limit, 3)
            await handle.signal(Approval.approve, "ada")  # one of three
            await handle.cancel()
            with pytest.raises(WorkflowFailureError) as failed:
                await handle.result()
            with pytest.raises(WorkflowNotRunningError):
                await handle.signal(Approval.approve, "late")
            return failed.value.status, await handle.query(Approval.cleaned)

    status, cleaned = run(body)
    assert status == RunStatus.CANCELED.value and cleaned


def test_retries_wait_out_their_backoff_on_the_virtual_clock() -> None:
    ATTEMPTS.clear()

    async def body() -> tuple[str, timedelta, list[Any]]:
        async with await WorkflowEnvironment.start_time_skipping(
            workflows=[Charge], activities=[flaky_charge]
        ) as env:
            before = env.now()
            result = await env.client.execute_workflow(
                Charge.run, 42, id="charge-1", task_queue=env.task_queue
            )
            handle = env.client.get_workflow_handle("charge-1")
            history = await handle.fetch_history()
            return result, env.now() - before, history

    result, moved, history = run(body)
    assert result == "charged 42"
    assert [attempt for attempt, _ in ATTEMPTS] == [1, 2, 3]
    failed = [e.time for e in history if isinstance(e.attributes, ActivityAttemptFailed)]
    retried = [e.time for e in history if isinstance(e.attributes, ActivityRetried)]
    # backoffs of 1 h and 2 h, skipped: the history's times are virtual
    backoffs = [timedelta(milliseconds=r - f) for f, r in zip(failed, retried, strict=True)]
    assert len(backoffs) == 2
    assert timedelta(hours=1) <= backoffs[0] < timedelta(hours=1, minutes=1)
    assert timedelta(hours=2) <= backoffs[1] < timedelta(hours=2, minutes=1)
    # activities read the real clock: the three attempts ran moments apart
    assert ATTEMPTS[2][1] - ATTEMPTS[0][1] < timedelta(minutes=1)
    assert moved >= timedelta(hours=3)


@workflow.defn
class Nap:
    def __init__(self) -> None:
        self.woke = 0

    @workflow.run
    async def run(self) -> int:
        for _ in range(3):
            await workflow.sleep(timedelta(hours=1))
            self.woke += 1
        return self.woke

    @workflow.query
    def woken(self) -> int:
        return self.woke


def test_time_moves_only_while_a_result_is_awaited_or_by_env_sleep() -> None:
    async def body() -> list[Any]:
        async with await WorkflowEnvironment.start_time_skipping(workflows=[Nap]) as env:
            start = env.now()
            handle = await env.client.start_workflow(Nap.run, id="nap", task_queue=env.task_queue)
            seen = [await handle.query(Nap.woken)]
            await asyncio.sleep(0.05)  # real time passes; no one awaits: nothing is skipped
            seen.append(await handle.query(Nap.woken))
            await env.sleep(timedelta(minutes=150))  # two of the hour-long sleeps end
            seen.append(await handle.query(Nap.woken))
            seen.append((env.now() - start) // timedelta(minutes=1))
            seen.append(await handle.result())
            return seen

    woken_at_start, woken_later, woken_after_sleep, minutes, result = run(body)
    assert (woken_at_start, woken_later, woken_after_sleep) == (0, 0, 2)
    assert minutes == 150
    assert result == 3


@activity.defn
async def wait_for_gate(name: str) -> str:
    await GATE["event"].wait()  # an asyncio object of the test's own loop
    return f"{name} through"


GATE: dict[str, asyncio.Event] = {}


@workflow.defn
class Gated:
    @workflow.run
    async def run(self) -> str:
        return await workflow.execute_activity(  # type: ignore[no-any-return]
            wait_for_gate, "ada", start_to_close_timeout=timedelta(minutes=1)
        )


def test_an_async_activity_runs_on_the_test_loop_and_time_waits_for_it() -> None:
    async def body() -> tuple[str, timedelta]:
        GATE["event"] = asyncio.Event()
        async with await WorkflowEnvironment.start_time_skipping(
            workflows=[Gated], activities=[wait_for_gate]
        ) as env:
            before = env.now()
            waiting = asyncio.ensure_future(
                env.client.execute_workflow(Gated.run, id="gated", task_queue=env.task_queue)
            )
            await asyncio.sleep(0.05)
            assert not waiting.done()
            GATE["event"].set()
            result = await waiting
            # the activity's start-to-close timeout (1 min) was not skipped to while it ran
            return result, env.now() - before

    result, moved = run(body)
    assert result == "ada through" and moved < timedelta(minutes=1)


@workflow.defn
class CallsMissing:
    @workflow.run
    async def run(self) -> str:
        try:
            await workflow.execute_activity("missing", start_to_close_timeout=FIVE_SECONDS)
        except ActivityError as e:
            return str(e.cause)
        return "ran"


def test_an_activity_not_in_the_environment_fails_at_once_naming_it() -> None:
    async def body() -> str:
        async with await WorkflowEnvironment.start_time_skipping(workflows=[CallsMissing]) as env:
            return await env.client.execute_workflow(  # type: ignore[no-any-return]
                CallsMissing.run, id="missing", task_queue=env.task_queue
            )

    message = run(body)
    assert "'missing' is not in the test environment" in message
    assert "activities=" in message


def test_the_environment_has_no_run_index() -> None:
    async def body() -> None:
        async with await WorkflowEnvironment.start_time_skipping() as env:
            with pytest.raises(VisibilityUnavailableError, match="keeps no run index"):
                await env.client.count_workflows()

    run(body)


def test_timer_events_carry_virtual_times() -> None:
    async def body() -> list[Any]:
        async with await WorkflowEnvironment.start_time_skipping(workflows=[Nap]) as env:
            handle = await env.client.start_workflow(Nap.run, id="nap", task_queue=env.task_queue)
            await handle.result()
            return await handle.fetch_history()

    history = run(body)
    fired = [e.time for e in history if isinstance(e.attributes, TimerFired)]
    start = history[0].time
    hour = 3600 * 1000
    assert [round((t - start) / hour, 2) for t in fired] == [1.0, 2.0, 3.0]


def test_the_readme_example_runs() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("## Testing workflows", 1)[1]
    block = section.split("```python", 1)[1].split("```", 1)[0]
    # a module of its own: the client finds a run method's class through its module
    module = types.ModuleType("readme_testing_workflows")
    sys.modules[module.__name__] = module
    try:
        exec(compile(block, "README.md (Testing workflows)", "exec"), module.__dict__)
        asyncio.run(module.test_reminder_is_sent_after_30_days())
    finally:
        del sys.modules[module.__name__]


@workflow.defn
class Countdown:
    @workflow.run
    async def run(self, n: int, seen: list[int]) -> list[int]:
        await workflow.sleep(timedelta(days=1))
        if n > 1:
            workflow.continue_as_new(n - 1, [*seen, n])
        return [*seen, n]


@workflow.defn
class Parent:
    @workflow.run
    async def run(self) -> list[int]:
        return await workflow.execute_child_workflow(  # type: ignore[no-any-return]
            Countdown.run, 3, [], id="countdown-child"
        )


@workflow.defn
class Refuses:
    @workflow.run
    async def run(self) -> None:
        raise ApplicationError("no", non_retryable=True)


@workflow.defn
class Naps:
    @workflow.run
    async def run(self) -> None:
        await workflow.sleep(timedelta(days=1))


@workflow.defn
class Watches:
    """Starts children that fail, cannot start and are terminated; says how each ended."""

    @workflow.run
    async def run(self) -> list[str]:
        seen: list[str] = []
        napping = await workflow.start_child_workflow(Naps.run, id="napper")
        for start in (
            lambda: workflow.execute_child_workflow(Refuses.run, id="refuser"),
            lambda: workflow.execute_child_workflow(Naps.run, id="napper"),  # running: refused
        ):
            try:
                await start()
            except ChildWorkflowError as e:
                seen.append(e.status)
        try:
            await napping
        except ChildWorkflowError as e:
            seen.append(e.status)
        return seen


def test_a_child_workflow_error_says_how_the_child_ended() -> None:
    async def body() -> list[str]:
        async with await WorkflowEnvironment.start_time_skipping(
            workflows=[Watches, Refuses, Naps]
        ) as env:
            watcher = await env.client.start_workflow(
                Watches.run, id="watcher", task_queue=env.task_queue
            )
            await env.sleep(timedelta(hours=1))  # the napper is started and sleeps
            await env.client.get_workflow_handle("napper").terminate("enough")
            return await watcher.result()  # type: ignore[no-any-return]

    assert run(body) == ["failed", "start_failed", "terminated"]


@workflow.defn
class BuggyParent:
    @workflow.run
    async def run(self) -> None:
        await workflow.start_child_workflow(Naps.run, id="sleeping-child")
        raise KeyError("bug in the parent")


@pytest.mark.timeout(30)  # what failed was a test hanging: it fails here, not after 300 s
def test_a_blocked_parent_raises_and_the_environment_closes_with_its_child_asleep() -> None:
    # the engine's loop waits a day for the child's timer when the test ends: closing the
    # environment must stop it even so (on Python 3.11 `asyncio.wait_for` lost that cancel)
    async def body() -> None:
        async with await WorkflowEnvironment.start_time_skipping(
            workflows=[BuggyParent, Naps]
        ) as env:
            await env.client.execute_workflow(
                BuggyParent.run, id="buggy-parent", task_queue=env.task_queue
            )

    with pytest.raises(WorkflowBlockedError, match="KeyError: 'bug in the parent'"):
        run(body)


def test_children_and_continue_as_new_run_in_the_environment() -> None:
    async def body() -> tuple[list[int], timedelta, str]:
        async with await WorkflowEnvironment.start_time_skipping(
            workflows=[Parent, Countdown]
        ) as env:
            before = env.now()
            result = await env.client.execute_workflow(
                Parent.run, id="parent", task_queue=env.task_queue
            )
            child = await env.client.get_workflow_handle("countdown-child").describe()
            return result, env.now() - before, child.status.value

    result, moved, child_status = run(body)
    assert result == [3, 2, 1]  # three runs of the child, chained by continue-as-new
    assert child_status == RunStatus.COMPLETED.value
    assert moved >= timedelta(days=3)


LOCAL_ATTEMPTS: list[int] = []


@activity.defn
def flaky_lookup(key: str) -> str:
    LOCAL_ATTEMPTS.append(activity.info().attempt)
    if len(LOCAL_ATTEMPTS) < 3:
        raise ConnectionError("the cache is cold")
    return key.upper()


@workflow.defn
class Lookup:
    @workflow.run
    async def run(self, key: str) -> str:
        return await workflow.execute_local_activity(  # type: ignore[no-any-return]
            flaky_lookup,
            key,
            start_to_close_timeout=FIVE_SECONDS,
            # the first backoff waits in the worker, the second on a durable timer
            retry_policy=RetryPolicy(initial_interval=timedelta(seconds=30)),
            local_retry_threshold=timedelta(seconds=45),
        )


def test_local_activity_backoffs_pass_on_the_virtual_clock() -> None:
    LOCAL_ATTEMPTS.clear()

    async def body() -> tuple[str, timedelta]:
        async with await WorkflowEnvironment.start_time_skipping(
            workflows=[Lookup], activities=[flaky_lookup]
        ) as env:
            before = env.now()
            result = await env.client.execute_workflow(
                Lookup.run, "k", id="lookup", task_queue=env.task_queue
            )
            return result, env.now() - before

    result, moved = run(body)
    assert result == "K" and LOCAL_ATTEMPTS == [1, 2, 3]
    assert moved >= timedelta(seconds=90)  # 30 s, then 60 s of backoff


STOPPED: list[str] = []


@activity.defn
async def watch_forever(name: str) -> str:
    try:
        while True:
            activity.heartbeat(name)
            await asyncio.sleep(0.01)
    except asyncio.CancelledError:
        STOPPED.append(name)
        raise


@workflow.defn
class Watcher:
    @workflow.run
    async def run(self) -> str:
        return await workflow.execute_activity(  # type: ignore[no-any-return]
            watch_forever,
            "door",
            start_to_close_timeout=timedelta(hours=1),
            heartbeat_timeout=timedelta(milliseconds=100),
            cancellation_type="wait_cancellation_completed",  # closes once it stopped
        )


def test_cancel_reaches_a_running_activity_through_its_heartbeats() -> None:
    STOPPED.clear()

    async def body() -> tuple[str, list[str]]:
        async with await WorkflowEnvironment.start_time_skipping(
            workflows=[Watcher], activities=[watch_forever]
        ) as env:
            handle = await env.client.start_workflow(
                Watcher.run, id="watcher", task_queue=env.task_queue
            )
            await asyncio.sleep(0.1)  # the activity runs and heartbeats
            await handle.cancel()
            with pytest.raises(WorkflowFailureError) as failed:
                await handle.result(timeout=timedelta(seconds=30))
            history = await handle.fetch_history()
            return failed.value.status, [type(e.attributes).__name__ for e in history]

    status, history = run(body)
    assert status == RunStatus.CANCELED.value
    assert STOPPED == ["door"]
    assert "ActivityHeartbeatRecorded" in history
    assert history[-2:] == ["ActivityCanceled", "WorkflowCanceled"]


@workflow.defn
class Slow:
    def __init__(self) -> None:
        self.done = False

    @workflow.run
    async def run(self) -> str:
        await workflow.wait_condition(lambda: self.done)
        return "done"

    @workflow.update
    async def finish_tomorrow(self) -> str:
        await workflow.sleep(timedelta(days=1))
        self.done = True
        return workflow.now().isoformat()


def test_an_update_whose_handler_sleeps_returns_once_the_clock_skipped_ahead() -> None:
    async def body() -> tuple[datetime, datetime, str]:
        async with await WorkflowEnvironment.start_time_skipping(workflows=[Slow]) as env:
            before = env.now()
            handle = await env.client.start_workflow(Slow.run, id="slow", task_queue=env.task_queue)
            finished = await handle.execute_update(Slow.finish_tomorrow)
            return before, datetime.fromisoformat(finished), await handle.result()

    before, finished, result = run(body)
    assert finished - before >= timedelta(days=1) and result == "done"


@workflow.defn
class Buggy:
    @workflow.run
    async def run(self, wait: bool) -> str:
        if wait:
            await workflow.sleep(timedelta(days=2))
        raise KeyError("bug in workflow code")


def test_a_blocked_run_raises_from_result_instead_of_waiting_for_a_fix() -> None:
    async def body() -> list[WorkflowBlockedError]:
        errors = []
        async with await WorkflowEnvironment.start_time_skipping(workflows=[Buggy]) as env:
            # blocked while the test awaits the result (after a skipped sleep) ...
            handle = await env.client.start_workflow(
                Buggy.run, True, id="buggy-1", task_queue=env.task_queue
            )
            with pytest.raises(WorkflowBlockedError) as blocked:
                await handle.result()
            errors.append(blocked.value)
            # ... and blocked before anyone awaits it
            await env.client.start_workflow(
                Buggy.run, False, id="buggy-2", task_queue=env.task_queue
            )
            with pytest.raises(WorkflowBlockedError) as blocked:
                await env.client.get_workflow_handle("buggy-2").result()
            errors.append(blocked.value)
            described = await handle.describe()
            assert described.status is RunStatus.RUNNING and described.blocked is not None
        return errors

    for error in run(body):
        assert error.reason == "workflow_error"
        assert "KeyError: 'bug in workflow code'" in str(error)
        assert isinstance(error.cause, ApplicationError) and error.cause.type == "KeyError"


@workflow.defn
class Forever:
    @workflow.run
    async def run(self) -> None:
        while True:
            await workflow.sleep(timedelta(hours=1))


def test_a_run_that_never_ends_leaves_the_test_free_to_give_up_on_it() -> None:
    async def body() -> timedelta:
        async with await WorkflowEnvironment.start_time_skipping(workflows=[Forever]) as env:
            before = env.now()
            handle = await env.client.start_workflow(
                Forever.run, id="forever", task_queue=env.task_queue
            )
            with pytest.raises(WorkflowResultTimeoutError):
                await handle.result(timeout=timedelta(milliseconds=200))
            return env.now() - before

    assert run(body) >= timedelta(hours=2)  # the clock raced ahead meanwhile


def test_an_error_of_the_engine_reaches_the_waiting_test_and_shutdown() -> None:
    async def body() -> None:
        env = await WorkflowEnvironment.start_time_skipping(workflows=[Nap])
        handle = await env.client.start_workflow(Nap.run, id="nap", task_queue=env.task_queue)
        waiting = asyncio.ensure_future(handle.result())
        # a command body the run core has no handler for: its dispatch fails loudly
        bogus = cast("CommandBody", object())
        with pytest.raises(AssertionError):
            await env.client.request("nap", bogus, timedelta(seconds=10))
        with pytest.raises(AssertionError):
            await waiting  # not left waiting for a run the engine no longer moves
        with pytest.raises(AssertionError):
            await env.shutdown()

    run(body)


def test_the_client_holds_arguments_to_the_environment_s_payload_limit() -> None:
    async def body() -> None:
        limits = RunLimits(max_payload_bytes=2048)
        async with await WorkflowEnvironment.start_time_skipping(
            workflows=[Reminder], activities=[fake_send_reminder], limits=limits
        ) as env:
            with pytest.raises(PayloadTooLargeError):
                await env.client.start_workflow(
                    Reminder.run, "x" * 4096, id="big", task_queue=env.task_queue
                )

    run(body)


@workflow.defn
class Gatekeeper:
    def __init__(self) -> None:
        self.approved = False
        self.done = False

    @workflow.run
    async def run(self) -> str:
        await workflow.wait_condition(lambda: self.approved, timeout=timedelta(days=1))
        await workflow.execute_activity(
            fake_send_reminder, "ops", start_to_close_timeout=timedelta(days=2)
        )
        await workflow.wait_condition(lambda: self.done)  # no timer: waits for a signal
        return "done"

    @workflow.signal
    def approve(self) -> None:
        self.approved = True

    @workflow.signal
    def finish(self) -> None:
        self.done = True


def test_timers_that_no_longer_matter_do_not_pull_the_clock_ahead() -> None:
    async def body() -> tuple[timedelta, str]:
        async with await WorkflowEnvironment.start_time_skipping(
            workflows=[Gatekeeper], activities=[fake_send_reminder]
        ) as env:
            before = env.now()
            handle = await env.client.start_workflow(
                Gatekeeper.run, id="gate", task_queue=env.task_queue
            )
            await handle.signal(Gatekeeper.approve)  # cancels the 1-day timeout's timer
            # the activity ran and closed: its 2-day deadline is stale too; the run waits
            # on no timer at all, so nothing is skipped while the result is awaited
            with pytest.raises(WorkflowResultTimeoutError):
                await handle.result(timeout=timedelta(milliseconds=200))
            moved = env.now() - before
            await handle.signal(Gatekeeper.finish)
            return moved, await handle.result()

    moved, result = run(body)
    assert moved < timedelta(minutes=1) and result == "done"


def test_an_execution_timeout_ends_a_waiting_run_on_the_virtual_clock() -> None:
    async def body() -> tuple[str, timedelta]:
        async with await WorkflowEnvironment.start_time_skipping(workflows=[Approval]) as env:
            before = env.now()
            handle = await env.client.start_workflow(
                Approval.run,
                id="approval-3",
                task_queue=env.task_queue,
                execution_timeout=timedelta(days=7),
            )
            with pytest.raises(WorkflowFailureError) as failed:
                await handle.result()
            return failed.value.status, env.now() - before

    status, moved = run(body)
    assert status == RunStatus.TIMED_OUT.value and moved >= timedelta(days=7)


def test_auto_time_skipping_can_be_turned_off_and_the_time_read_temporal_s_way() -> None:
    async def body() -> tuple[timedelta, int, int, timedelta]:
        async with await WorkflowEnvironment.start_time_skipping(workflows=[Nap]) as env:
            before = await env.get_current_time()
            handle = await env.client.start_workflow(Nap.run, id="nap", task_queue=env.task_queue)
            with env.auto_time_skipping_disabled():
                with pytest.raises(WorkflowResultTimeoutError):
                    await handle.result(timeout=timedelta(milliseconds=100))
                not_skipped = await env.get_current_time() - before
                await env.sleep(timedelta(hours=1))  # by hand it still moves
            woken = await handle.query(Nap.woken)
            result = await handle.result()
            return not_skipped, woken, result, await env.get_current_time() - before

    not_skipped, woken, result, moved = run(body)
    assert not_skipped < timedelta(minutes=1)
    assert (woken, result) == (1, 3)
    assert moved >= timedelta(hours=3)


@dataclass(frozen=True)
class Receipt:
    to: str
    days: int


@workflow.defn
class Typed:
    @workflow.run
    async def run(self, to: str) -> Receipt:
        await workflow.sleep(timedelta(days=2))
        return Receipt(to, 2)


def test_results_take_the_run_methods_annotation_and_result_type_as_on_a_broker() -> None:
    async def body() -> tuple[Any, Any, Any]:
        async with await WorkflowEnvironment.start_time_skipping(workflows=[Typed]) as env:
            started = await env.client.execute_workflow(
                Typed.run, args=["ada"], id="typed-1", task_queue=env.task_queue
            )
            handle = env.client.get_workflow_handle("typed-1", result_type=Receipt)
            plain = env.client.get_workflow_handle("typed-1")
            return started, await handle.result(), await plain.result()

    started, typed, plain = run(body)
    assert started == Receipt("ada", 2) and typed == Receipt("ada", 2)
    assert plain == {"to": "ada", "days": 2}  # asked by ID alone: plain JSON, as on a broker


@workflow.defn
class Ping:
    @workflow.run
    async def run(self) -> str:
        return "pong"


@pytest.mark.parametrize("clock", ["12:00", "23:30"])  # 23:30 failed when the test slept 30 d 1 h
def test_a_daily_schedule_fires_once_a_day_across_thirty_virtual_days(clock: str) -> None:
    hour, minute = map(int, clock.split(":"))
    start = datetime(2026, 3, 1, hour, minute, tzinfo=UTC)

    async def body() -> tuple[Any, list[Any]]:
        async with await WorkflowEnvironment.start_time_skipping(
            workflows=[Ping], start_time=start
        ) as env:
            handle = await env.client.create_schedule(
                "daily",
                Schedule(
                    action=ScheduleActionStartWorkflow(Ping.run, id="ping", task_queue="test"),
                    spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=timedelta(days=1))]),
                ),
            )
            # Interval specs fire on multiples of a day since the epoch (midnight UTC), not
            # a day after creation: any window of exactly thirty days holds thirty of them,
            # whatever the wall-clock time the test starts at.
            await env.sleep(timedelta(days=30))
            described = await handle.describe()
            results = [
                await env.client.get_workflow_handle(a.workflow_id).result()
                for a in described.recent_actions
            ]
            return described, results

    described, results = run(body)
    assert described.action_count == 30  # one a day, each due time once
    assert results and set(results) == {"pong"}
    ids = [a.workflow_id for a in described.recent_actions]
    assert len(ids) == len(set(ids))
