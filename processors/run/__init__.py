"""The pure run core: history in, state and effects out.

`Run` (state.py) is one run's state, the fold of its history; `commands.py` has one handler
per command type that advances a run and says what to write (`Effects`). Activities,
timers and children are objects the run owns, each seeing the run as a `RunLog`; history
limits and repair are functions of a run. `replay_history` checks recorded histories
against today's code (for `streams.Replayer`).

May import: `streams.wire`, `streams.payload`, `streams.errors`, `streams.retry`,
`processors.workflow_code`. Never `confluent_kafka`, `streams.kafka`, a clock or a thread:
`now` comes in as a parameter.
"""

from processors.run.state import ReplayOutcome, Run, replay_history

__all__ = ["ReplayOutcome", "Run", "replay_history"]
