"""`everflow topics create`: the topic set of a prefix, created or checked."""

from __future__ import annotations

import argparse

from streams import kafka
from streams.cli.common import (
    SubParsers,
    add_connection_arguments,
    add_group,
    add_subparser,
    kafka_config,
)
from streams.kafka.topics import ensure_topics, topic_specs


def add_parser(subparsers: SubParsers) -> None:
    """Register `topics create`."""
    topic_commands = add_group(subparsers, "topics", "create Everflow's topics")
    create = add_subparser(
        topic_commands,
        "create",
        "create the topic set (idempotent); report topics with wrong settings",
    )
    add_connection_arguments(create)
    create.add_argument("--task-queue", action="append", default=[], help="also tasks.<queue>")
    create.set_defaults(run=topics_create)


def topics_create(args: argparse.Namespace) -> int:
    """`everflow topics create`: one line per topic, created or found with its settings."""
    config = kafka_config(args)
    specs = topic_specs(config, args.task_queue)
    created = set(ensure_topics(kafka.admin(config), specs))
    for spec in specs:
        state = "created" if spec.name in created else "exists, settings match"
        print(f"{spec.name:<50} {spec.partitions:>3} partitions  {state}")
    return 0
