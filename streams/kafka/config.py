"""Connection settings: built from keyword arguments or `EVERFLOW_*` environment variables.

Any librdkafka setting passes through: as `kafka={"security.protocol": "SASL_SSL", ...}` or
as environment variables `EVERFLOW_KAFKA_<NAME>` where `_` stands for `.`
(`EVERFLOW_KAFKA_SASL_MECHANISM=PLAIN` → `sasl.mechanism=PLAIN`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from streams.errors import ConfigError
from streams.payload import DEFAULT_MAX_PAYLOAD_BYTES

DEFAULT_PREFIX = "everflow."
DEFAULT_PARTITIONS = 8

# How long a client waits for a broker's answer, and for a connection to one. librdkafka's
# defaults are 60 s and 30 s. A broker cut off by the network drops packets and sends no
# reset, so every request queued on it waits that long; the client learns that the cluster
# moved the partitions' leaders (after the broker's 9 s session) only when they time out.
# On the fault lab's `broker-cut`, a worker's restore asked the cut broker for an end offset
# and waited until the cut healed; with 10 s it asks the new leader soon after the move.
# 10 s is also the Java client's connection set-up timeout. Requests that wait on purpose
# (a group's JoinGroup) have their own timeouts; a user's settings (`kafka=`,
# EVERFLOW_KAFKA_SOCKET_TIMEOUT_MS) still win.
NETWORK_TIMEOUTS: Mapping[str, int] = {
    "socket.timeout.ms": 10_000,
    "socket.connection.setup.timeout.ms": 10_000,
}


@dataclass(frozen=True, slots=True)
class KafkaConfig:
    """Where the cluster is and how Everflow's topics are laid out on it."""

    bootstrap: str
    topic_prefix: str = DEFAULT_PREFIX
    partitions: int = DEFAULT_PARTITIONS
    replication_factor: int = 1
    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES
    kafka: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.bootstrap:
            raise ConfigError("bootstrap is empty: set EVERFLOW_BOOTSTRAP or pass bootstrap=")
        if self.partitions < 1:
            raise ConfigError(
                f"partitions must be >= 1 (EVERFLOW_PARTITIONS), got {self.partitions}"
            )
        if self.replication_factor < 1:
            raise ConfigError(
                "replication_factor must be >= 1 (EVERFLOW_REPLICATION_FACTOR), "
                f"got {self.replication_factor}"
            )
        if self.max_payload_bytes < 1024:
            raise ConfigError(
                "max_payload_bytes must be >= 1024 (EVERFLOW_MAX_PAYLOAD_BYTES), "
                f"got {self.max_payload_bytes}"
            )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> KafkaConfig:
        """Settings from `EVERFLOW_*` variables, then keyword overrides on top."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        if "EVERFLOW_BOOTSTRAP" in env:
            values["bootstrap"] = env["EVERFLOW_BOOTSTRAP"]
        if "EVERFLOW_TOPIC_PREFIX" in env:
            values["topic_prefix"] = env["EVERFLOW_TOPIC_PREFIX"]
        for key, name in (
            ("partitions", "EVERFLOW_PARTITIONS"),
            ("replication_factor", "EVERFLOW_REPLICATION_FACTOR"),
            ("max_payload_bytes", "EVERFLOW_MAX_PAYLOAD_BYTES"),
        ):
            if name in env:
                values[key] = _int_setting(name, env[name])
        kafka = {
            name[len("EVERFLOW_KAFKA_") :].lower().replace("_", "."): value
            for name, value in env.items()
            if name.startswith("EVERFLOW_KAFKA_") and name != "EVERFLOW_KAFKA_CACHE"
        }
        kafka.update(overrides.pop("kafka", None) or {})
        values.update({k: v for k, v in overrides.items() if v is not None})
        if "bootstrap" not in values:
            raise ConfigError("no Kafka cluster given: set EVERFLOW_BOOTSTRAP or pass bootstrap=")
        return cls(kafka=kafka, **values)

    def with_prefix(self, prefix: str) -> KafkaConfig:
        """The same cluster with another topic prefix (tests give each test its own)."""
        return replace(self, topic_prefix=prefix)

    @property
    def principal(self) -> str | None:
        """The SASL user this configuration connects as (`sasl.username`), if any."""
        user = self.kafka.get("sasl.username")
        return str(user) if user else None

    def client_settings(self, **settings: Any) -> dict[str, Any]:
        """librdkafka settings: the network timeouts (`NETWORK_TIMEOUTS`), ours, then the
        user's pass-through ones on top."""
        merged: dict[str, Any] = {"bootstrap.servers": self.bootstrap, **NETWORK_TIMEOUTS}
        merged.update(settings)
        merged.update(self.kafka)
        return merged


def topic_prefix_from_env(env: Mapping[str, str] | None = None) -> str:
    """EVERFLOW_TOPIC_PREFIX, else the default prefix (no cluster needed to know it)."""
    env = os.environ if env is None else env
    return env.get("EVERFLOW_TOPIC_PREFIX") or DEFAULT_PREFIX


def _int_setting(name: str, raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}") from None
