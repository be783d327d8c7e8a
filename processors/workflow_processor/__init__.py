"""The workflow processor: the Kafka shell around the pure run core.

- `processor`: `WorkflowProcessor`, the consume → run → write loop and its rebalances;
- `reader`: the consumer of `commands`: read, rewound, made again when a partition stalls;
- `offsets`: which consumed offsets the next transaction commits (deferred, fencing);
- `intake`: a command's record checked before it runs (key, partition, decoding);
- `breaker`: a command that keeps killing the process is dead-lettered, not run again;
- `local_activities`: the pool that runs local activities inside the processor;
- `batch`: one batch of commands and due timers, run against the cached runs;
- `transactions`: one Kafka transaction per batch, ended on a commit thread;
- `output`: produces a batch's effects (history, tasks, timers, snapshots, replies);
- `restore`: rebuilds a partition from snapshots, timers and the history tail;
- `run_cache`: the loaded runs of a partition with their storage bookkeeping;
- `timer_heap`: due timers in time order;
- `stats`: the processor's counters, timings, and the tally its metrics read;
- `status`: the worker's status records for `everflow workers`.

May import: `confluent_kafka`, `streams.kafka`, `streams.wire`, `streams.settings`,
`processors.run`, `processors.workflow_code`, `processors.tally`. Never a composition root.
"""
