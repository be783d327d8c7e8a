"""A worker waits out a cluster it cannot reach: the processor's restore, its producer's
init_transactions and the run index projector try again instead of stopping the worker; a
refusal still stops them, and so does the worker's stop."""

from __future__ import annotations

import socket
import threading
from types import SimpleNamespace
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException

from processors.workflow_processor import restore as module
from processors.workflow_processor import transactions
from processors.workflow_processor.restore import restore_through_outages
from streams.errors import BrokerError, KafkaAuthorizationError
from streams.worker import project_through_outages


def _restore(ids: list[int], stop: threading.Event | None = None) -> Any:
    return restore_through_outages(None, None, ids, None, stop)  # type: ignore[arg-type]


def _failing(errors: list[Exception], result: Any) -> Any:
    calls: list[list[int]] = []

    def restore(config: Any, wire: Any, ids: list[int], registry: Any) -> Any:
        calls.append(ids)
        if errors:
            raise errors.pop(0)
        return result

    restore.calls = calls  # type: ignore[attr-defined]
    return restore


def test_a_restore_that_meets_an_unreachable_cluster_is_tried_again_with_growing_pauses(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    timeout = KafkaException(KafkaError(KafkaError._TIMED_OUT, "Failed to get metadata"))
    errors: list[Exception] = [timeout, BrokerError("reading x failed"), timeout]
    restore = _failing(errors, {"restored": True})
    pauses: list[float] = []
    monkeypatch.setattr(module, "restore_partitions", restore)
    monkeypatch.setattr(module.time, "sleep", pauses.append)

    out = _restore([0, 1])

    assert out == {"restored": True}
    assert restore.calls == [[0, 1]] * 4
    assert pauses == [1.0, 2.0, 4.0]
    assert "restoring partitions [0, 1] failed, trying again in 1 s" in caplog.text


def test_a_refused_restore_stops_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    denied = KafkaAuthorizationError("topic p.history: READ denied")
    monkeypatch.setattr(module, "restore_partitions", _failing([denied], {}))
    monkeypatch.setattr(module.time, "sleep", lambda s: pytest.fail("no retry expected"))

    with pytest.raises(KafkaAuthorizationError):
        _restore([0])


def test_a_restore_failing_while_the_worker_stops_is_not_tried_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stop = threading.Event()
    stop.set()
    monkeypatch.setattr(module, "restore_partitions", _failing([BrokerError("down")], {}))

    with pytest.raises(BrokerError, match="down"):
        _restore([0], stop)


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

    with pytest.raises(KafkaException) as raised:
        transactions.init_transactions(_unreachable_producer(), "outage", keep_trying=keep_trying)

    assert raised.value.args[0].code() == KafkaError._TIMED_OUT
    # five timeouts waited out, then INIT_TRIES counted ones once the worker stops
    assert asked == [True] * 5 + [False] * transactions.INIT_TRIES


def test_init_transactions_without_keep_trying_gives_up_after_its_tries(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(transactions, "INIT_TIMEOUT", 0.3)

    with pytest.raises(KafkaException):
        transactions.init_transactions(_unreachable_producer(), "outage")

    tries = [r for r in caplog.records if "init_transactions failed" in r.getMessage()]
    assert len(tries) == transactions.INIT_TRIES - 1  # the last failure is raised, not logged
