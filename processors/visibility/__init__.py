"""The run index's write side: history events folded into the index's rows.

- `fold`: one history event into the row of its run (pure; the event-ID guard);
- `projector`: the Kafka loop — consume `history` (read_committed), fold a batch, write its
  rows and the consumed offsets in one SQL transaction; rebuild with progress; lag.

May import: `confluent_kafka`, `streams.kafka`, `streams.wire`, `streams.visibility`,
`streams.settings`. Never a composition root. `fold` never imports Kafka.
"""
