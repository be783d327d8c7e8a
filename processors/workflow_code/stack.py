"""The `__stack_trace` query: where a run's code waits right now.

Read from the run's tasks on its deterministic loop: each pending task's chain of awaiting
coroutines, kept to the frames of user code (not asyncio's, not Everflow's), each shown as
`file:line in function` with its source line. Reading frames runs no workflow code and
records nothing, so the answer is a pure read of the run.
"""

from __future__ import annotations

import asyncio
import linecache
from types import FrameType
from typing import Any

from processors.workflow_code.determinism import is_user_frame

STACK_TRACE_QUERY = "__stack_trace"
"""The built-in query every run answers with `stack_trace()`; no handler is declared."""


def stack_trace(tasks: list[asyncio.Task[Any]]) -> str:
    """Each task's user frames, outermost first (the last line is where it waits), one
    task after another separated by a blank line. Tasks with no user frame left out."""
    stacks = []
    for task in tasks:
        lines = [_frame_text(frame) for frame in awaiting_frames(task) if is_user_frame(frame)]
        if lines:
            stacks.append("\n".join(lines))
    return "\n\n".join(stacks)


def awaiting_frames(task: asyncio.Task[Any]) -> list[FrameType]:
    """The frames of a suspended task, outermost first: its coroutine, the coroutine that
    one awaits, and so on down to the future it waits on. (`Task.get_stack()` stops at the
    first one: a suspended coroutine's frame has no `f_back`.)"""
    frames: list[FrameType] = []
    awaited: Any = task.get_coro()
    while awaited is not None:
        frame = getattr(awaited, "cr_frame", None) or getattr(awaited, "gi_frame", None)
        if frame is None:
            break  # a future, or a finished coroutine
        frames.append(frame)
        awaited = getattr(awaited, "cr_await", None) or getattr(awaited, "gi_yieldfrom", None)
    return frames


def _frame_text(frame: FrameType) -> str:
    code = frame.f_code
    where = f"{code.co_filename}:{frame.f_lineno} in {code.co_name}"
    source = linecache.getline(code.co_filename, frame.f_lineno or 0).strip()
    return f"{where}\n    {source}" if source else where
