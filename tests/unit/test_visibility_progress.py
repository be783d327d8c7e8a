"""A rebuild's progress: a bar on a terminal, a log line per 10% otherwise, done when every
partition reached the end it had at the start (markers included)."""

from __future__ import annotations

import io
import logging

import pytest

from processors.visibility.projector import Progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_on_a_terminal_a_bar_counts_records_up_to_the_total() -> None:
    out = Terminal()
    progress = Progress(starts={0: 0, 1: 10}, ends={0: 100, 1: 110}, out=out)
    assert progress.total == 200
    progress.update({0: 100, 1: 10})
    assert "[###############               ] 100/200 records" in out.getvalue()
    progress.update({0: 100, 1: 110})
    assert "[##############################] 200/200 records" in out.getvalue()
    assert out.getvalue().endswith("/s\n") and progress.done


def test_off_a_terminal_one_log_line_per_tenth(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="processors.visibility.projector")
    progress = Progress(starts={0: 0}, ends={0: 1000}, out=io.StringIO())
    for position in range(0, 1001, 50):
        progress.update({0: position})
    lines = [r.getMessage() for r in caplog.records if "index rebuild " in r.getMessage()]
    assert [line.split("%")[0] for line in lines] == [
        f"index rebuild {p}" for p in range(10, 101, 10)
    ]
    assert any("index rebuilt records=1000" in r.getMessage() for r in caplog.records)


def test_an_empty_history_is_rebuilt_at_once() -> None:
    progress = Progress(starts={0: 5}, ends={0: 5}, out=io.StringIO())
    progress.update({0: 5})
    assert progress.done
