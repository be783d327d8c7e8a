"""What the command groups share: the connection flags (defined here once), the
`KafkaConfig` they give, a client handle on one run, the exit codes scripts can rely on, and
`add_group`/`add_subparser`, so every group and command lists and describes itself the same
way."""

from __future__ import annotations

import argparse
import asyncio
import functools
import logging
import signal
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from types import FrameType
from typing import TypeAlias

from confluent_kafka import KafkaException

from streams.client import Client, WorkflowHandle
from streams.errors import (
    BrokerError,
    RPCTimeoutError,
    VisibilityUnavailableError,
    WorkflowNotFoundError,
)
from streams.kafka.config import KafkaConfig
from streams.kafka.logs import LOGGER as LIBRDKAFKA_LOGGER

Action: TypeAlias = Callable[[argparse.Namespace], int]
"""What a subparser's `run` default is: the parsed arguments in, the exit code out."""

SubParsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"

EXIT_OK = 0
EXIT_FAILED = 1  # the run failed / was canceled / terminated / timed out, a batch had failures
EXIT_USAGE = 2  # argparse's own code; also: a batch matched runs but --yes was not given
EXIT_NOT_FOUND = 3
EXIT_UNREACHABLE = 4  # the broker, a worker or the run index did not answer

EXIT_CODES = """\
exit codes:
  0  done
  1  the run failed, was canceled, terminated or timed out; a batch had failures; any other error
  2  usage error; a batch matched runs but --yes was not given (nothing was done)
  3  no such workflow or run
  4  the broker, a worker or the run index cannot be reached or did not answer in time"""
"""The epilog block every `workflow` command's --help ends with."""

UNREACHABLE: tuple[type[BaseException], ...] = (
    BrokerError,
    RPCTimeoutError,
    KafkaException,
    VisibilityUnavailableError,
)
"""Errors meaning "could not reach it", exit code 4."""


def exit_code(error: BaseException) -> int:
    """The exit code of a command that raised `error` (see EXIT_CODES)."""
    if isinstance(error, WorkflowNotFoundError):
        return EXIT_NOT_FOUND
    if isinstance(error, UNREACHABLE):
        return EXIT_UNREACHABLE
    return EXIT_FAILED  # WorkflowFailureError (the run did not complete) among them


def add_subparser(
    subparsers: SubParsers, name: str, summary: str, description: str | None = None
) -> argparse.ArgumentParser:
    """A parser for `name`, with `summary` as its line in the parent's help and, as a
    sentence (or `description`), as its own `--help` description."""
    return subparsers.add_parser(
        name, help=summary, description=description or f"{summary[0].upper()}{summary[1:]}."
    )


def add_group(
    subparsers: SubParsers, name: str, summary: str, description: str | None = None
) -> SubParsers:
    """A command group `name` (`everflow <name> COMMAND …`); its subcommands go on the
    subparsers returned."""
    group = add_subparser(subparsers, name, summary, description)
    return group.add_subparsers(title=f"{name} commands", metavar="COMMAND", required=True)


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
"""What `--log-level` accepts (in any case)."""


def add_log_level_argument(parser: argparse.ArgumentParser, default: str | None) -> None:
    """`--log-level LEVEL`; a subcommand's (default None) keeps the top-level one's value
    unless given (argparse would otherwise overwrite it with the subcommand's default)."""
    parser.add_argument(
        "--log-level",
        type=str.upper,
        choices=LOG_LEVELS,
        default=argparse.SUPPRESS if default is None else default,
        metavar="LEVEL",
        help="what to log to stderr: debug (librdkafka's own lines too), info, warning, "
        "error (default: info)",
    )


def configure_logging(level: str) -> None:
    """Log records of `level` (a name of LOG_LEVELS) and above to stderr, one line each;
    librdkafka's own lines only at DEBUG: they tell of its connections and retries, which
    it handles itself (what a command must act on reaches it as an error)."""
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger().setLevel(level)  # also when a handler was there already
    LIBRDKAFKA_LOGGER.setLevel(logging.DEBUG if level == "DEBUG" else logging.CRITICAL)


def add_connection_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of every command that talks to Kafka; unset, they fall back to the
    `EVERFLOW_*` environment variables (see `KafkaConfig.from_env`)."""
    parser.add_argument(
        "--bootstrap",
        "--address",
        dest="bootstrap",
        help="Kafka bootstrap servers (EVERFLOW_BOOTSTRAP)",
    )
    parser.add_argument(
        "--topic-prefix",
        "-n",
        "--namespace",
        dest="topic_prefix",
        help="topic prefix: the deployment's namespace (EVERFLOW_TOPIC_PREFIX)",
    )
    parser.add_argument("--partitions", type=int, help="partitions (EVERFLOW_PARTITIONS)")
    parser.add_argument(
        "--replication-factor", type=int, help="replication (EVERFLOW_REPLICATION_FACTOR)"
    )


def add_visibility_argument(parser: argparse.ArgumentParser) -> None:
    """The `--visibility URL` flag: the run index's store."""
    parser.add_argument(
        "--visibility",
        metavar="URL",
        help="the run index's store: sqlite:///path, a file path, or postgresql://user@host/db"
        " (EVERFLOW_VISIBILITY; default: a SQLite file per topic prefix under"
        " EVERFLOW_DATA_DIR, else ~/.cache/everflow)",
    )


def kafka_config(args: argparse.Namespace) -> KafkaConfig:
    """The `KafkaConfig` of the connection flags, the environment filling the gaps."""
    return KafkaConfig.from_env(
        bootstrap=args.bootstrap,
        topic_prefix=args.topic_prefix,
        partitions=args.partitions,
        replication_factor=args.replication_factor,
    )


@asynccontextmanager
async def connected(
    args: argparse.Namespace, create_topics: bool | None = False
) -> AsyncIterator[Client]:
    """A client connected by the connection flags, closed on the way out.

    It makes missing topics only when asked (`create_topics`, None: EVERFLOW_CREATE_TOPICS,
    as `Client`): a command that reads, given a mistyped prefix, must not make a topic set
    under it; it says the topics do not exist."""
    made = functools.partial(Client, kafka_config(args), create_topics=create_topics)
    client = await asyncio.to_thread(made)
    try:
        yield client
    finally:
        await asyncio.to_thread(client.close)


def on_run(
    args: argparse.Namespace,
    run_id: str | None,
    action: Callable[[WorkflowHandle], Awaitable[None]],
) -> int:
    """Run `action` on the handle of `args.workflow_id` (run `run_id`, or its current run)
    with a client connected by the flags; closes the client after. Returns exit code 0."""

    async def main() -> None:
        made = functools.partial(Client, kafka_config(args), create_topics=False)
        client = await asyncio.to_thread(made)  # a run that exists has its topics
        try:
            await action(client.get_workflow_handle(args.workflow_id, run_id))
        finally:
            client.close()

    asyncio.run(main())
    return 0


@contextmanager
def caught_signals() -> Iterator[threading.Event]:
    """SIGINT and SIGTERM set the event yielded instead of stopping the process (the previous
    handlers come back after). Enter it before telling anyone the process is ready, so a
    signal sent at once is not lost."""
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def wait_for_signal(alive: Callable[[], bool], stop: threading.Event | None = None) -> bool:
    """Block until SIGINT or SIGTERM (True) or until `alive()` turns false (False); `stop`
    is the event of a `caught_signals()` already entered."""
    if stop is None:
        with caught_signals() as caught:
            return wait_for_signal(alive, caught)
    while not stop.wait(0.5):
        if not alive():
            return False
    return True
