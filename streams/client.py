"""The client: start workflows, wait for results, describe runs, read their history.

Requests are commands on the `commands` topic; answers come back on `replies` (keyed by this
client's ID) and closed runs on `completions`. One background thread reads both and resolves
the waiting coroutines.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, KafkaError, TopicPartition

from streams import kafka
from streams.encryption import configured_converter
from streams.errors import (
    BrokerError,
    ConfigError,
    RequestRejectedError,
    RPCTimeoutError,
    SignalLimitError,
    WorkflowAlreadyStartedError,
    WorkflowIdError,
)
from streams.kafka.config import KafkaConfig
from streams.kafka.topics import Topics, client_topics, partition_count
from streams.options import IdConflictPolicy, IdReusePolicy, option
from streams.payload import DataConverter, check_size
from streams.schedules.handle import (
    ScheduleHandle,
    ScheduleIterator,
    create_schedule,
    list_schedules,
)
from streams.schedules.model import Schedule
from streams.search_attributes import encode as encode_search_attributes
from streams.settings import create_topics_from_env, tracing_from_env, visibility_url
from streams.tracing import Headers, Tracing
from streams.visibility.query import compile_filter
from streams.visibility.records import IndexLag, WorkflowCount, WorkflowExecution
from streams.visibility.store import Store, open_store
from streams.wire import wire
from streams.wire.commands import (
    Command,
    CommandBody,
    StartWorkflow,
)
from streams.wire.records import (
    Completion,
    Rejected,
    RejectionCode,
    Reply,
    ReplyBody,
    RunStatus,
    StartAccepted,
    StartRejected,
    millis,
)
from streams.workflow import WorkflowDefinition, arguments
from streams.workflow_handle import WorkflowHandle, handler_name

log = logging.getLogger(__name__)


MAX_WORKFLOW_ID_LENGTH = 1000  # characters (Temporal's limit)


def check_workflow_id(workflow_id: str) -> None:
    """Raises WorkflowIdError for an ID no run may have: empty, or over 1,000 characters
    (it is the key of every record of the run, on every topic)."""
    if not workflow_id:
        raise WorkflowIdError("the workflow ID is empty; give the run an ID")
    if len(workflow_id) > MAX_WORKFLOW_ID_LENGTH:
        raise WorkflowIdError(
            f"workflow ID {workflow_id[:40]!r}... is {len(workflow_id)} characters, over the "
            f"limit of {MAX_WORKFLOW_ID_LENGTH}; use a shorter ID (a hash of a long key)"
        )


class Client:
    """A connection to an Everflow deployment (a Kafka cluster and a topic prefix)."""

    # the class of the handles it gives (the test environment's waits skip time)
    handle_type: type[WorkflowHandle] = WorkflowHandle

    def __init__(
        self,
        config: KafkaConfig,
        converter: DataConverter | None = None,
        *,
        visibility: str | None = None,
        tracing: bool = False,
        create_topics: bool | None = None,
    ) -> None:
        """Connects to the cluster of `config`.

        `create_topics` (None: EVERFLOW_CREATE_TOPICS, on unless 0/false/no): on a cluster
        without this prefix's topics, make them (all but the task queues', which a worker
        makes) as a worker would, checking any that exist (TopicMismatchError when one
        differs); KafkaAuthorizationError when the cluster's ACLs deny this principal
        creating topics: an admin runs `everflow topics create`. With False, a missing topic
        raises BrokerError naming that command. When the topics exist, nothing more is asked.
        """
        self.config = config
        # None: the converter the settings call for (payload keys, a codec server, the
        # payload store of EVERFLOW_PAYLOAD_STORE)
        self.converter = converter or configured_converter()
        # the run index's store URL; opened on the first list or count
        self.visibility_url = visibility_url(config.topic_prefix, visibility)
        self._store: Store | None = None
        self.topics = Topics(config.topic_prefix)
        self.client_id = f"client-{uuid.uuid4().hex[:12]}"
        self.wire = wire()
        # spans around requests, their context in the commands' headers (`streams.tracing`)
        self._tracing = Tracing() if tracing else None
        # asked first: a refused or unreachable cluster raises before any client is made
        # whose threads would go on knocking until the garbage collector ends them
        admin = kafka.admin(config)
        create = create_topics_from_env() if create_topics is None else create_topics
        counts = client_topics(admin, config, create)
        self._partitions = counts[self.topics.commands]
        reply_partitions = counts[self.topics.replies]
        self._producer = kafka.producer(config, **{"linger.ms": 0})
        self._lock = threading.Lock()
        self._replies: dict[str, tuple[asyncio.AbstractEventLoop, asyncio.Future[ReplyBody]]] = {}
        self._completions: dict[
            str, list[tuple[asyncio.AbstractEventLoop, asyncio.Future[Completion]]]
        ] = {}
        self._closed: dict[str, Completion] = {}
        self._stop = threading.Event()
        self._consumer = kafka.consumer(config)
        # Start at today's end, resolved now: with OFFSET_END resolved lazily, a reply that
        # arrives before the first fetch would be skipped. Anything we ask for later is
        # written after these offsets.
        wanted = [(self.topics.replies, kafka.partition_for(self.client_id, reply_partitions))] + [
            (self.topics.completions, p) for p in range(self._partitions)
        ]
        try:
            self._consumer.assign(
                [TopicPartition(t, p, kafka.end_offset(self._consumer, t, p)) for t, p in wanted]
            )
        except BaseException:
            self._consumer.close()
            raise
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._read, name="everflow-client", daemon=True)
        self._reading = False

    def _start_reading(self) -> None:
        # the reader starts with the first request: a worker that only hosts processors
        # never needs it, and an idle thread would still compete for the GIL
        with self._lock:
            if self._reading:
                return
            self._reading = True
        self._thread.start()
        self._ready.wait(30)

    @classmethod
    async def connect(
        cls,
        bootstrap: str | None = None,
        *,
        topic_prefix: str | None = None,
        namespace: str | None = None,
        converter: DataConverter | None = None,
        visibility: str | None = None,
        tracing: bool | None = None,
        create_topics: bool | None = None,
        **kafka_settings: Any,
    ) -> Client:
        """Connects to the cluster (settings from arguments, then `EVERFLOW_*` variables).

        `namespace` is Temporal's name for what Everflow calls the topic prefix (as the
        CLI's `--namespace`): give either.

        `visibility` is the run index's store URL (`sqlite:///path` or `postgresql://…`);
        None means EVERFLOW_VISIBILITY, else the default SQLite file for this topic prefix.

        `tracing` (default: `EVERFLOW_TRACING`) makes OpenTelemetry spans of starts,
        signals, queries and updates and sends their context with the command; it needs
        the `otel` extra (ImportError without it).

        `create_topics` (default: `EVERFLOW_CREATE_TOPICS`, on): a cluster without this
        prefix's topics gets them, as a worker would make them; False raises BrokerError
        instead (see `Client`).
        """
        if namespace is not None and topic_prefix not in (None, namespace):
            raise ConfigError(
                f"namespace={namespace!r} and topic_prefix={topic_prefix!r}: they name the "
                "same thing (a deployment's topic prefix); give one"
            )
        config = KafkaConfig.from_env(
            bootstrap=bootstrap, topic_prefix=topic_prefix or namespace, kafka=kafka_settings
        )
        traced = tracing_from_env() if tracing is None else tracing
        made = functools.partial(
            cls,
            config,
            converter,
            visibility=visibility,
            tracing=traced,
            create_topics=create_topics,
        )
        return await asyncio.to_thread(made)

    def close(self) -> None:
        self._stop.set()
        if self._reading:
            self._thread.join(10)
        else:
            self._consumer.close()
        self._producer.flush(10)
        with self._lock:
            if self._store is not None:
                self._store.close()

    def now(self) -> datetime:
        """The time as this client tells it: the wall clock (UTC). A schedule created through
        it takes due times from this moment on; the time-skipping environment's client
        answers with its virtual clock."""
        return datetime.now(UTC)

    # ---- the run index ------------------------------------------------------------------------
    def _index(self) -> Store:
        with self._lock:
            if self._store is None:
                self._store = open_store(self.visibility_url, create=False)
            return self._store

    async def list_workflows(
        self, query: str = "", *, page_size: int = 100, limit: int | None = None
    ) -> AsyncIterator[WorkflowExecution]:
        """The runs the index has that match `query` (the list filter), page by page.

        Order: the query's ORDER BY, else open runs first, then the latest closed, then the
        latest started. Each page starts after the last run of the one before (keyset
        paging), so a deep page costs what the first does; a run whose place in the order
        changes while you iterate (an open run that closes) may be missed or seen twice.
        `limit` caps how many are yielded. Raises FilterError for a bad
        query, VisibilityUnavailableError when there is no index to read. The index follows
        `history` a little behind (`visibility_lag`).
        """
        if page_size < 1:
            raise ValueError(f"page_size must be >= 1, got {page_size}")
        store = await asyncio.to_thread(self._index)
        types = await asyncio.to_thread(store.refresh_attribute_types)
        compiled = compile_filter(query, dialect=store.dialect, attribute_types=types)
        shown, after = 0, None
        while limit is None or shown < limit:
            size = page_size if limit is None else min(page_size, limit - shown)
            # keyset paging: each page starts after the last row of the one before, so a
            # deep page costs what the first does and rows written meanwhile shift nothing
            page = await asyncio.to_thread(
                functools.partial(
                    store.page_runs,
                    compiled.where,
                    compiled.params,
                    compiled.order,
                    limit=size,
                    after=after,
                )
            )
            for execution in page.runs:
                yield execution
            shown += len(page.runs)
            if page.next is None:
                return
            after = page.next

    async def count_workflows(
        self, query: str = "", *, group_by_status: bool = False
    ) -> WorkflowCount:
        """How many runs in the index match `query`; per status too if `group_by_status`.

        Raises FilterError for a bad query, VisibilityUnavailableError with no index.
        """
        store = await asyncio.to_thread(self._index)
        types = await asyncio.to_thread(store.refresh_attribute_types)
        compiled = compile_filter(query, dialect=store.dialect, attribute_types=types)
        return await asyncio.to_thread(
            store.count_runs, compiled.where, compiled.params, group_by_status=group_by_status
        )

    async def describe_indexed(self, run_id: str) -> WorkflowExecution | None:
        """The index's row of one run with its pending activities (attempt, maximum, last
        failure, next retry), or None if the index has no such run."""
        store = await asyncio.to_thread(self._index)
        return await asyncio.to_thread(store.describe_run, run_id)

    async def visibility_lag(self) -> IndexLag:
        """How far the index is behind `history`: records per partition, and the age of the
        oldest record not yet indexed (0 when caught up)."""
        store = await asyncio.to_thread(self._index)
        return await asyncio.to_thread(_index_lag, self.config, self.topics.history, store)

    # ---- workflows ----------------------------------------------------------------------------
    async def start_workflow(
        self,
        workflow: Any,
        *arg: Any,
        id: str,
        task_queue: str,
        args: Sequence[Any] | None = None,
        result_type: Any = None,
        execution_timeout: timedelta | None = None,
        run_timeout: timedelta | None = None,
        start_signal: Any = None,
        start_signal_args: Sequence[Any] = (),
        id_reuse_policy: IdReusePolicy | str = IdReusePolicy.ALLOW_DUPLICATE,
        id_conflict_policy: IdConflictPolicy | str = IdConflictPolicy.FAIL,
        request_timeout: timedelta = timedelta(seconds=30),
        search_attributes: Mapping[str, Any] | None = None,
    ) -> WorkflowHandle:
        """Starts a run; WorkflowAlreadyStartedError if one with this ID is running.

        `workflow` is the @workflow.defn class, its run method (`Transfer.run`) or the
        workflow's name; its arguments go positionally or as `args=[...]`. `result_type`
        shapes the handle's `result()` (default: the run method's return annotation, when
        `workflow` is the class or its run method).
        `execution_timeout` / `run_timeout` end the run as TIMED_OUT when they pass.
        `start_signal` (+ `start_signal_args`) delivers a signal right after the start
        (signal-with-start). `id_reuse_policy` (an IdReusePolicy or its string:
        allow_duplicate, allow_duplicate_failed_only, reject_duplicate) governs an ID whose
        run closed; `id_conflict_policy` (IdConflictPolicy: fail, use_existing) one that is
        running. ValueError for another value. `search_attributes` (name -> value) are the
        run's custom search attributes from its start, typed by their values as in
        `workflow.upsert_search_attributes` (SearchAttributeError for a bad one or a None).
        """
        check_workflow_id(id)
        reuse = option(IdReusePolicy, id_reuse_policy, "id_reuse_policy")
        conflict = option(IdConflictPolicy, id_conflict_policy, "id_conflict_policy")
        call_args = arguments(arg, args, "start_workflow")
        name, result_type = WorkflowDefinition.type_and_result(workflow, result_type)
        attributes = encode_search_attributes(search_attributes or {}, allow_remove=False)
        payloads = self.converter.to_payloads(list(call_args))
        check_size(payloads, self.config.max_payload_bytes, f"the arguments of workflow {id!r}")
        signal_payloads = self.converter.to_payloads(list(start_signal_args))
        if start_signal:
            what = f"the arguments of signal {handler_name(start_signal)!r} to workflow {id!r}"
            check_size(signal_payloads, self.config.max_payload_bytes, what)
        run_id = str(uuid.uuid4())
        waiter = self.watch_completion(id)
        body = StartWorkflow(
            run_id,
            name,
            task_queue,
            payloads,
            self.client_id,
            millis(execution_timeout),
            millis(run_timeout),
            handler_name(start_signal) if start_signal else None,
            signal_payloads,
            reuse,
            conflict,
            search_attributes=attributes,
        )
        reply = await self.request(id, body, request_timeout)
        if isinstance(reply, StartRejected):
            self.unwatch_completion(id, waiter)
            if reply.code != RejectionCode.ALREADY_STARTED:  # refused for another reason
                raise RequestRejectedError(reply.message)
            raise WorkflowAlreadyStartedError(id, reply.existing_run_id, reply.message)
        if isinstance(reply, Rejected) and reply.code == RejectionCode.SIGNAL_LIMIT:
            self.unwatch_completion(id, waiter)  # signal-with-start to a run that is full
            raise SignalLimitError(reply.message)
        assert isinstance(reply, StartAccepted)
        return self.handle_type(self, id, reply.run_id, waiter, result_type=result_type)

    async def execute_workflow(
        self,
        workflow: Any,
        *arg: Any,
        id: str,
        task_queue: str,
        args: Sequence[Any] | None = None,
        result_type: Any = None,
        timeout: timedelta | None = None,
        execution_timeout: timedelta | None = None,
        run_timeout: timedelta | None = None,
        start_signal: Any = None,
        start_signal_args: Sequence[Any] = (),
        id_reuse_policy: IdReusePolicy | str = IdReusePolicy.ALLOW_DUPLICATE,
        id_conflict_policy: IdConflictPolicy | str = IdConflictPolicy.FAIL,
        request_timeout: timedelta = timedelta(seconds=30),
        search_attributes: Mapping[str, Any] | None = None,
    ) -> Any:
        """Starts a run (every option of start_workflow) and waits for its result;
        WorkflowFailureError if it closed without one, WorkflowResultTimeoutError if it did
        not close within `timeout` (default: wait as long as it runs)."""
        handle = await self.start_workflow(
            workflow,
            *arg,
            id=id,
            task_queue=task_queue,
            args=args,
            result_type=result_type,
            execution_timeout=execution_timeout,
            run_timeout=run_timeout,
            start_signal=start_signal,
            start_signal_args=start_signal_args,
            id_reuse_policy=id_reuse_policy,
            id_conflict_policy=id_conflict_policy,
            request_timeout=request_timeout,
            search_attributes=search_attributes,
        )
        return await handle.result(timeout=timeout)

    def get_workflow_handle(
        self, workflow_id: str, run_id: str | None = None, *, result_type: Any = None
    ) -> WorkflowHandle:
        """A handle to an existing run (the latest run of the ID if run_id is None);
        `result_type` shapes its result()."""
        return self.handle_type(self, workflow_id, run_id, None, result_type=result_type)

    def get_workflow_handle_for(
        self, workflow: Any, workflow_id: str, run_id: str | None = None
    ) -> WorkflowHandle:
        """A handle to an existing run of `workflow` (the class or its run method), whose
        result() is shaped by the run method's return annotation."""
        result_type = WorkflowDefinition.of(workflow).result_type
        return self.get_workflow_handle(workflow_id, run_id, result_type=result_type)

    # ---- schedules (`streams.schedules`) ------------------------------------------------------
    async def create_schedule(self, id: str, schedule: Schedule) -> ScheduleHandle:
        """Creates a schedule: from now on, each due time of `schedule.spec` starts its
        action once (see `streams.schedules`). The schedule runs as the workflow
        `everflow-schedule:<id>` on any worker (every worker hosts it). Raises
        ScheduleSpecError (nothing sent) for a spec or policy that cannot run,
        ScheduleAlreadyRunningError if a schedule with this ID exists."""
        return await create_schedule(self, id, schedule)

    def get_schedule_handle(self, id: str) -> ScheduleHandle:
        """A handle to the schedule `id` (nothing is asked until a method is called)."""
        return ScheduleHandle(self, id)

    def list_schedules(self) -> ScheduleIterator:
        """The schedules in the run index, by ID: `async for s in client.list_schedules()`
        (or, as in Temporal, `await client.list_schedules()` first). A new one shows up
        within about a second; VisibilityUnavailableError when there is no index."""
        return list_schedules(self)

    # ---- plumbing -----------------------------------------------------------------------------
    def _send(
        self,
        workflow_id: str,
        body: CommandBody,
        command_id: str | None = None,
        headers: Headers | None = None,
    ) -> str:
        command_id = command_id or uuid.uuid4().hex
        command = Command(command_id, workflow_id, int(time.time() * 1000), body)
        raw, key = self.wire.command.encode(command), workflow_id.encode()
        if headers:
            self._producer.produce(self.topics.commands, raw, key, headers=headers)
        else:
            self._producer.produce(self.topics.commands, raw, key)
        self._producer.poll(0)
        return command_id

    async def request(self, workflow_id: str, body: CommandBody, timeout: timedelta) -> ReplyBody:
        """Sends one command about a workflow and waits for the processor's reply.

        The low-level call under every `WorkflowHandle` method; RPCTimeoutError when no reply
        comes within `timeout` (the command may still take effect); WorkflowIdError, before
        anything is sent, for an empty ID or one over 1,000 characters.
        """
        check_workflow_id(workflow_id)
        if self._tracing is None:
            return await self._request(workflow_id, body, timeout, None)
        with self._tracing.client_span(workflow_id, body) as headers:
            return await self._request(workflow_id, body, timeout, headers)

    async def _request(
        self,
        workflow_id: str,
        body: CommandBody,
        timeout: timedelta,
        headers: Headers | None,
    ) -> ReplyBody:
        self._start_reading()
        loop = asyncio.get_running_loop()
        command_id = uuid.uuid4().hex
        fut: asyncio.Future[ReplyBody] = loop.create_future()
        with self._lock:
            self._replies[command_id] = (loop, fut)
        self._send(workflow_id, body, command_id, headers)
        try:
            return await asyncio.wait_for(fut, timeout.total_seconds())
        except TimeoutError:
            raise RPCTimeoutError(
                f"no answer about workflow {workflow_id!r} within {timeout}; is a worker "
                f"running on topic prefix {self.config.topic_prefix!r}?"
            ) from None
        finally:
            with self._lock:
                self._replies.pop(command_id, None)

    def watch_completion(self, workflow_id: str) -> asyncio.Future[Completion]:
        """A future resolved by the next `completions` record of this workflow ID."""
        self._start_reading()
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Completion] = loop.create_future()
        with self._lock:
            self._completions.setdefault(workflow_id, []).append((loop, fut))
        return fut

    def unwatch_completion(self, workflow_id: str, fut: asyncio.Future[Completion]) -> None:
        """Stops watching: `fut` (from watch_completion) will not be resolved."""
        with self._lock:
            waiters = self._completions.get(workflow_id, [])
            self._completions[workflow_id] = [w for w in waiters if w[1] is not fut]

    def _read(self) -> None:
        first = True
        while not self._stop.is_set():
            messages = kafka.consume_batch(self._consumer, 500, 0.05)
            if first:
                self._ready.set()
                first = False
            for msg in messages:
                if msg.error() is not None:
                    continue
                try:
                    if msg.topic() == self.topics.replies:
                        self._on_reply(self.wire.reply.decode(msg.value()))
                    else:
                        self._on_completion(self.wire.completion.decode(msg.value()))
                except Exception:  # one bad record must not stop the client's reader
                    log.exception(
                        "cannot read %s[%d]@%d", msg.topic(), msg.partition(), msg.offset()
                    )
        self._consumer.close()

    def _on_reply(self, reply: Reply) -> None:
        if reply.client_id != self.client_id:
            return
        with self._lock:
            waiter = self._replies.pop(reply.request_id, None)
        if waiter is not None:
            loop, fut = waiter
            loop.call_soon_threadsafe(_resolve, fut, reply.body)

    def _on_completion(self, completion: Completion) -> None:
        if completion.status is RunStatus.CONTINUED_AS_NEW:
            return  # the workflow goes on in a new run: waiters wait for that one
        with self._lock:
            waiters = self._completions.pop(completion.workflow_id, [])
        for loop, fut in waiters:
            loop.call_soon_threadsafe(_resolve, fut, completion)


def _resolve(fut: asyncio.Future[Any], value: Any) -> None:
    if not fut.done():
        fut.set_result(value)


def _index_lag(config: KafkaConfig, topic: str, store: Store) -> IndexLag:
    """Compares the index's stored offsets with the ends of `history`.

    The end of a partition counts transaction markers, so a partition whose stored offset is
    below its end is read from there: if no record comes before the end, it is caught up.
    """
    stored = store.offsets(topic)
    consumer = kafka.consumer(config, settings={"enable.partition.eof": True})
    try:
        partitions = partition_count(kafka.admin(config), topic)
        ends = {p: kafka.end_offset(consumer, topic, p) for p in range(partitions)}
        behind = {p: end - stored.get(p, 0) for p, end in ends.items() if end > stored.get(p, 0)}
        records = dict.fromkeys(ends, 0)
        oldest: float | None = None
        if behind:
            consumer.assign(
                [TopicPartition(topic, p, stored.get(p, OFFSET_BEGINNING)) for p in behind]
            )
            pending, deadline = set(behind), time.monotonic() + 10
            while pending and time.monotonic() < deadline:
                msg = consumer.poll(0.2)
                p = None if msg is None else msg.partition()
                if msg is None or p is None or p not in pending:
                    continue
                err = msg.error()
                pending.discard(p)
                if err is not None and err.code() != KafkaError._PARTITION_EOF:
                    raise BrokerError(f"reading {topic} for the index lag failed: {err.str()}")
                if err is None:
                    records[p] = behind[p]
                    ts = msg.timestamp()[1] / 1000
                    oldest = ts if oldest is None else min(oldest, ts)
        seconds = 0.0 if oldest is None else max(0.0, time.time() - oldest)
        return IndexLag(records, seconds)
    finally:
        consumer.close()
