"""`everflow workers` asks again while a group's coordinator is loading (a fresh broker)."""

from __future__ import annotations

from concurrent.futures import Future
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException

from streams.cli.workers import describe_group
from streams.errors import BrokerError


class Answers:
    """An admin client's describe_consumer_groups, answering from a script of outcomes."""

    def __init__(self, *outcomes: Any) -> None:
        self.outcomes = list(outcomes)
        self.calls = 0

    def describe_consumer_groups(self, groups: list[str], request_timeout: float) -> Any:
        self.calls += 1
        future: Future[Any] = Future()
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, int):
            future.set_exception(KafkaException(KafkaError(outcome)))
        else:
            future.set_result(outcome)
        return {groups[0]: future}


def test_a_loading_coordinator_is_asked_again_until_it_answers() -> None:
    admin = Answers(KafkaError.COORDINATOR_LOAD_IN_PROGRESS, KafkaError.NOT_COORDINATOR, "desc")
    assert describe_group(admin, "g", timeout=5) == "desc"
    assert admin.calls == 3


def test_a_missing_group_is_none_and_a_real_error_is_raised_at_once() -> None:
    assert describe_group(Answers(KafkaError.GROUP_ID_NOT_FOUND), "g", timeout=5) is None
    admin = Answers(KafkaError.GROUP_AUTHORIZATION_FAILED, "desc")
    with pytest.raises(BrokerError, match="cannot describe consumer group g"):
        describe_group(admin, "g", timeout=5)
    assert admin.calls == 1


def test_a_coordinator_that_never_loads_fails_after_the_timeout() -> None:
    admin = Answers(*[KafkaError.COORDINATOR_LOAD_IN_PROGRESS] * 50)
    with pytest.raises(BrokerError, match="COORDINATOR_LOAD_IN_PROGRESS"):
        describe_group(admin, "g", timeout=0.5)
