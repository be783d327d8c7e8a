"""librdkafka settings for the downstream examples, from the environment.

Everflow's own processes pass every `EVERFLOW_KAFKA_<NAME>` variable to librdkafka as
`<name>` with `_` as `.` (`EVERFLOW_KAFKA_SECURITY_PROTOCOL=SASL_SSL` is
`security.protocol=SASL_SSL`); the examples follow the same variables, so one environment
reaches a secured cluster from workers, clients and these consumers alike.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from confluent_kafka import KafkaError, KafkaException, Message

PREFIX = "EVERFLOW_KAFKA_"
# refusals that asking again will not cure: say so instead of waiting forever
_REFUSALS = {
    KafkaError._AUTHENTICATION,
    KafkaError.SASL_AUTHENTICATION_FAILED,
    KafkaError.TOPIC_AUTHORIZATION_FAILED,
    KafkaError.GROUP_AUTHORIZATION_FAILED,
}


def passthrough(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The librdkafka settings the `EVERFLOW_KAFKA_*` variables of `env` give."""
    env = os.environ if env is None else env
    return {
        name[len(PREFIX) :].lower().replace("_", "."): value
        for name, value in env.items()
        if name.startswith(PREFIX) and name != "EVERFLOW_KAFKA_CACHE"
    }


def check(msg: Message) -> bool:
    """Whether `msg` holds a record; raises KafkaException for a refusal or a fatal error
    (bad credentials, a denied topic or group), which would otherwise repeat silently."""
    error = msg.error()
    if error is None:
        return True
    if error.fatal() or error.code() in _REFUSALS:
        raise KafkaException(error)
    return False
