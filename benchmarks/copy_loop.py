"""The ceiling: a bare transactional consume-transform-produce copy loop in Python.

Copies N messages from one topic to another, one Kafka transaction per batch, with the
consumed offsets in the transaction (exactly the processor's pattern, minus the workflow
work). Prints messages/s for several batch sizes. Every later benchmark compares to it.

    python -m benchmarks.copy_loop [--messages 50000] [--batches 1,10,100,500]
"""

from __future__ import annotations

import argparse
import time
import uuid

from confluent_kafka import TopicPartition

from streams import kafka
from streams.dev.broker import provision_broker
from streams.kafka.config import KafkaConfig
from streams.kafka.topics import TopicSpec, ensure_topics


def copy_loop(config: KafkaConfig, source: str, sink: str, total: int, batch: int) -> float:
    consumer = kafka.consumer(
        config, f"copy-{uuid.uuid4().hex[:6]}", settings={"fetch.wait.max.ms": 5}
    )
    consumer.subscribe([source])
    producer = kafka.transactional_producer(config, f"copy-{uuid.uuid4().hex[:6]}")
    producer.init_transactions(30)
    copied, started = 0, None
    while copied < total:
        messages = kafka.consume_batch(consumer, batch, 1.0)
        if not messages:
            continue
        started = started or time.perf_counter()
        producer.begin_transaction()
        offsets: dict[int, int] = {}
        for m in messages:
            producer.produce(sink, m.value(), m.key(), partition=m.partition())
            offsets[m.partition()] = m.offset() + 1
        producer.send_offsets_to_transaction(
            [TopicPartition(source, p, o) for p, o in offsets.items()],
            consumer.consumer_group_metadata(),
            30,
        )
        producer.commit_transaction(30)
        copied += len(messages)
    elapsed = time.perf_counter() - (started or time.perf_counter())
    consumer.close()
    return copied / elapsed if elapsed else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=50000)
    parser.add_argument("--batches", default="1,10,100,500")
    parser.add_argument("--partitions", type=int, default=4)
    args = parser.parse_args()
    with provision_broker() as bootstrap:
        config = KafkaConfig(
            bootstrap=bootstrap,
            topic_prefix=f"bench-{uuid.uuid4().hex[:6]}.",
            partitions=args.partitions,
        )
        rows = []
        for batch in [int(b) for b in args.batches.split(",")]:
            total = min(args.messages, batch * 400)
            source, sink = f"{config.topic_prefix}src-{batch}", f"{config.topic_prefix}dst-{batch}"
            ensure_topics(
                kafka.admin(config),
                [TopicSpec(source, args.partitions, 1), TopicSpec(sink, args.partitions, 1)],
            )
            producer = kafka.producer(config)
            payload = b"x" * 200
            for i in range(total):
                producer.produce(source, payload, f"wf-{i}".encode())
                if i % 10000 == 0:
                    producer.poll(0)
            producer.flush(60)
            rate = copy_loop(config, source, sink, total, batch)
            rows.append((batch, total, rate))
        print(
            f"bare transactional copy loop — {args.partitions} partitions, 200-byte values, "
            f"broker {bootstrap}"
        )
        print(f"{'batch':>6} {'messages':>9} {'msg/s':>10} {'txn/s':>8}")
        for batch, total, rate in rows:
            print(f"{batch:>6} {total:>9} {rate:>10.0f} {rate / batch:>8.1f}")


if __name__ == "__main__":
    main()
