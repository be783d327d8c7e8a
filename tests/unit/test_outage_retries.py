"""A worker waits out a cluster it cannot reach: the processor's restore (through
`through_outages`), its producer's init_transactions and the run index projector try again
instead of stopping the worker; a refusal still stops them, and so does the worker's stop."""

from __future__ import annotations

import socket
import threading
from types import SimpleNamespace
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException

from processors.workflow_processor import transactions
from streams.errors import BrokerError, KafkaAuthorizationError
from streams.kafka import clients, through_outages
from streams.worker import project_through_outages


def _flaky(errors: list[Exception], result: Any) -> Any:
    """A call that raises `errors` one by one, then returns `result`; its calls counted."""

    def call() -> Any:
        call.count += 1  # type: ignore[attr-defined]
        if errors:
            raise errors.pop(0)
        return result

    call.count = 0  # type: ignore[attr-defined]
    return call


class _Stop(threading.Event):
    """A worker's stop event whose pauses are recorded instead of waited; `set_during`
    makes the stop arrive during the pause of that number (1-based)."""

    def __init__(self, set_during: int = 0) -> None:
        super().__init__()
        self.pauses: list[float] = []
        self.set_during = set_during

    def wait(self, timeout: float | None = None) -> bool:
        self.pauses.append(float(timeout or 0))
        if len(self.pauses) == self.set_during:
            self.set()
        return self.is_set()


def test_a_call_that_meets_an_unreachable_cluster_is_made_again_with_growing_pauses(
    caplog: pytest.LogCaptureFixture,
) -> None:
    timeout = KafkaException(KafkaError(KafkaError._TIMED_OUT, "Failed to get metadata"))
    call = _flaky([timeout, BrokerError("reading x failed"), timeout], {"restored": True})
    stop = _Stop()
    retries: list[None] = []

    out = through_outages(
        call, "restoring partitions [0, 1]", stop, on_retry=lambda: retries.append(None)
    )

    assert out == {"restored": True}
    assert call.count == 4
    assert stop.pauses == [1.0, 2.0, 4.0]  # waited on the stop event, so a stop cuts it short
    assert len(retries) == 3
    assert "restoring partitions [0, 1] failed, trying again in 1 s" in caplog.text


def test_a_stop_during_a_pause_ends_it_with_the_last_error() -> None:
    stop = _Stop(set_during=2)
    call = _flaky([BrokerError("down"), BrokerError("still down")] * 3, None)

    with pytest.raises(BrokerError, match="still down"):
        through_outages(call, "reading", stop)

    assert call.count == 2  # not tried again once the worker stops
    assert stop.pauses == [1.0, 2.0]


def test_the_pause_between_tries_stops_growing_at_thirty_seconds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pauses: list[float] = []
    monkeypatch.setattr(clients.time, "sleep", pauses.append)

    through_outages(_flaky([BrokerError("down")] * 7, None), "reading", None)

    assert pauses == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]


def test_a_refusal_is_raised_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(clients.time, "sleep", lambda s: pytest.fail("no retry expected"))
    denied = KafkaAuthorizationError("topic p.history: READ denied")
    acl = KafkaException(KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED, "denied"))

    with pytest.raises(KafkaAuthorizationError):
        through_outages(_flaky([denied], None), "reading", None)
    with pytest.raises(KafkaAuthorizationError):  # librdkafka's refusal, named
        through_outages(_flaky([acl], None), "reading", None)


def test_a_call_failing_while_the_worker_stops_is_not_made_again() -> None:
    stop = threading.Event()
    stop.set()

    with pytest.raises(BrokerError, match="down"):
        through_outages(_flaky([BrokerError("down")], None), "reading", stop)


class _Projector:
    def __init__(self, errors: list[Exception]) -> None:
        self.errors = errors
        self.runs = 0

    def run(self, stop: threading.Event) -> None:
        self.runs += 1
        if self.errors:
            raise self.errors.pop(0)


def test_the_projector_waits_out_broker_errors_and_goes_on() -> None:
    transport = KafkaException(KafkaError(KafkaError._TRANSPORT, "Failed to get metadata"))
    projector = _Projector([transport, BrokerError("topic gone for now")])
    waits: list[float] = []
    stop = SimpleNamespace(is_set=lambda: False, wait=waits.append)

    project_through_outages(projector, stop)  # type: ignore[arg-type]

    assert projector.runs == 3 and waits == [5.0, 5.0]


def test_a_refused_projector_stops_the_worker() -> None:
    projector = _Projector([KafkaAuthorizationError("group p.visibility: READ denied")])
    stop = SimpleNamespace(is_set=lambda: False, wait=lambda s: None)

    with pytest.raises(KafkaAuthorizationError):
        project_through_outages(projector, stop)  # type: ignore[arg-type]


def _unreachable_producer() -> Any:
    from confluent_kafka import Producer

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return Producer(
        {"bootstrap.servers": f"127.0.0.1:{port}", "transactional.id": "outage", "log_level": 0}
    )


def test_init_transactions_waits_out_an_unreachable_cluster_while_asked_to(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(transactions, "INIT_TIMEOUT", 0.3)
    asked: list[bool] = []

    def keep_trying() -> bool:
        asked.append(len(asked) < 5)  # the worker runs for five timeouts, then stops
        return asked[-1]

    waits: list[None] = []

    with pytest.raises(KafkaException) as raised:
        transactions.init_transactions(
            _unreachable_producer(),
            "outage",
            keep_trying=keep_trying,
            on_wait=lambda: waits.append(None),
        )

    assert raised.value.args[0].code() == KafkaError._TIMED_OUT
    # five timeouts waited out, then INIT_TRIES counted ones once the worker stops
    assert asked == [True] * 5 + [False] * transactions.INIT_TRIES
    assert len(waits) == 5  # each waited-out try told (the outage metric counts them)


def test_init_transactions_without_keep_trying_gives_up_after_its_tries(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(transactions, "INIT_TIMEOUT", 0.3)

    with pytest.raises(KafkaException):
        transactions.init_transactions(_unreachable_producer(), "outage")

    tries = [r for r in caplog.records if "init_transactions failed" in r.getMessage()]
    assert len(tries) == transactions.INIT_TRIES - 1  # the last failure is raised, not logged
