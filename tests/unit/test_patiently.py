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


class SlowMetadata:
    """An admin client whose metadata lacks a topic for the first `late` answers (a busy
    cluster that has not made a created topic known yet)."""

    def __init__(self, late: int) -> None:
        self.late = late

    def list_topics(self, timeout: float) -> object:
        class Partition:
            leader = 1

        class Topic:
            partitions = {0: Partition()}

        class Metadata:
            topics: dict[str, object] = {}

        self.late -= 1
        if self.late < 0:
            Metadata.topics = {"t.commands": Topic()}
        return Metadata()


def test_a_created_topic_late_in_the_metadata_is_a_transient_timeout_naming_it() -> None:
    from streams.kafka.topics import _wait_for_metadata

    with pytest.raises(KafkaException, match=r"t\.commands") as raised:
        _wait_for_metadata(SlowMetadata(late=10**6), ["t.commands"], timeout=0.2)  # type: ignore[arg-type]
    assert kafka.transient(raised.value)  # ensure_topics asks again, within its patience
    _wait_for_metadata(SlowMetadata(late=3), ["t.commands"], timeout=5)  # type: ignore[arg-type]


class LaggingBroker:
    """An admin client of a cluster where the topics exist, but whose every metadata
    answer after the first `fresh` comes from a broker still behind (one just back after a
    cut): it has not heard of them yet."""

    def __init__(self, specs: list[object], fresh: int) -> None:
        self.specs = {s.name: s for s in specs}  # type: ignore[attr-defined]
        self.fresh = fresh

    def list_topics(self, timeout: float) -> object:
        class Partition:
            leader = 1

        class Topic:
            def __init__(self, count: int) -> None:
                self.partitions = {p: Partition() for p in range(count)}

        class Metadata:
            topics: dict[str, object] = {}

        self.fresh -= 1
        if self.fresh >= 0:
            Metadata.topics = {n: Topic(s.partitions) for n, s in self.specs.items()}
        return Metadata()

    def describe_configs(self, resources: list[object], request_timeout: float) -> object:
        from concurrent.futures import Future

        class Entry:
            def __init__(self, value: str) -> None:
                self.value = value

        out = {}
        for resource in resources:
            answer: Future[object] = Future()
            wanted = self.specs[resource.name].config  # type: ignore[attr-defined]
            answer.set_result({k: Entry(v) for k, v in wanted.items()})
            out[resource] = answer
        return out


def test_topics_seen_whole_are_not_called_missing_by_a_broker_still_behind() -> None:
    from streams.errors import TopicMismatchError
    from streams.kafka.config import KafkaConfig
    from streams.kafka.topics import ensure_topics, topic_specs, verify_topics

    specs = topic_specs(KafkaConfig(bootstrap="k:1", topic_prefix="t."), ["q"])
    # answers 1-3: reachable, all there, all with leaders; from then on a broker behind
    admin = LaggingBroker(specs, fresh=3)
    assert ensure_topics(admin, specs, timeout=1, patience=0) == []  # type: ignore[arg-type]
    # asked on its own, that broker would call every one of them missing
    with pytest.raises(TopicMismatchError, match=r"t\.commands: missing"):
        verify_topics(admin, specs, timeout=1)  # type: ignore[arg-type]
