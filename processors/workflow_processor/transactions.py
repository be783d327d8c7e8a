"""The processor's transactions, committed on a thread of their own.

A transaction's end (offsets to the group coordinator, then EndTxn) is several broker round
trips in which the processor has nothing to do. The processor hands it off and reads and
runs the next batch meanwhile; before it begins the next transaction it settles the one in
flight. At most one is in flight, so the order of commits is the order of batches. If it
failed, the processor drops what it computed since (its state is restored from Kafka and
its input rewound), so nothing of a batch run on top of a failed one is ever written.

Delivery reports of a transaction's records may be served on the commit thread (commit
flushes the producer); they are queued and applied on the processor's thread when it
settles, so run state is only ever touched by that one thread.
"""

from __future__ import annotations

import concurrent.futures
import logging
import os
import signal
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from confluent_kafka import Producer, TopicPartition

from processors.workflow_processor.stats import Timing
from streams.settings import FaultSettings

log = logging.getLogger(__name__)

Delivery = Callable[[Any, Any], None]
After = TypeVar("After")


class Transactions(Generic[After]):
    """Begins transactions on the caller's thread and ends them on the commit thread; each
    carries what changes in the caller's memory once it committed (`After`)."""

    def __init__(
        self,
        producer: Producer,
        timing: Timing,
        faults: FaultSettings | None = None,
        committed: Callable[[After], None] | None = None,
    ) -> None:
        self.producer = producer
        # called on the commit thread with a transaction's `after` as soon as it committed
        # (eager dispatch: the tasks it claimed start then, not when the caller settles)
        self._committed = committed
        self.timing = timing
        self.faults = faults or FaultSettings()
        self.committed = 0
        self.last_commit_seconds = 0.0  # how long the last settled transaction took to commit
        self._thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="commit")
        self._in_flight: tuple[concurrent.futures.Future[float], After] | None = None
        self._deliveries: deque[tuple[Delivery, Any, Any]] = deque()

    @property
    def in_flight(self) -> bool:
        return self._in_flight is not None

    def deferred(self, callback: Delivery) -> Delivery:
        """A delivery callback that only queues its report (see `settle`)."""

        def queue(err: Any, msg: Any) -> None:
            self._deliveries.append((callback, err, msg))

        return queue

    def begin(self) -> None:
        assert self._in_flight is None, "settle() the transaction in flight first"
        self.producer.begin_transaction()

    def hand_off(self, offsets: list[TopicPartition], group_metadata: Any, after: After) -> None:
        """Ends the open transaction on the commit thread: offsets, then commit."""
        self._in_flight = (self._thread.submit(self._end, offsets, group_metadata, after), after)

    def settle(self) -> After | None:
        """Waits for the transaction in flight: when it committed, applies its delivery
        reports and returns its `after`; None when none was in flight. Raises its
        KafkaException when it failed: the caller aborts it (which voids its reports) and
        restores its state."""
        if self._in_flight is None:
            return None
        (future, after), self._in_flight = self._in_flight, None
        waited = time.perf_counter()
        try:
            self.last_commit_seconds = future.result()
        finally:
            self.timing.settle += time.perf_counter() - waited
        self.committed += 1
        self.producer.poll(0)
        while self._deliveries:
            callback, err, msg = self._deliveries.popleft()
            callback(err, msg)
        return after

    def abort(self) -> None:
        """Aborts the open transaction; reports of its records (served meanwhile) are void."""
        self.producer.abort_transaction(60)
        self._deliveries.clear()

    def close(self) -> None:
        self._thread.shutdown(wait=True)

    def _end(self, offsets: list[TopicPartition], group_metadata: Any, after: After) -> float:
        started = time.perf_counter()
        if offsets:
            self.producer.send_offsets_to_transaction(offsets, group_metadata, 30)
        self._fault_point()
        self.producer.commit_transaction(60)
        seconds = time.perf_counter() - started
        self.timing.commit += seconds
        if self.faults.stop_after_commit and self.committed + 1 == self.faults.stop_after_commit:
            n = self.committed + 1
            log.warning("fault injection: SIGSTOP after commit of transaction %d", n)
            os.kill(os.getpid(), signal.SIGSTOP)
            log.warning("fault injection: resumed after commit of transaction %d", n)
        if self._committed is not None:
            try:
                self._committed(after)
            except Exception:  # the transaction stands; what the hook missed recovers on its own
                log.exception("after-commit hook failed")
        return seconds

    def _fault_point(self) -> None:
        """Testing hooks, after the N-th transaction produced its records (they are on the
        broker, uncommitted) and before it commits: `faults.kill_before_commit` = N
        SIGKILLs this process; `faults.stop_before_commit` = N SIGSTOPs it (a zombie, until
        someone sends SIGCONT)."""
        n = self.committed + 1
        for hook, sig in (
            (self.faults.kill_before_commit, signal.SIGKILL),
            (self.faults.stop_before_commit, signal.SIGSTOP),
        ):
            if hook and n == hook:
                self.producer.flush(10)
                log.warning("fault injection: %s before commit of transaction %d", sig.name, n)
                os.kill(os.getpid(), sig)
                log.warning("fault injection: resumed before commit of transaction %d", n)
