"""The `bad_input` fixture, and the table printed at the end of the session."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.bad_inputs.table import ROWS, Outcome, Row
from tests.integration.workers import worker_env, workers

__all__ = ["bad_input", "worker_env", "workers"]

Report = Callable[[int, str, Outcome, str], None]


@pytest.fixture
def bad_input(request: pytest.FixtureRequest) -> Report:
    """Call it once the test has asserted the outcome: `bad_input(number, kind, outcome,
    reason_text)` adds the row to the session's bad-input table."""

    def report(number: int, kind: str, outcome: Outcome, reason: str) -> None:
        ROWS.append(Row(number, kind, outcome, reason, request.node.nodeid))

    return report
