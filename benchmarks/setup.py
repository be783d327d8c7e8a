"""What every benchmark sets up: a fresh topic prefix on the broker, and the environment a
worker process (or the CLI) needs to reach it."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from streams import kafka
from streams.kafka.config import KafkaConfig
from streams.kafka.topics import ensure_topics, topic_specs

ROOT = Path(__file__).resolve().parent.parent


def bench_config(bootstrap: str, partitions: int, *queues: str) -> KafkaConfig:
    """A configuration under a new prefix, with its topics created."""
    config = KafkaConfig.from_env(
        bootstrap=bootstrap, partitions=partitions, topic_prefix=f"bench-{uuid.uuid4().hex[:6]}."
    )
    ensure_topics(kafka.admin(config), topic_specs(config, list(queues)))
    return config


def process_env(config: KafkaConfig, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "EVERFLOW_BOOTSTRAP": config.bootstrap,
        "PYTHONPATH": str(ROOT),
        "EVERFLOW_TOPIC_PREFIX": config.topic_prefix,
        "EVERFLOW_PARTITIONS": str(config.partitions),
        **extra,
    }
