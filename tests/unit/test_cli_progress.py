"""The progress line of long commands: rewritten in place on a terminal, a line every few
seconds elsewhere, nothing at all for a command done within the first interval."""

from __future__ import annotations

import io

from streams.cli.progress import LOG_EVERY, TERMINAL_EVERY, Progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_command_done_within_the_first_interval_writes_nothing() -> None:
    for stream in (io.StringIO(), Terminal()):
        clock = Clock()
        with Progress(stream, clock) as progress:
            for n in range(1000):
                clock.now = n * TERMINAL_EVERY / 1000
                progress(f"{n} events")
        assert stream.getvalue() == ""


def test_elsewhere_a_whole_line_every_interval() -> None:
    stream, clock = io.StringIO(), Clock()
    with Progress(stream, clock) as progress:
        for second in range(int(3 * LOG_EVERY) + 1):
            clock.now = float(second)
            progress(f"{second} s in")
    assert stream.getvalue().splitlines() == [
        f"{int(LOG_EVERY)} s in",
        f"{int(2 * LOG_EVERY)} s in",
        f"{int(3 * LOG_EVERY)} s in",
    ]


def test_on_a_terminal_the_line_is_rewritten_in_place_and_ended_when_done() -> None:
    stream, clock = Terminal(), Clock()
    with Progress(stream, clock) as progress:
        clock.now = TERMINAL_EVERY
        progress("1,000 events read")
        clock.now += TERMINAL_EVERY / 2
        progress("not yet due")
        clock.now += TERMINAL_EVERY
        progress("done: 9")  # shorter: the rest of the longer line is blanked
    assert stream.getvalue() == "\r1,000 events read" + "\r" + "done: 9".ljust(17) + "\n"
