"""What runs: the engine behind `streams.Worker`, `streams.Replayer` and the CLI.

Read it in this order:
- `workflow_code/`: user workflow code on a deterministic event loop — the engine side of
  `streams._runtime`: instance, loop, determinism guard, handlers, patches, replay matching,
  the registry of workflow and activity definitions;
- `run/`: the pure run core — `Run` folds a history into state and turns a command into new
  events and `Effects` (what one step must write); no Kafka, no clock, no threads;
- `workflow_processor/`: the Kafka shell around the core — consume `commands`, run a batch,
  write history, tasks, timers, snapshots, replies and completions in one transaction,
  restore partitions, cache runs, fire timers, report status;
- `activity_runner/`: consume `tasks.<queue>`, run activities, report results;
- `audit`: per-run invariants of the history topic (pure), driven by `everflow audit`;
- `tally`: the plain aggregates (histograms, counts by label) the engine keeps for metrics,
  updated per batch, close or attempt; `metrics`: a worker's Prometheus endpoint, which
  reads them, and the processor's and runner's counters, at scrape time.

May import: `streams` (wire format, Kafka I/O, user-API definitions), never the composition
roots (`streams.worker`, `streams.replayer`, `streams.cli`). `run/` and `workflow_code/` never
import `confluent_kafka` or `streams.kafka` (pinned by tests/unit/test_layers.py).
"""
