"""The activity runner: consume `tasks.<queue>`, run activities, report results on `commands`.

`runner` holds `ActivityRunner` (consume, start, heartbeat, report, cancel); `attempt` one
running attempt of an activity with its context. An unreadable task goes to dead letters.

May import: `confluent_kafka`, `streams.kafka`, `streams.wire`, `streams.activity`,
`processors.workflow_code.registry`, `processors.tally`. Never `processors.run` or the
workflow processor.
"""
