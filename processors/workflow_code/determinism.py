"""Catches non-deterministic calls in workflow code without an import sandbox.

While a run's code executes, a profile hook watches C calls and Python calls made *from user
code* (not from the standard library or Everflow) and stops the well-known sources of
non-determinism with an error naming the deterministic replacement. It costs nothing outside
workflow steps, and far less than re-importing modules per run.
"""

from __future__ import annotations

import datetime
import os
import random
import socket
import sys
import sysconfig
import time
import types
import uuid
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

import processors
import streams
from streams.errors import NondeterministicCallError
from streams.payload import DataConverter, Payload

T = TypeVar("T")


_STDLIB = str(Path(sysconfig.get_paths()["stdlib"]).resolve())
_OURS = tuple(
    str(Path(p).resolve())
    for p in (
        Path(processors.__file__).parent,
        Path(streams.__file__).parent,
    )
)

# (object a C function is bound to, function name) -> what to use instead
_C_CALLS: dict[tuple[int, str], str] = {
    (id(time), "time"): "workflow.now()",
    (id(time), "time_ns"): "workflow.now()",
    (id(time), "monotonic"): "workflow.now()",
    (id(time), "perf_counter"): "workflow.now()",
    (id(time), "sleep"): "await workflow.sleep(...)",
    (id(datetime.datetime), "now"): "workflow.now()",
    (id(datetime.datetime), "utcnow"): "workflow.now()",
    (id(datetime.datetime), "today"): "workflow.now()",
    (id(datetime.date), "today"): "workflow.now().date()",
    # bound to the platform module (posix, nt) it comes from, not to os
    (id(sys.modules[os.urandom.__module__]), "urandom"): "workflow.random() / workflow.uuid4()",
}
# the hidden Random behind random.random() and friends: its bound methods are the C calls
_RANDOM_INST = random._inst  # noqa: SLF001
_PY_CALLS: dict[Any, str] = {
    uuid.uuid4.__code__: "workflow.uuid4()",
    uuid.uuid1.__code__: "workflow.uuid4()",
    socket.socket.__init__.__code__: "an activity (workflow code must not do I/O)",
}
_OPEN_NAMES = {"open"}
# Python functions worth a closer look: the ones above, and the methods of random.Random
# (whether `self` is the module's shared instance is checked only for those)
_WATCHED_CODE = set(_PY_CALLS) | {
    f.__code__ for f in vars(random.Random).values() if isinstance(f, types.FunctionType)
}
# the hook runs on every call of a workflow step: one set lookup turns away all C calls
# but these names (the C methods of the random module's shared instance among them)
_C_NAMES = {name for _, name in _C_CALLS} | _OPEN_NAMES | set(vars(random.Random.__bases__[0]))


def is_user_frame(frame: FrameType | None) -> bool:
    """Whether `frame` runs user code: not Everflow's, not the standard library's."""
    if frame is None:
        return False
    filename = frame.f_code.co_filename
    if filename.startswith("<"):
        return not filename.startswith("<frozen")
    if filename.startswith(_OURS):
        return False
    return not (filename.startswith(_STDLIB) and "site-packages" not in filename)


class DeterminismGuard:
    """Installed around each step of workflow code; records the first violation it stops."""

    def __init__(self) -> None:
        self.violation: NondeterministicCallError | None = None

    def __enter__(self) -> DeterminismGuard:
        self.violation = None
        self._previous = sys.getprofile()
        sys.setprofile(self._hook)
        return self

    def __exit__(self, *exc: object) -> None:
        sys.setprofile(self._previous)

    def _hook(self, frame: FrameType, event: str, arg: Any) -> None:
        # runs on every call and return of a workflow step: one set lookup turns away
        # nearly all of them
        if event == "call":
            if frame.f_code in _WATCHED_CODE:
                self._python_call(frame)
        elif event == "c_call" and getattr(arg, "__name__", None) in _C_NAMES:
            self._c_call(frame, arg)

    def _python_call(self, frame: FrameType) -> None:
        replacement = _PY_CALLS.get(frame.f_code)
        if replacement is None and frame.f_locals.get("self") is _RANDOM_INST:
            replacement = "workflow.random()"
        if replacement is not None and is_user_frame(frame.f_back):
            self._stop(f"{frame.f_code.co_qualname}()", replacement, frame.f_back)

    def _c_call(self, frame: FrameType, arg: Any) -> None:
        name = arg.__name__
        owner = getattr(arg, "__self__", None)
        replacement = _C_CALLS.get((id(owner), name))
        if replacement is None and owner is _RANDOM_INST:
            replacement = "workflow.random()"
        if (
            replacement is None
            and name in _OPEN_NAMES
            and owner is not None
            and (getattr(owner, "__name__", "") in ("builtins", "io"))
        ):
            replacement = "an activity (workflow code must not do I/O)"
        if replacement is not None and is_user_frame(frame):
            self._stop(
                f"{getattr(owner, '__name__', type(owner).__name__)}.{name}()", replacement, frame
            )

    def _stop(self, call: str, replacement: str, frame: FrameType | None) -> None:
        where = f"{frame.f_code.co_filename}:{frame.f_lineno}" if frame else "?"
        error = NondeterministicCallError(
            f"workflow code called {call} at {where}; it gives another answer on replay — "
            f"use {replacement} instead"
        )
        if self.violation is None:
            self.violation = error
        # a profile hook that raises is removed by the interpreter; the instance checks
        # `violation` after the step, so swallowing the error in user code does not help
        raise error


def unguarded(fn: Callable[..., T], *args: Any) -> T:
    """Calls `fn` with the determinism hook of this thread paused, if one is installed."""
    hook = sys.getprofile()
    if not isinstance(getattr(hook, "__self__", None), DeterminismGuard):
        return fn(*args)
    sys.setprofile(None)
    try:
        return fn(*args)
    finally:
        sys.setprofile(hook)


class UnguardedConverter(DataConverter):
    """A run's data converter, run with the determinism hook paused: converting payloads is
    engine code, or a user's codec (which may rightly draw random nonces), not workflow
    code, and most of the calls a workflow step makes happen inside it. `pause` (the
    deadlock watchdog's) keeps the time it takes — a payload store's I/O — off the code's
    deadline."""

    def __init__(
        self,
        inner: DataConverter,
        pause: Callable[[], AbstractContextManager[None]] = nullcontext,
    ) -> None:
        super().__init__(inner.codecs, inner.store)
        self.inner = inner
        self.pause = pause

    def to_payloads(self, values: Sequence[Any]) -> list[Payload]:
        return unguarded(self._paused, self.inner.to_payloads, values)

    def to_payload(self, value: Any) -> Payload:
        return unguarded(self._paused, self.inner.to_payload, value)

    def from_payloads(
        self, payloads: Sequence[Payload], hints: Sequence[Any] | None = None
    ) -> list[Any]:
        return unguarded(self._paused, self.inner.from_payloads, payloads, hints)

    def from_payload(self, payload: Payload, hint: Any = None) -> Any:
        return unguarded(self._paused, self.inner.from_payload, payload, hint)

    def _paused(self, fn: Callable[..., T], *args: Any) -> T:
        with self.pause():
            return fn(*args)
