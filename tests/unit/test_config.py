"""Settings from arguments and EVERFLOW_* variables, validated with messages naming them."""

from __future__ import annotations

import pytest

from streams.errors import ConfigError
from streams.kafka.clients import partition_for
from streams.kafka.config import KafkaConfig
from streams.retry import RetryPolicy


def test_environment_settings_and_librdkafka_pass_through() -> None:
    config = KafkaConfig.from_env(
        {
            "EVERFLOW_BOOTSTRAP": "k1:9092,k2:9092",
            "EVERFLOW_TOPIC_PREFIX": "prod.",
            "EVERFLOW_PARTITIONS": "32",
            "EVERFLOW_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "EVERFLOW_KAFKA_SASL_MECHANISM": "PLAIN",
        }
    )
    assert (config.bootstrap, config.topic_prefix, config.partitions) == (
        "k1:9092,k2:9092",
        "prod.",
        32,
    )
    settings = config.client_settings(**{"acks": "all"})
    assert settings["security.protocol"] == "SASL_SSL" and settings["sasl.mechanism"] == "PLAIN"
    assert settings["acks"] == "all" and settings["bootstrap.servers"] == "k1:9092,k2:9092"


def test_clients_give_up_on_a_silent_broker_after_ten_seconds_unless_told_otherwise() -> None:
    settings = KafkaConfig(bootstrap="k:1").client_settings()
    assert settings["socket.timeout.ms"] == 10_000
    assert settings["socket.connection.setup.timeout.ms"] == 10_000
    # a call site may ask for its own, and the user's pass-through settings win over both
    asked = KafkaConfig(bootstrap="k:1").client_settings(**{"socket.timeout.ms": 5000})
    assert asked["socket.timeout.ms"] == 5000
    config = KafkaConfig.from_env(
        {"EVERFLOW_BOOTSTRAP": "k:1", "EVERFLOW_KAFKA_SOCKET_TIMEOUT_MS": "60000"}
    )
    assert config.client_settings(**{"socket.timeout.ms": 5000})["socket.timeout.ms"] == "60000"


def test_keyword_arguments_win_over_the_environment() -> None:
    config = KafkaConfig.from_env({"EVERFLOW_BOOTSTRAP": "env:1"}, bootstrap="arg:2", partitions=3)
    assert config.bootstrap == "arg:2" and config.partitions == 3


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "EVERFLOW_BOOTSTRAP"),
        ({"EVERFLOW_BOOTSTRAP": "k:1", "EVERFLOW_PARTITIONS": "many"}, "EVERFLOW_PARTITIONS"),
        ({"EVERFLOW_BOOTSTRAP": "k:1", "EVERFLOW_PARTITIONS": "0"}, "partitions must be >= 1"),
        (
            {"EVERFLOW_BOOTSTRAP": "k:1", "EVERFLOW_REPLICATION_FACTOR": "0"},
            "EVERFLOW_REPLICATION_FACTOR",
        ),
    ],
)
def test_invalid_settings_name_the_setting(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        KafkaConfig.from_env(env)


def test_retry_policy_backoff_is_exponential_and_capped() -> None:
    from datetime import timedelta

    policy = RetryPolicy(
        initial_interval=timedelta(seconds=1),
        backoff_coefficient=2,
        maximum_interval=timedelta(seconds=5),
        maximum_attempts=4,
        non_retryable_error_types=["Fatal"],
    )
    assert [policy.backoff(n).total_seconds() for n in (1, 2, 3, 4)] == [1, 2, 4, 5]
    assert policy.allows_retry(3, "Boom", False) and not policy.allows_retry(4, "Boom", False)
    assert not policy.allows_retry(1, "Fatal", False) and not policy.allows_retry(1, "X", True)
    with pytest.raises(ConfigError, match="backoff_coefficient"):
        RetryPolicy(backoff_coefficient=0.5)


def test_partitioner_spreads_workflow_ids_over_all_partitions() -> None:
    # exact agreement with librdkafka's murmur2 partitioner is checked against a broker in
    # tests/integration/test_kafka_io.py
    assert partition_for("", 1) == 0
    spread = {partition_for(f"workflow-{i}", 8) for i in range(200)}
    assert spread == set(range(8))
