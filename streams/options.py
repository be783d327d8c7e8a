"""Closed sets of option values, as `StrEnum`s.

A member equals its string (`IdConflictPolicy.USE_EXISTING == "use_existing"`), so the
wire carries the same bytes as before and callers may pass a member or its string;
`option()` turns either into the member, or says which values there are.
"""

from __future__ import annotations

import enum
from typing import TypeVar

E = TypeVar("E", bound=enum.StrEnum)


class IdReusePolicy(enum.StrEnum):
    """Whether a workflow ID whose last run closed may start again."""

    ALLOW_DUPLICATE = "allow_duplicate"
    """always"""
    ALLOW_DUPLICATE_FAILED_ONLY = "allow_duplicate_failed_only"
    """only if that run did not complete (failed, cancelled, terminated, timed out)"""
    REJECT_DUPLICATE = "reject_duplicate"
    """never"""


class IdConflictPolicy(enum.StrEnum):
    """What starting a workflow ID whose run is still running does."""

    FAIL = "fail"
    """refuse: WorkflowAlreadyStartedError"""
    USE_EXISTING = "use_existing"
    """answer with the running run"""


class ParentClosePolicy(enum.StrEnum):
    """What happens to a child still running when its parent closes."""

    TERMINATE = "terminate"
    REQUEST_CANCEL = "request_cancel"
    ABANDON = "abandon"


class ActivityCancellationType(enum.StrEnum):
    """What cancelling a workflow's wait on an activity does to the activity."""

    TRY_CANCEL = "try_cancel"
    """ask the activity to stop (delivered on its next heartbeat); stop waiting at once"""
    WAIT_CANCELLATION_COMPLETED = "wait_cancellation_completed"
    """ask it to stop, and wait until it stopped or finished"""
    ABANDON = "abandon"
    """stop waiting; let the activity run on"""


def option(kind: type[E], value: E | str, setting: str) -> E:
    """`value` as a member of `kind`; ValueError naming `setting` and the accepted values."""
    try:
        return kind(value)
    except ValueError:
        accepted = ", ".join(repr(str(m)) for m in kind)
        raise ValueError(f"unknown {setting} {value!r}; use one of {accepted}") from None
