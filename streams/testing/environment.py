"""`WorkflowEnvironment`: where a test runs its workflows — in this process on a virtual
clock (`start_time_skipping`), or on a real Kafka cluster with an in-process worker
(`start_local`, `from_client`). Both give the test the same things: a `client`, the
`task_queue` to start runs on, `now()` and `sleep()`, so one test can run on either.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any

from processors.workflow_code.registry import Registry
from streams import activity, kafka
from streams.client import Client
from streams.kafka.config import KafkaConfig
from streams.kafka.topics import ensure_topics, topic_specs
from streams.payload import DataConverter
from streams.schedules.scheduler import ScheduleWorkflow
from streams.settings import RunLimits
from streams.testing.client import TimeSkippingClient
from streams.testing.engine import Engine
from streams.wire.records import millis
from streams.worker import Worker

DEFAULT_TASK_QUEUE = "test"


class WorkflowEnvironment(ABC):
    """A place to run workflows from a test: `client` starts and talks to runs on
    `task_queue`; `now()` is the environment's time and `sleep()` lets it pass.

    Use it as an async context manager (`async with await
    WorkflowEnvironment.start_time_skipping(...) as env:`), or call `shutdown()`.

    Activities are the functions given in `activities`; `overrides` maps an activity's
    name to a test double that runs in its place (`{"withdraw": fake_withdraw}`; a double
    decorated `@activity.defn(name="withdraw")` in `activities` does the same).
    """

    client: Client
    task_queue: str
    supports_time_skipping: bool

    @staticmethod
    async def start_time_skipping(
        *,
        workflows: Sequence[type] = (),
        activities: Sequence[Callable[..., Any]] = (),
        overrides: Mapping[str, Callable[..., Any]] | None = None,
        task_queue: str = DEFAULT_TASK_QUEUE,
        start_time: datetime | None = None,
        converter: DataConverter | None = None,
        limits: RunLimits | None = None,
    ) -> WorkflowEnvironment:
        """An environment in this process, no broker: the run core and the workflow code
        of a worker, activities run here (a plain function on a thread, an async one on
        this event loop), timers on a virtual clock starting at `start_time` (default:
        now). While the test awaits a run's result (or an update's), idle time is
        skipped: when no activity runs and every run waits on a timer, the clock jumps to
        the next one, so `workflow.sleep(timedelta(days=30))` — and a retry's backoff —
        passes at once. Otherwise the clock runs at the wall clock's pace (so a signal
        sent after a start still finds the run waiting); `sleep()` moves it on by hand.

        Runs are held to `limits` as a worker holds them (default `RunLimits()`). A run
        that blocks (a bug in its code, non-determinism) makes `result()` raise
        WorkflowBlockedError, where a worker would keep it waiting for a fix. Every
        activity runs whatever its task queue; one that is not registered fails at once
        (non-retryable, naming it) instead of waiting for a worker that will never come.
        There is no run index (`list_workflows` raises VisibilityUnavailableError).
        """
        converter = converter or DataConverter()
        # schedules run here as on a worker: the built-in schedule workflow is always hosted
        hosted = [*workflows, ScheduleWorkflow]
        registry = Registry(hosted, _with_doubles(activities, overrides), converter, limits)
        start = None if start_time is None else int(start_time.timestamp() * 1000)
        engine = Engine(registry, TimeSkippingClient.new_id(), start)
        engine.start()
        return TimeSkippingEnvironment(engine, TimeSkippingClient(engine, converter), task_queue)

    @staticmethod
    async def start_local(
        bootstrap: str | None = None,
        *,
        topic_prefix: str | None = None,
        workflows: Sequence[type] = (),
        activities: Sequence[Callable[..., Any]] = (),
        overrides: Mapping[str, Callable[..., Any]] | None = None,
        task_queue: str = DEFAULT_TASK_QUEUE,
        converter: DataConverter | None = None,
        **worker_options: Any,
    ) -> WorkflowEnvironment:
        """An environment on a real Kafka cluster (`bootstrap`, `topic_prefix`: as for
        `Client.connect`, defaults from `EVERFLOW_*`): creates the topics if missing,
        connects a client and runs a `Worker` of `task_queue` in this process (its
        keyword arguments in `worker_options`). No time skipping: `sleep()` waits."""
        config = KafkaConfig.from_env(bootstrap=bootstrap, topic_prefix=topic_prefix)
        specs = topic_specs(config, [task_queue])
        await asyncio.to_thread(ensure_topics, kafka.admin(config), specs)
        client = await asyncio.to_thread(Client, config, converter)
        try:
            env = await WorkflowEnvironment.from_client(
                client,
                workflows=workflows,
                activities=activities,
                overrides=overrides,
                task_queue=task_queue,
                **worker_options,
            )
        except BaseException:
            client.close()
            raise
        assert isinstance(env, BrokerEnvironment)
        env.owns_client = True
        return env

    @staticmethod
    async def from_client(
        client: Client,
        *,
        workflows: Sequence[type] = (),
        activities: Sequence[Callable[..., Any]] = (),
        overrides: Mapping[str, Callable[..., Any]] | None = None,
        task_queue: str = DEFAULT_TASK_QUEUE,
        **worker_options: Any,
    ) -> WorkflowEnvironment:
        """An environment on the cluster `client` is connected to, with a `Worker` of
        `task_queue` running in this process until `shutdown()` (the client stays open)."""
        options: dict[str, Any] = {
            "instance_id": f"test-{uuid.uuid4().hex[:8]}",
            "run_visibility": False,
            **worker_options,
        }
        worker = Worker(
            client,
            task_queue=task_queue,
            workflows=workflows,
            activities=_with_doubles(activities, overrides),
            **options,
        )
        running = asyncio.get_running_loop().create_task(worker.run(), name="everflow-worker")
        return BrokerEnvironment(client, task_queue, worker, running)

    @abstractmethod
    def now(self) -> datetime:
        """The environment's time (virtual when it skips time), aware UTC."""

    async def get_current_time(self) -> datetime:
        """`now()`, under the name Temporal's environment gives it."""
        return self.now()

    @contextlib.contextmanager
    def auto_time_skipping_disabled(self) -> Iterator[None]:
        """While inside, awaiting a result does not skip time (`sleep()` still does); on a
        cluster, where nothing is skipped, it changes nothing."""
        yield

    @abstractmethod
    async def sleep(self, duration: timedelta) -> None:
        """Lets `duration` pass: at once on a virtual clock (firing every timer due on the
        way, each at its own time), in real time on a cluster."""

    @abstractmethod
    async def shutdown(self) -> None:
        """Stops what the environment runs."""

    async def __aenter__(self) -> WorkflowEnvironment:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.shutdown()


class TimeSkippingEnvironment(WorkflowEnvironment):
    """The in-process environment (see `WorkflowEnvironment.start_time_skipping`)."""

    supports_time_skipping = True

    def __init__(self, engine: Engine, client: TimeSkippingClient, task_queue: str) -> None:
        self.engine = engine
        self.client = client
        self.task_queue = task_queue

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.engine.now_ms() / 1000, UTC)

    async def sleep(self, duration: timedelta) -> None:
        await self.engine.sleep_until(self.engine.now_ms() + millis(duration))

    @contextlib.contextmanager
    def auto_time_skipping_disabled(self) -> Iterator[None]:
        with self.engine.skipping_disabled():
            yield

    async def shutdown(self) -> None:
        """Stops the engine and the running activities; raises an error of the engine
        itself (never one of the code under test) if one stopped it."""
        await self.engine.close()


class BrokerEnvironment(WorkflowEnvironment):
    """A worker on a real cluster (see `WorkflowEnvironment.start_local`)."""

    supports_time_skipping = False

    def __init__(
        self, client: Client, task_queue: str, worker: Worker, running: asyncio.Task[None]
    ) -> None:
        self.client = client
        self.task_queue = task_queue
        self.worker = worker
        self._running = running
        self.owns_client = False

    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep(self, duration: timedelta) -> None:
        await asyncio.sleep(duration.total_seconds())

    async def shutdown(self) -> None:
        """Stops the worker (raising what stopped it, if it failed), and closes the client
        if the environment connected it."""
        self.worker.shutdown()
        try:
            await self._running
        finally:
            if self.owns_client:
                await asyncio.to_thread(self.client.close)


def _with_doubles(
    activities: Sequence[Callable[..., Any]], overrides: Mapping[str, Callable[..., Any]] | None
) -> list[Callable[..., Any]]:
    """The activities, then each override registered under its name (a later one of a
    name replaces an earlier one)."""
    return [*activities, *(_named(name, fn) for name, fn in (overrides or {}).items())]


def _named(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    """`fn` as an activity called `name`, leaving `fn` itself (maybe an activity of
    another name) as it is."""
    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def double_async(*args: Any) -> Any:
            return await fn(*args)

        return activity.defn(double_async, name=name)

    @functools.wraps(fn)
    def double(*args: Any) -> Any:
        return fn(*args)

    return activity.defn(double, name=name)
