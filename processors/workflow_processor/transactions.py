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

A failed call is classified (`classify`) into what it means for the transaction. The rule
for a commit whose outcome is unknown (a timeout, or any error after which librdkafka cannot
tell whether EndTxn landed) is: never retry the commit; abort if the producer still allows
it, drop the producer and make a new one with the same `transactional.id`, whose
`init_transactions()` bumps the producer epoch, then restore from Kafka, which tells whether
the commit landed. librdkafka does not implement the client half of KIP-890 (transactions
verified by the partition leaders, and an epoch bump per transaction), so a retried or late
EndTxn or Produce request of the old transaction could otherwise land in a *later* one
(Jepsen's lost writes and torn transactions); the epoch bump makes the coordinator and the
partition leaders refuse everything still in flight from the old producer.

A call on the commit thread that outlives its own timeout by `CALL_GRACE` is abandoned:
librdkafka's send_offsets_to_transaction can wait without end for a group coordinator that
went away (its timeout is not checked while it looks for the coordinator), which would stall
every partition of the processor. The caller then treats the transaction's outcome as
unknown: no abort (the producer has a call in progress), a new producer whose epoch bump
fences the old one, and a new commit thread; the old thread, a daemon, is left to its call.
"""

from __future__ import annotations

import concurrent.futures
import logging
import os
import queue
import signal
import threading
import time
from collections import deque
from collections.abc import Callable
from enum import Enum
from typing import Any, Generic, TypeVar

from confluent_kafka import KafkaError, KafkaException, Producer, TopicPartition

from processors.workflow_processor.stats import Timing
from streams.kafka.clients import refusal
from streams.settings import FaultSettings

log = logging.getLogger(__name__)

Delivery = Callable[[Any, Any], None]
After = TypeVar("After")

# A transaction still open past transaction.timeout.ms (10 s by default) is aborted by its
# coordinator, and its records time out a second earlier (message.timeout.ms), so a call that
# waits much longer than that only delays the recovery: the fault suite's leader kill stalled
# every partition of a worker for 40 s (30 s + grace) with the old offsets timeout.
COMMIT_TIMEOUT = 20.0  # seconds for EndTxn (commit_transaction flushes the records first)
OFFSETS_TIMEOUT = 10.0  # seconds for one send_offsets_to_transaction
OFFSETS_TRIES = 3  # send_offsets_to_transaction calls, when librdkafka says it may be retried
ABORT_TIMEOUT = 60.0  # seconds to abort a transaction that failed (nothing of it commits)
UNKNOWN_ABORT_TIMEOUT = 10.0  # seconds to try to abort one whose outcome is unknown
INIT_TIMEOUT = 60.0  # seconds for one init_transactions
INIT_TRIES = 3  # init_transactions calls, when it timed out or may be retried
# seconds past a commit-thread call's own timeout after which the caller gives up on it
CALL_GRACE = 5.0
# producers re-created one after the other without a transaction committing in between: past
# this, the fault is not the producer's, and the processor stops instead of looping
MAX_RECREATIONS_IN_A_ROW = 3

# the transactional.id has a newer producer (another process with this instance ID, or the
# coordinator bumped the epoch when it timed the transaction out): this one must stop
_FENCING = frozenset(
    {KafkaError._FENCED, KafkaError.PRODUCER_FENCED, KafkaError.INVALID_PRODUCER_EPOCH}
)
_TIMEOUTS = frozenset({KafkaError._TIMED_OUT, KafkaError._TIMED_OUT_QUEUE})


class Call(Enum):
    """The producer call in which a transaction failed."""

    PRODUCE = "produce"  # begin_transaction or produce, on the processor's thread
    SEND_OFFSETS = "send_offsets_to_transaction"
    COMMIT = "commit_transaction"
    ABORT = "abort_transaction"


class Failure(Enum):
    """What a failed call means for the transaction, and so what the processor does."""

    RETRIABLE = "retriable"  # send_offsets may be called again; elsewhere, like ABORTABLE
    ABORTABLE = "abortable"  # nothing of it commits: abort it, restore
    UNKNOWN = "unknown"  # it may or may not have committed: re-create the producer, restore
    FATAL = "fatal"  # the producer is unusable: re-create it, restore
    FENCED = "fenced"  # a newer producer holds the transactional.id: stop the processor
    UNEXPECTED = "unexpected"  # none of these, on begin or produce (a bug): stop


def classify(error: KafkaError, call: Call) -> Failure:
    """What `error`, raised by `call`, means for the transaction.

    Fencing first (it is also fatal, but re-creating the producer would fence the newer one
    in turn), then fatal, then timeouts: librdkafka flags a timed-out commit retriable, as
    the commit goes on in the background, but its outcome is unknown and the commit is never
    retried (see the module docstring). After commit_transaction or abort_transaction any
    error that is not abortable leaves the outcome unknown; so does one of
    send_offsets_to_transaction that may not be retried (the producer's transaction state
    is then unknown, and a new producer is the safe way out).
    """
    code = error.code()
    if code in _FENCING:
        return Failure.FENCED
    if error.fatal():
        return Failure.FATAL
    if code in _TIMEOUTS:
        return Failure.UNKNOWN
    if error.txn_requires_abort() and call is not Call.ABORT:
        return Failure.ABORTABLE
    if call is Call.PRODUCE and code == KafkaError._STATE:
        # the producer no longer takes records into this transaction: librdkafka failed it
        # in the background (a request that timed out while this process was paused); a
        # new producer is the way out, as for a fatal error
        return Failure.FATAL
    if call is Call.PRODUCE:
        return Failure.RETRIABLE if error.retriable() else Failure.UNEXPECTED
    if call is Call.SEND_OFFSETS and error.retriable():
        return Failure.RETRIABLE
    return Failure.UNKNOWN


class TransactionFailed(BaseException):
    """A transaction failed in `call` with librdkafka's error (`cause`, the KafkaException
    raised); `failure` is what that means (see `classify`).

    An engine signal between the commit thread and the processor, never seen by users: the
    processor recovers from it or raises its `cause`. A BaseException, like the engine's
    other signals, so that no `except Exception` on its way swallows it."""

    def __init__(self, call: Call, cause: KafkaException) -> None:
        self.call = call
        self.cause = cause
        self.error: KafkaError = cause.args[0]
        self.failure = classify(self.error, call)
        super().__init__(f"{call.value} failed ({self.failure.value}): {self.error.str()}")


def init_transactions(
    producer: Producer,
    transactional_id: str,
    principal: str | None = None,
    keep_trying: Callable[[], bool] | None = None,
    on_wait: Callable[[], None] | None = None,
) -> None:
    """Initialises a new transactional producer: the coordinator completes (or aborts) what
    an earlier producer with the same ID left open and bumps the epoch, fencing it. Called
    again when it timed out or may be retried, as librdkafka allows; raises KafkaException
    when it still fails, KafkaAuthorizationError when an ACL denies the transactional ID.

    With `keep_trying`, a call that timed out (the cluster unreachable: brokers down, or
    this process cut off from them) is made again for as long as `keep_trying()` holds,
    without counting against INIT_TRIES: a processor waits an outage out (`on_wait` is told
    of each such try)."""
    attempt = 0
    while True:
        try:
            producer.init_transactions(INIT_TIMEOUT)
            break
        except KafkaException as e:
            # fatal: no retry makes the ACL appear; `principal` (the SASL user) is named
            denied = refusal(e, transactional_id, principal)
            if denied is not None:
                raise denied from e
            err: KafkaError = e.args[0]
            waiting = err.code() in _TIMEOUTS and keep_trying is not None and keep_trying()
            if not waiting:
                attempt += 1
                if attempt >= INIT_TRIES or not (err.retriable() or err.code() in _TIMEOUTS):
                    raise
            elif on_wait is not None:
                on_wait()
            log.warning(
                "init_transactions failed, trying again transactional_id=%s%s: %s",
                transactional_id,
                " (the cluster does not answer)" if waiting else f" attempt={attempt}",
                err.str(),
            )
    log.info("transactional producer ready transactional_id=%s", transactional_id)


class Transactions(Generic[After]):
    """Begins transactions on the caller's thread and ends them on the commit thread; each
    carries what changes in the caller's memory once it committed (`After`).

    `new_producer` makes a producer with the same transactional.id, initialised (see
    `recreate`); without one, a failure that needs a new producer is raised as it is."""

    def __init__(
        self,
        producer: Producer,
        timing: Timing,
        faults: FaultSettings | None = None,
        committed: Callable[[After], None] | None = None,
        new_producer: Callable[[], Producer] | None = None,
    ) -> None:
        self.producer = producer
        # called on the commit thread with a transaction's `after` as soon as it committed
        # (eager dispatch: the tasks it claimed start then, not when the caller settles)
        self._committed = committed
        self._new_producer = new_producer
        self.timing = timing
        self.faults = faults or FaultSettings()
        self.committed = 0
        self.ended = 0  # transactions handed off to end, failed ones too
        self.recreations = 0  # producers replaced by `recreate`
        self._recreations_in_a_row = 0  # since the last commit
        self.last_commit_seconds = 0.0  # how long the last settled transaction took to commit
        self.began = time.monotonic()  # when the latest transaction began
        self.replaced_because = ""  # the failure that made `recover` replace the producer
        self._thread = CommitThread()
        self._abandoned = False  # the last transaction's call was abandoned (see `settle`)
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
        self.began = time.monotonic()

    def outlived(self, timeout_ms: int) -> bool:
        """Whether the latest transaction has been open longer than `timeout_ms` (the
        producer's transaction.timeout.ms): the coordinator aborts such a transaction and
        bumps the producer's epoch, so this producer's next call finds itself fenced
        although no other process holds its transactional.id (the process was paused, or
        cut off from the cluster, for that long). The monotonic clock runs on while the
        process is stopped."""
        return (time.monotonic() - self.began) * 1000 >= timeout_ms

    def hand_off(self, offsets: list[TopicPartition], group_metadata: Any, after: After) -> None:
        """Ends the open transaction on the commit thread: offsets, then commit."""
        self.ended += 1
        thread = self._thread
        future = thread.submit(
            self._end, thread, self.ended, self.producer, offsets, group_metadata, after
        )
        self._in_flight = (future, after)

    def settle(self) -> After | None:
        """Waits for the transaction in flight: when it committed, applies its delivery
        reports and returns its `after`; None when none was in flight. Raises
        TransactionFailed when it failed: the caller aborts it (which voids its reports), or
        re-creates the producer, and restores its state."""
        if self._in_flight is None:
            return None
        (future, after), self._in_flight = self._in_flight, None
        waited = time.perf_counter()
        try:
            while True:
                try:
                    self.last_commit_seconds = future.result(timeout=1.0)
                    break
                except concurrent.futures.TimeoutError:
                    self._give_up_if_stuck()
        finally:
            self.timing.settle += time.perf_counter() - waited
        self.committed += 1
        self._recreations_in_a_row = 0
        self.producer.poll(0)
        while self._deliveries:
            callback, err, msg = self._deliveries.popleft()
            callback(err, msg)
        return after

    def _give_up_if_stuck(self) -> None:
        """Raises TransactionFailed (outcome unknown) when the commit thread's call outlived
        its timeout by CALL_GRACE; the thread is left to it and a new one takes over."""
        calling = self._thread.calling
        if calling is None or time.monotonic() < calling[1]:
            return
        call, _ = calling
        log.error(
            "%s has not returned %.0f s after its timeout: librdkafka can wait without end "
            "for a coordinator that went away; abandoning the call, its transaction's outcome "
            "is unknown",
            call.value,
            CALL_GRACE,
        )
        self._abandoned = True
        self._thread = CommitThread()  # the old one, a daemon, stays in its call
        reason = f"{call.value} did not return within its timeout (abandoned)"
        raise TransactionFailed(call, KafkaException(KafkaError(KafkaError._TIMED_OUT, reason)))

    def abort(self, timeout: float = ABORT_TIMEOUT) -> None:
        """Aborts the open transaction; reports of its records (served meanwhile) are void.
        Raises TransactionFailed (call ABORT) when it cannot."""
        self._deliveries.clear()
        try:
            self.producer.abort_transaction(timeout)
        except KafkaException as e:
            raise TransactionFailed(Call.ABORT, e) from e

    def recreate(self, failed: TransactionFailed, abort: bool = True) -> Producer:
        """Replaces the producer after a failure that left the transaction's outcome (or the
        producer) unknown: aborts the transaction if the producer still allows it (bounded
        by UNKNOWN_ABORT_TIMEOUT), purges what the old producer still holds without flushing
        or closing it, and makes a new one with the same transactional.id; its
        init_transactions() bumps the epoch, fencing anything of the old one still in flight.
        Returns the new producer: the caller hands it to whatever else held the old one, and
        restores its state from Kafka (which tells whether the commit landed). Raises
        TransactionFailed when the abort finds the producer fenced; KafkaException when the
        new producer cannot be initialised, or `failed`'s own when MAX_RECREATIONS_IN_A_ROW
        producers were re-created with no commit since (the fault is not the producer's)."""
        assert self._in_flight is None, "settle() the transaction in flight first"
        assert self._new_producer is not None, "no producer factory to re-create with"
        if self._recreations_in_a_row >= MAX_RECREATIONS_IN_A_ROW:
            log.error(
                "transactional producer re-created %d times without a commit, stopping: %s",
                self._recreations_in_a_row,
                failed,
            )
            raise failed.cause
        # (a fenced producer can abort nothing; one with an abandoned call in progress would
        # refuse, or wait on the same coordinator)
        abort, self._abandoned = abort and not self._abandoned, False
        try:
            if abort:
                self.abort(UNKNOWN_ABORT_TIMEOUT)
        except TransactionFailed as e:
            if e.failure is Failure.FENCED:
                raise
            log.info("no abort before re-creating the producer: %s", e)
        self.producer.purge(in_queue=True, in_flight=True, blocking=False)
        self._deliveries.clear()
        self.producer = self._new_producer()
        self.recreations += 1
        self._recreations_in_a_row += 1
        return self.producer

    def recover(self, failed: TransactionFailed, timeout_ms: int, transactional_id: str) -> str:
        """Sees that nothing of a failed transaction can still commit, before the caller
        restores its state from Kafka and re-reads its input: aborts it, or, when its
        outcome is unknown or the producer unusable, replaces the producer (`recreate`;
        `self.producer` is then a new one, `replaced_because` says why). Returns the result
        to count: aborted, unknown, fatal or timed_out. Raises the Kafka error when the
        processor must stop (fenced by another process, or an error no transaction makes).
        `timeout_ms` is the producer's transaction.timeout.ms."""
        if failed.failure is Failure.FENCED:
            self._fenced(failed, timeout_ms, transactional_id)
            return "timed_out"
        if failed.failure is Failure.UNEXPECTED:
            log.error("fatal transaction error, stopping: %s", failed)
            raise failed.cause
        if failed.failure in (Failure.RETRIABLE, Failure.ABORTABLE):
            log.warning("transaction aborted, restoring owned partitions: %s", failed.error.str())
            self.abort_or_replace(timeout_ms, transactional_id)
            return "aborted"
        self._replace(failed, timeout_ms, transactional_id)
        return failed.failure.value

    def abort_or_replace(self, timeout_ms: int, transactional_id: str) -> None:
        """Aborts the open transaction; a producer that cannot abort is replaced (or, when
        fenced by another process, the error is raised)."""
        try:
            self.abort()
        except TransactionFailed as e:
            if e.failure is Failure.FENCED:
                self._fenced(e, timeout_ms, transactional_id)
            else:
                self._replace(e, timeout_ms, transactional_id)

    def _fenced(self, fenced: TransactionFailed, timeout_ms: int, transactional_id: str) -> None:
        """A fenced producer. When its transaction outlived transaction.timeout.ms (the
        process was paused or cut off that long), the coordinator aborted it and bumped the
        epoch: nothing else holds the ID, so a new producer takes over (the consumer, if it
        was expelled meanwhile, rejoins the group; the group generation each transaction
        carries keeps a stale member from committing). A young transaction was fenced by
        another process with this instance ID: raises, and the processor stops."""
        # (a transaction whose records timed out, after message.timeout.ms = its timeout less
        # a second, is as old as that: the coordinator's abort is what fenced it)
        if not self.outlived(timeout_ms - 1000):
            log.error(
                "fenced by another process with transactional ID %s: an instance ID "
                "(EVERFLOW_INSTANCE_ID) must be unique among running workers; stopping: %s",
                transactional_id,
                fenced,
            )
            raise fenced.cause from fenced
        log.warning(
            "transaction aborted by the coordinator: it outlived transaction.timeout.ms "
            "(%d ms) while this process was paused or cut off; re-creating the transactional "
            "producer %s: %s",
            timeout_ms,
            transactional_id,
            fenced.error.str(),
        )
        self._recreate_or_stop(fenced, abort=False)

    def _replace(self, failed: TransactionFailed, timeout_ms: int, transactional_id: str) -> None:
        """Replaces the producer after an unknown outcome or a fatal producer error; never
        retries the commit (see the module docstring)."""
        if failed.failure is not Failure.UNKNOWN:
            what = "producer failed"
        else:
            what = "commit outcome unknown" if failed.call is Call.COMMIT else "outcome unknown"
        log.warning(
            "%s after %s: aborting, re-creating the transactional producer %s (epoch bump "
            "fences the old one): %s",
            what,
            failed.call.value,
            transactional_id,
            failed.error.str(),
        )
        try:
            self.recreate(failed)
        except TransactionFailed as e:  # the abort found the producer fenced
            self._fenced(e, timeout_ms, transactional_id)
            return
        self.replaced_because = failed.failure.value

    def _recreate_or_stop(self, failed: TransactionFailed, abort: bool) -> None:
        try:
            self.recreate(failed, abort=abort)
        except TransactionFailed as e:  # fenced: a newer producer holds the ID
            log.error("fatal transaction error, stopping: %s", e)
            raise e.cause from e
        self.replaced_because = failed.failure.value

    def close(self) -> None:
        self._thread.shutdown(CALL_GRACE)

    def _end(
        self,
        thread: CommitThread,
        n: int,
        producer: Producer,
        offsets: list[TopicPartition],
        group_metadata: Any,
        after: After,
    ) -> float:
        """On the commit thread: the transaction's offsets, then its commit, on `producer`
        (the one it began on: an abandoned call that returns late must not go on with the
        producer that replaced it)."""
        started = time.perf_counter()
        if offsets:
            self._send_offsets(thread, n, producer, offsets, group_metadata)
        self._fault_point(producer)
        if self.faults.unknown_before_commit == n:
            raise _timed_out(n, committed=False)
        thread.calling = (Call.COMMIT, time.monotonic() + COMMIT_TIMEOUT + CALL_GRACE)
        try:
            producer.commit_transaction(COMMIT_TIMEOUT)
        except KafkaException as e:
            raise TransactionFailed(Call.COMMIT, e) from e
        finally:
            thread.calling = None
        if self.faults.unknown_after_commit == n:
            raise _timed_out(n, committed=True)
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

    def _send_offsets(
        self,
        thread: CommitThread,
        n: int,
        producer: Producer,
        offsets: list[TopicPartition],
        group_metadata: Any,
    ) -> None:
        """send_offsets_to_transaction, called again (up to OFFSETS_TRIES) on an error
        librdkafka documents as retriable; the commit itself never is (see `classify`)."""
        for attempt in range(1, OFFSETS_TRIES + 1):
            deadline = time.monotonic() + OFFSETS_TIMEOUT + CALL_GRACE
            thread.calling = (Call.SEND_OFFSETS, deadline)
            try:
                if self.faults.hang_send_offsets == n and attempt == 1:
                    log.warning("fault injection: send_offsets_to_transaction of transaction "
                                "%d never returns", n)  # fmt: skip
                    threading.Event().wait()
                producer.send_offsets_to_transaction(offsets, group_metadata, OFFSETS_TIMEOUT)
                return
            except KafkaException as e:
                failed = TransactionFailed(Call.SEND_OFFSETS, e)
                if failed.failure is not Failure.RETRIABLE or attempt == OFFSETS_TRIES:
                    raise failed from e
                log.warning("%s; trying again (attempt %d)", failed, attempt)
            finally:
                thread.calling = None

    def _fault_point(self, producer: Producer) -> None:
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
                producer.flush(10)
                log.warning("fault injection: %s before commit of transaction %d", sig.name, n)
                os.kill(os.getpid(), sig)
                log.warning("fault injection: resumed before commit of transaction %d", n)


def _timed_out(n: int, committed: bool) -> TransactionFailed:
    """Testing hook (`faults.unknown_after_commit` / `unknown_before_commit`): the failure a
    commit that timed out raises, as librdkafka would report it, for the N-th transaction
    to end, which did (or did not) commit; the processor cannot tell which."""
    what = "committed" if committed else "not committed"
    log.warning(
        "fault injection: transaction %d %s, its commit reported as timed out (outcome unknown)",
        n,
        what,
    )
    error = KafkaError(
        KafkaError._TIMED_OUT,
        f"fault injection: commit of transaction {n} timed out",
        retriable=True,
    )
    return TransactionFailed(Call.COMMIT, KafkaException(error))


class CommitThread:
    """One daemon thread that runs the calls submitted to it, in order. Unlike a thread
    pool's, it does not hold the process open at exit: a call librdkafka never returns
    from is abandoned with it (see `Transactions.settle`)."""

    def __init__(self) -> None:
        self._calls: queue.SimpleQueue[
            tuple[concurrent.futures.Future[Any], Callable[..., Any], tuple[Any, ...]] | None
        ] = queue.SimpleQueue()
        # the librdkafka call this thread is in, and when the caller gives up on it
        self.calling: tuple[Call, float] | None = None
        self._thread = threading.Thread(target=self._run, name="commit", daemon=True)
        self._thread.start()

    def submit(self, call: Callable[..., Any], *args: Any) -> concurrent.futures.Future[Any]:
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self._calls.put((future, call, args))
        return future

    def _run(self) -> None:
        while (item := self._calls.get()) is not None:
            future, call, args = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(call(*args))
            except BaseException as e:  # TransactionFailed is one: the caller reads it
                future.set_exception(e)

    def shutdown(self, timeout: float) -> None:
        """Lets the submitted calls finish (waiting `timeout` seconds at most), then ends."""
        self._calls.put(None)
        self._thread.join(timeout)
