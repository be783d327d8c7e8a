"""The client of the time-skipping environment: `streams.Client` itself, with its requests
handed to the in-process engine instead of the `commands` topic.

Every method a test calls — start, execute, handles, signal, query, update, cancel,
terminate, describe, history, result — is the real client's: only the plumbing under them
(`request`, `watch_completion`) differs. A handle's `result()` lets the engine skip idle
time while it waits, as Temporal's time-skipping environment does.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from streams.client import Client, WorkflowHandle, check_workflow_id
from streams.errors import VisibilityUnavailableError, WorkflowBlockedError
from streams.failures import from_failure
from streams.kafka.config import KafkaConfig
from streams.kafka.topics import Topics
from streams.payload import DataConverter
from streams.testing.engine import Engine
from streams.visibility.records import IndexLag
from streams.visibility.store import Store
from streams.wire import wire
from streams.wire.commands import CommandBody
from streams.wire.records import Completion, ReplyBody

NO_INDEX = (
    "the time-skipping environment keeps no run index: list and count runs against a "
    "worker on Kafka (WorkflowEnvironment.start_local)"
)


class TimeSkippingClient(Client):
    """A `Client` whose requests go to an in-process `Engine` (no broker)."""

    def __init__(self, engine: Engine, converter: DataConverter) -> None:
        # deliberately not Client.__init__: that one connects to Kafka; this sets what the
        # inherited methods read
        self.engine = engine
        self.converter = converter
        # no cluster: the configuration only carries the payload limit the client checks,
        # the one the engine's runs are held to
        self.config = KafkaConfig(
            bootstrap="in-process",
            topic_prefix="time-skipping.",
            max_payload_bytes=engine.registry.max_payload_bytes,
        )
        self.topics = Topics(self.config.topic_prefix)
        self.visibility_url = ""
        self.client_id = engine.client_id
        self.wire = wire()
        self._tracing = None

    @staticmethod
    def new_id() -> str:
        """A client ID for an engine to answer."""
        return f"client-{uuid.uuid4().hex[:12]}"

    async def request(self, workflow_id: str, body: CommandBody, timeout: timedelta) -> ReplyBody:
        check_workflow_id(workflow_id)
        return await self.engine.request(workflow_id, body, timeout)

    def watch_completion(self, workflow_id: str) -> asyncio.Future[Completion]:
        return self.engine.watch(workflow_id)

    def unwatch_completion(self, workflow_id: str, fut: asyncio.Future[Completion]) -> None:
        self.engine.unwatch(workflow_id, fut)

    def now(self) -> datetime:
        """The engine's virtual time (a schedule created here counts from it)."""
        return datetime.fromtimestamp(self.engine.now_ms() / 1000, UTC)

    def close(self) -> None:
        """Nothing to close: the environment owns the engine."""

    def _index(self) -> Store:
        raise VisibilityUnavailableError(NO_INDEX)

    async def visibility_lag(self) -> IndexLag:
        raise VisibilityUnavailableError(NO_INDEX)


class TimeSkippingHandle(WorkflowHandle):
    """A `WorkflowHandle` whose `result()` skips idle time while it waits, and raises
    WorkflowBlockedError if the run is blocked (a bug in its code) instead of waiting for
    a fix."""

    async def result(self, *args: Any, **kwargs: Any) -> Any:
        assert isinstance(self.client, TimeSkippingClient)
        engine = self.client.engine
        async with engine.skipping():
            closed = asyncio.ensure_future(super().result(*args, **kwargs))
            blocked = engine.watch_blocked(self.id)
            try:
                await asyncio.wait([closed, blocked], return_when=asyncio.FIRST_COMPLETED)
            finally:
                blocked.cancel()
                if not closed.done():
                    closed.cancel()
            if closed.done() and not closed.cancelled():
                return closed.result()
            run_id, why = blocked.result()
            cause = from_failure(why.failure, self.client.converter)
            raise WorkflowBlockedError(self.id, run_id, why.reason, cause)

    async def execute_update(self, *args: Any, **kwargs: Any) -> Any:
        # an update handler may sleep or retry too: its result is awaited like the run's
        assert isinstance(self.client, TimeSkippingClient)
        async with self.client.engine.skipping():
            return await super().execute_update(*args, **kwargs)


# its handles wait the time-skipping way (defined above the handle, which names it)
TimeSkippingClient.handle_type = TimeSkippingHandle
