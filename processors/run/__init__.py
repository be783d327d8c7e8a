"""The pure run core: history in, state and effects out.

`Run` (state.py) is one run's state, the fold of its history; `commands.py` has one handler
per command type that advances a run and says what to write (`Effects`). Activities,
children, timers, history limits and repair are objects the run owns.

May import: `streams.wire`, `streams.payload`, `streams.errors`, `streams.retry`,
`processors.workflow_code`. Never `confluent_kafka`, `streams.kafka`, a clock or a thread:
`now` comes in as a parameter.
"""
