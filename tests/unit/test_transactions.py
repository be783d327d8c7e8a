"""The processor's transactions: the fault hooks fire before the N-th commit, as configured;
a failed call is classified by what it means (a commit whose outcome is unknown is never
retried, send_offsets_to_transaction is when librdkafka allows it); and the producer is
re-created, after an abort when the old one allows it."""

from __future__ import annotations

import signal
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException

from processors.workflow_processor import transactions
from processors.workflow_processor.stats import Timing
from processors.workflow_processor.transactions import (
    MAX_RECREATIONS_IN_A_ROW,
    OFFSETS_TRIES,
    Call,
    Failure,
    TransactionFailed,
    Transactions,
    classify,
)
from streams.settings import FaultSettings


class _Producer:
    def __init__(self) -> None:
        self.committed = 0

    def begin_transaction(self) -> None:
        pass

    def commit_transaction(self, timeout: float) -> None:
        self.committed += 1

    def flush(self, timeout: float) -> int:
        return 0

    def poll(self, timeout: float) -> int:
        return 0


def _run(faults: FaultSettings, count: int, monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    sent: list[Any] = []
    monkeypatch.setattr(transactions.os, "kill", lambda pid, sig: sent.append(sig))
    producer = _Producer()
    timing = Timing()
    txns: Transactions[int] = Transactions(producer, timing, faults)  # type: ignore[arg-type]
    try:
        for n in range(count):
            txns.begin()
            txns.hand_off([], None, n)
            assert txns.settle() == n
    finally:
        txns.close()
    assert producer.committed == count and timing.commit >= 0
    return sent


def test_no_fault_is_injected_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _run(FaultSettings(), 3, monkeypatch) == []


def test_the_stop_hook_fires_once_before_the_nth_commit(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _run(FaultSettings(stop_before_commit=2), 4, monkeypatch) == [signal.SIGSTOP]


def test_the_kill_hook_fires_before_the_nth_commit(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _run(FaultSettings(kill_before_commit=1), 2, monkeypatch) == [signal.SIGKILL]


def test_the_stop_after_hook_fires_once_after_the_nth_commit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert _run(FaultSettings(stop_after_commit=2), 4, monkeypatch) == [signal.SIGSTOP]


# ---- what a failed call means ---------------------------------------------------------------
def _error(code: int, **flags: bool) -> KafkaError:
    return KafkaError(code, "from the test", **flags)


TIMED_OUT = _error(KafkaError._TIMED_OUT, retriable=True)  # as librdkafka flags it
RETRIABLE = _error(KafkaError.COORDINATOR_NOT_AVAILABLE, retriable=True)
ABORTABLE = _error(KafkaError.INVALID_TXN_STATE, txn_requires_abort=True)
FATAL = _error(KafkaError.OUT_OF_ORDER_SEQUENCE_NUMBER, fatal=True)
OTHER = _error(KafkaError._STATE)  # "operation not valid in state ..."


@pytest.mark.parametrize(
    ("error", "call", "failure"),
    [
        # a commit that timed out, or failed in a way librdkafka may retry, has an unknown
        # outcome: it is never retried
        (TIMED_OUT, Call.COMMIT, Failure.UNKNOWN),
        (_error(KafkaError._TIMED_OUT_QUEUE, retriable=True), Call.COMMIT, Failure.UNKNOWN),
        (RETRIABLE, Call.COMMIT, Failure.UNKNOWN),
        (OTHER, Call.COMMIT, Failure.UNKNOWN),
        (ABORTABLE, Call.COMMIT, Failure.ABORTABLE),
        (FATAL, Call.COMMIT, Failure.FATAL),
        # fenced: a newer producer has the transactional.id (fatal too, but not re-created)
        (_error(KafkaError.PRODUCER_FENCED, fatal=True), Call.COMMIT, Failure.FENCED),
        (_error(KafkaError._FENCED, fatal=True), Call.COMMIT, Failure.FENCED),
        (_error(KafkaError.INVALID_PRODUCER_EPOCH), Call.SEND_OFFSETS, Failure.FENCED),
        # offsets may be sent again when librdkafka says so; a timeout is unknown still
        (RETRIABLE, Call.SEND_OFFSETS, Failure.RETRIABLE),
        (TIMED_OUT, Call.SEND_OFFSETS, Failure.UNKNOWN),
        (ABORTABLE, Call.SEND_OFFSETS, Failure.ABORTABLE),
        (OTHER, Call.SEND_OFFSETS, Failure.UNKNOWN),
        # an abort that does not go through leaves the transaction's outcome unknown
        (TIMED_OUT, Call.ABORT, Failure.UNKNOWN),
        (ABORTABLE, Call.ABORT, Failure.UNKNOWN),
        (OTHER, Call.ABORT, Failure.UNKNOWN),
        (FATAL, Call.ABORT, Failure.FATAL),
        # begin or produce: aborted when retriable or abortable, else a bug that stops
        (RETRIABLE, Call.PRODUCE, Failure.RETRIABLE),
        (ABORTABLE, Call.PRODUCE, Failure.ABORTABLE),
        (FATAL, Call.PRODUCE, Failure.FATAL),
        (_error(KafkaError.MSG_SIZE_TOO_LARGE), Call.PRODUCE, Failure.UNEXPECTED),
        # a producer whose transaction librdkafka failed in the background refuses records
        # ("Erroneous state"; seen after SIGCONT): a new producer, not a stop
        (OTHER, Call.PRODUCE, Failure.FATAL),
    ],
)
def test_a_failed_call_is_classified_by_what_it_means_for_the_transaction(
    error: KafkaError, call: Call, failure: Failure
) -> None:
    assert classify(error, call) is failure
    failed = TransactionFailed(call, KafkaException(error))
    assert failed.failure is failure and failed.error is error
    assert f"{call.value} failed ({failure.value})" in str(failed)


# ---- the commit thread's failures -----------------------------------------------------------
class _Failing(_Producer):
    """A transactional producer whose calls fail as told: `offsets` / `commits` / `aborts`
    are the errors its next calls raise, in order (then they succeed)."""

    def __init__(self, name: str = "first") -> None:
        super().__init__()
        self.name = name
        self.offsets: list[KafkaError] = []
        self.commits: list[KafkaError] = []
        self.aborts: list[KafkaError] = []
        self.calls: list[str] = []

    def send_offsets_to_transaction(self, offsets: Any, metadata: Any, timeout: float) -> None:
        self.calls.append("send_offsets")
        if self.offsets:
            raise KafkaException(self.offsets.pop(0))

    def commit_transaction(self, timeout: float) -> None:
        self.calls.append("commit")
        if self.commits:
            raise KafkaException(self.commits.pop(0))
        self.committed += 1

    def abort_transaction(self, timeout: float) -> None:
        self.calls.append("abort")
        if self.aborts:
            raise KafkaException(self.aborts.pop(0))

    def purge(self, in_queue: bool, in_flight: bool, blocking: bool) -> None:
        self.calls.append("purge")


def _end_one(txns: Transactions[int], offsets: bool = True) -> int | None:
    txns.begin()
    txns.hand_off([object()] if offsets else [], None, 7)  # type: ignore[list-item]
    return txns.settle()


def _transactions(producer: _Failing, faults: FaultSettings | None = None) -> Transactions[int]:
    made: list[_Failing] = []

    def new_producer() -> Any:
        made.append(_Failing(f"new-{len(made) + 1}"))
        return made[-1]

    return Transactions(producer, Timing(), faults, new_producer=new_producer)  # type: ignore[arg-type]


UNKNOWN_COMMIT = TransactionFailed(Call.COMMIT, KafkaException(TIMED_OUT))


def test_a_commit_that_timed_out_is_not_retried_and_its_outcome_is_unknown() -> None:
    producer = _Failing()
    producer.commits = [TIMED_OUT]
    txns = _transactions(producer)
    try:
        with pytest.raises(TransactionFailed) as failed:
            _end_one(txns)
        assert (failed.value.call, failed.value.failure) == (Call.COMMIT, Failure.UNKNOWN)
        assert producer.calls == ["send_offsets", "commit"]  # one commit, never a second
        assert txns.committed == 0 and txns.ended == 1
    finally:
        txns.close()


def test_offsets_are_sent_again_on_a_retriable_error_up_to_a_bound() -> None:
    producer = _Failing()
    producer.offsets = [RETRIABLE] * (OFFSETS_TRIES - 1)
    txns = _transactions(producer)
    try:
        assert _end_one(txns) == 7
        assert producer.calls == ["send_offsets"] * OFFSETS_TRIES + ["commit"]
        producer.calls.clear()
        producer.offsets = [RETRIABLE] * OFFSETS_TRIES
        with pytest.raises(TransactionFailed) as failed:
            _end_one(txns)
        assert failed.value.failure is Failure.RETRIABLE  # the caller aborts it
        assert producer.calls == ["send_offsets"] * OFFSETS_TRIES  # and nothing committed
    finally:
        txns.close()


@pytest.mark.parametrize("landed", [False, True])
def test_the_unknown_commit_hooks_report_a_timeout_whether_or_not_it_committed(
    landed: bool,
) -> None:
    producer = _Failing()
    faults = (
        FaultSettings(unknown_after_commit=2) if landed else FaultSettings(unknown_before_commit=2)
    )
    txns = _transactions(producer, faults)
    try:
        assert _end_one(txns) == 7
        with pytest.raises(TransactionFailed) as failed:
            _end_one(txns)
        assert failed.value.error.code() == KafkaError._TIMED_OUT and failed.value.error.retriable()
        assert (failed.value.call, failed.value.failure) == (Call.COMMIT, Failure.UNKNOWN)
        assert producer.committed == (2 if landed else 1)
        assert _end_one(txns) == 7  # the 3rd to end: the hook fires once
        assert txns.ended == 3
    finally:
        txns.close()


def test_recreate_aborts_purges_and_hands_over_a_new_producer() -> None:
    producer = _Failing()
    txns = _transactions(producer)
    deliveries: list[object] = []
    try:
        txns.deferred(lambda err, msg: deliveries.append(msg))(None, "of the old one")
        new = txns.recreate(UNKNOWN_COMMIT)
        assert producer.calls == ["abort", "purge"]
        assert isinstance(new, _Failing) and new.name == "new-1"
        assert txns.producer is new and txns.recreations == 1
        assert _end_one(txns) == 7 and new.committed == 1 and producer.committed == 0
        assert deliveries == []  # reports of the old producer's records are void
    finally:
        txns.close()


def test_recreate_goes_on_when_the_old_producer_cannot_abort() -> None:
    producer = _Failing()
    producer.aborts = [OTHER]  # e.g. the commit had gone through: nothing open to abort
    txns = _transactions(producer)
    try:
        assert isinstance(txns.recreate(UNKNOWN_COMMIT), _Failing)
        assert producer.calls == ["abort", "purge"] and txns.recreations == 1
    finally:
        txns.close()


def test_recreate_stops_when_the_old_producer_is_fenced() -> None:
    producer = _Failing()
    producer.aborts = [_error(KafkaError.PRODUCER_FENCED, fatal=True)]
    txns = _transactions(producer)
    try:
        with pytest.raises(TransactionFailed) as failed:
            txns.recreate(
                UNKNOWN_COMMIT
            )  # a new producer would fence the newer holder of the ID in turn
        assert failed.value.failure is Failure.FENCED
        assert txns.producer is producer and txns.recreations == 0
    finally:
        txns.close()


def test_recreate_stops_after_too_many_producers_in_a_row_without_a_commit() -> None:
    txns = _transactions(_Failing())
    try:
        for _ in range(MAX_RECREATIONS_IN_A_ROW):
            txns.recreate(UNKNOWN_COMMIT)
        assert _end_one(txns) == 7  # a commit: the count starts again
        for _ in range(MAX_RECREATIONS_IN_A_ROW):
            txns.recreate(UNKNOWN_COMMIT)
        with pytest.raises(KafkaException) as stopped:
            txns.recreate(UNKNOWN_COMMIT)
        assert stopped.value is UNKNOWN_COMMIT.cause
        assert txns.recreations == 2 * MAX_RECREATIONS_IN_A_ROW
    finally:
        txns.close()


FENCED = TransactionFailed(Call.COMMIT, KafkaException(_error(KafkaError._FENCED, fatal=True)))


def test_a_transaction_fenced_after_outliving_its_timeout_gets_a_new_producer() -> None:
    producer = _Failing()
    txns = _transactions(producer)
    try:
        txns.begin()
        txns.began -= 11  # open 11 s: the coordinator aborted it at 10 s and bumped the epoch

        assert txns.recover(FENCED, 10_000, "p-wp-w1") == "timed_out"

        assert producer.calls == ["purge"]  # a fenced producer can abort nothing
        assert txns.producer is not producer and txns.replaced_because == "fenced"
        assert _end_one(txns) == 7
    finally:
        txns.close()


def test_a_young_transaction_fenced_stops_the_processor() -> None:
    producer = _Failing()
    txns = _transactions(producer)
    try:
        txns.begin()  # just began: another process with this instance ID fenced it

        with pytest.raises(KafkaException) as stopped:
            txns.recover(FENCED, 10_000, "p-wp-w1")

        assert stopped.value is FENCED.cause
        assert txns.producer is producer and txns.recreations == 0
    finally:
        txns.close()


def test_an_abort_that_finds_the_producer_fenced_after_a_long_pause_replaces_it() -> None:
    producer = _Failing()
    producer.aborts = [_error(KafkaError._FENCED, fatal=True)]
    txns = _transactions(producer)
    abortable = TransactionFailed(Call.COMMIT, KafkaException(ABORTABLE))
    try:
        txns.begin()
        txns.began -= 30

        assert txns.recover(abortable, 10_000, "p-wp-w1") == "aborted"

        assert producer.calls == ["abort", "purge"] and txns.replaced_because == "fenced"
    finally:
        txns.close()


def test_an_unknown_commit_whose_abort_finds_the_producer_fenced_by_a_timeout_replaces_it() -> None:
    producer = _Failing()
    producer.aborts = [_error(KafkaError._FENCED, fatal=True)]
    txns = _transactions(producer)
    try:
        txns.begin()
        txns.began -= 9.5  # its records timed out (message.timeout.ms = 9 s): so did it

        assert txns.recover(UNKNOWN_COMMIT, 10_000, "p-wp-w1") == "unknown"

        assert producer.calls == ["abort", "purge"] and txns.replaced_because == "fenced"
        assert _end_one(txns) == 7
    finally:
        txns.close()
