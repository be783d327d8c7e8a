"""Kafka I/O shared by the client, the CLI and the processors.

- `config`: `KafkaConfig`, where the cluster is and how the topics are laid out;
- `topics`: the topic set (names, partitions, compaction), created and verified;
- `clients`: producers, consumers and admin clients with Everflow's settings, the
  Java-compatible partitioner, and read helpers. Its functions are re-exported here, so
  `from streams import kafka; kafka.consumer(config, group)` reads as it is used; a
  cluster's refusal (credentials, TLS, ACLs) becomes a plain error (`refusal`);
- `acls`: the least ACLs each role (worker, client, ui) needs on a secured cluster;
- `stall`: noticing a partition a consumer has silently stopped reading (`StallWatch`);
- `logs`: librdkafka's own log lines through Python logging (`streams.kafka.librdkafka`),
  never raw on stderr;
- `statistics`: the requests a process's clients sent (librdkafka statistics), kept in a
  file when a worker is asked to (`WorkerSettings.kafka_statistics`).

May import: `confluent_kafka`, `streams.errors`. Never the user API, the wire format's
record classes, or `processors`.
"""

from streams.kafka.clients import (
    admin,
    consume_batch,
    consumer,
    dead_letter,
    end_offset,
    fenced_member,
    murmur2,
    partition_for,
    patiently,
    producer,
    read_to_end,
    reader_group,
    refusal,
    static_member,
    through_outages,
    transactional_producer,
    transient,
    where,
)

__all__ = [
    "admin",
    "consume_batch",
    "consumer",
    "dead_letter",
    "end_offset",
    "fenced_member",
    "murmur2",
    "partition_for",
    "patiently",
    "producer",
    "read_to_end",
    "reader_group",
    "refusal",
    "static_member",
    "through_outages",
    "transactional_producer",
    "transient",
    "where",
]
