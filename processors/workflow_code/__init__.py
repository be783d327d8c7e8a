"""User workflow code on a deterministic event loop: the engine side of `streams._runtime`.

`WorkflowInstance` runs a workflow's code one activation at a time on `WorkflowEventLoop`
and turns what the code does into `Decision`s (the records in `decisions`); `replay`
matches them against recorded history; the determinism guard stops wall-clock, random and
I/O calls; `Registry` holds the worker's workflow and activity definitions.

May import: the user API (`streams.workflow`, `streams.activity`, `streams._runtime`),
`streams.wire`, `streams.payload`, `streams.errors`. Never `confluent_kafka`,
`streams.kafka`, or `processors.run` (the run core drives this package, not the reverse).
"""
