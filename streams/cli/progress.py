"""A progress line on stderr for the commands that read a whole topic (`audit`, `replay
--from-kafka`, `payloads gc`), which take seconds to minutes on a long history.

On a terminal the line is rewritten in place, at most once a second, and ended when the
command is done; elsewhere (a log file, a pipe, CI) a full line is written every
`LOG_EVERY` seconds instead, so a long run shows it is alive without flooding the log. A
command done within the first interval writes nothing. Results go to stdout, untouched.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

TERMINAL_EVERY = 1.0  # seconds between two rewrites of the line on a terminal
LOG_EVERY = 10.0  # seconds between two lines elsewhere


class Progress:
    """Says how far a command got: call it with the news as often as convenient (it writes
    only when a line is due), and `close()` it when done (a `with` block does)."""

    def __init__(
        self,
        stream: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = sys.stderr if stream is None else stream
        self.terminal = self.stream.isatty()
        self.every = TERMINAL_EVERY if self.terminal else LOG_EVERY
        self._clock = clock
        self._due = clock() + self.every
        self._width = 0  # of the line on the terminal, to blank what a shorter one leaves

    def due(self) -> bool:
        """Whether a line is due now: a caller in a hot loop asks this before it builds the
        news it would pass."""
        return self._clock() >= self._due

    def __call__(self, news: str) -> None:
        now = self._clock()
        if now < self._due:
            return
        self._due = now + self.every
        if self.terminal:
            self.stream.write("\r" + news.ljust(self._width))
            self._width = len(news)
        else:
            self.stream.write(news + "\n")
        self.stream.flush()

    def close(self) -> None:
        """Ends the line on a terminal (the next output starts on a line of its own)."""
        if self.terminal and self._width:
            self.stream.write("\n")
            self.stream.flush()
            self._width = 0

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
