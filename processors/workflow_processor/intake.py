"""A record read from `commands`, checked before any run sees it: decoded whole, keyed by
its workflow ID and on the partition that ID hashes to. Anything else is poison: the
processor dead-letters it with the reason given here (in the transaction that moves the
offset past it), and the partition goes on.

Why the key matters: the key decides the partition, and the partition decides which
processor owns a workflow's run. A command keyed by anything but its workflow ID, or placed
by another partitioner, would reach a processor that does not own the run: it would start a
second run of the ID, or answer "not found" for one that exists. Re-keying it is no cure
either (its order against the workflow's other commands is lost), so it is refused.
"""

from __future__ import annotations

from dataclasses import dataclass

from streams.errors import PayloadDecodeError
from streams.kafka.clients import partition_for
from streams.wire.avro import AvroCodec
from streams.wire.commands import Command


@dataclass(frozen=True, slots=True)
class Poison:
    """Why a record cannot be used: `code` (a short word, for metrics) and the reason."""

    code: str
    reason: str


def check_command(
    codec: AvroCodec,
    key: bytes | None,
    value: bytes | None,
    topic: str,
    partition: int,
    offset: int,
    partitions: int,
) -> Command | Poison | None:
    """The command in a `commands` record, the reason it is poison, or None for a tombstone
    (a record without a value carries no command: nothing to do, nothing to dead-letter)."""
    if value is None:
        return None
    try:
        command: Command = codec.decode(value)
    except PayloadDecodeError as e:
        return Poison("undecodable", str(e.at(topic, partition, offset)))
    where = f"{topic}[{partition}]@{offset}"
    workflow_id = command.workflow_id
    if key is None:
        return Poison(
            "null_key",
            f"command at {where} for workflow {workflow_id!r} has no key; commands must be "
            "keyed by their workflow ID (it picks the partition that owns the run)",
        )
    if key != workflow_id.encode():
        shown = key.decode(errors="backslashreplace")
        return Poison(
            "key_mismatch",
            f"command at {where} is keyed {shown!r} but is for workflow {workflow_id!r}; "
            "commands must be keyed by their workflow ID (it picks the partition that "
            "owns the run)",
        )
    expected = partition_for(workflow_id, partitions)
    if expected != partition:
        return Poison(
            "wrong_partition",
            f"command at {where} for workflow {workflow_id!r} belongs on partition "
            f"{expected} (murmur2 of its key, as Kafka's Java client places it); produce "
            "commands with the murmur2 partitioner or let Everflow's client send them",
        )
    return command
