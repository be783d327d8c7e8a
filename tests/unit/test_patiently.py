"""Asking a briefly unreachable cluster again: transient errors are retried, others not."""

import pytest
from confluent_kafka import KafkaError, KafkaException

from streams import kafka

TIMED_OUT = KafkaException(KafkaError(KafkaError._TIMED_OUT, "Failed to get committed offsets"))
UNKNOWN_MEMBER = KafkaException(KafkaError(KafkaError.UNKNOWN_MEMBER_ID, "not retriable"))


class Failing:
    """A call that raises the given errors, one per call, then answers 42."""

    def __init__(self, *errors: KafkaException) -> None:
        self.errors = list(errors)
        self.calls = 0

    def __call__(self) -> int:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return 42


def test_a_timeout_is_asked_again_until_the_answer_comes() -> None:
    call = Failing(TIMED_OUT, TIMED_OUT)

    assert kafka.patiently(call, "offsets", patience=10) == 42
    assert call.calls == 3


def test_an_error_that_is_not_transient_is_raised_at_once() -> None:
    call = Failing(UNKNOWN_MEMBER)

    with pytest.raises(KafkaException) as raised:
        kafka.patiently(call, "offsets", patience=10)

    assert raised.value is UNKNOWN_MEMBER and call.calls == 1


def test_patience_runs_out() -> None:
    call = Failing(*[TIMED_OUT] * 10)

    with pytest.raises(KafkaException) as raised:
        kafka.patiently(call, "offsets", patience=0.4)

    assert raised.value is TIMED_OUT and call.calls < 10
