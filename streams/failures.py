"""Failures that workflows and activities raise and catch, and their wire form.

`ApplicationError` is what user code raises to fail an activity or a workflow on purpose;
`ActivityError` is what a workflow sees when an activity failed for good, with the activity's
own error as `cause`.
"""

from __future__ import annotations

import asyncio
import traceback
from typing import Any

from streams.payload import DataConverter
from streams.wire.records import Failure


class FailureError(Exception):
    """Base of failures that travel between activities, workflows and clients."""

    remote_stack: str = ""
    """where it was raised, when it came from another process"""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    @property
    def cause(self) -> BaseException | None:
        """What caused this failure (the activity's or child's own error), if known."""
        return self.__cause__


class ApplicationError(FailureError):
    """A failure raised on purpose by user code.

    `type` names the error for retry policies (`non_retryable_error_types`) and for callers;
    `non_retryable=True` stops retries at once. `details` travel as payloads.
    """

    def __init__(
        self,
        message: str,
        *details: Any,
        type: str | None = None,
        non_retryable: bool = False,
    ) -> None:
        super().__init__(message)
        self.details = details
        self.type = type or "ApplicationError"
        self.non_retryable = non_retryable

    def __str__(self) -> str:
        return self.message


class ActivityError(FailureError):
    """An activity failed for good (non-retryable, or attempts exhausted); see `cause`."""

    def __init__(
        self,
        message: str,
        *,
        activity_type: str,
        activity_id: int,
        attempt: int,
        cause: BaseException | None,
    ) -> None:
        super().__init__(message)
        self.activity_type = activity_type
        self.activity_id = activity_id
        self.attempt = attempt
        self.__cause__ = cause


class ChildWorkflowError(FailureError):
    """A child workflow could not start, or closed without a result; see `cause`."""


class ActivityTimeoutError(FailureError):
    """An activity attempt timed out; `timeout_type` says which timeout."""

    def __init__(self, message: str, timeout_type: str) -> None:
        super().__init__(message)
        self.timeout_type = timeout_type


class ActivityCancelledError(FailureError):
    """An activity stopped because the workflow asked it to."""


def to_failure(
    error: BaseException, converter: DataConverter, kind: str = "application"
) -> Failure:
    """The wire form of an exception (its chain of causes included)."""
    stack = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    cause = error.__cause__
    cause_failure = to_failure(cause, converter) if cause is not None else None
    if isinstance(error, ApplicationError):
        return Failure(
            message=error.message,
            type=error.type,
            kind=kind,
            stack=stack,
            non_retryable=error.non_retryable,
            details=converter.to_payloads(list(error.details)),
            cause=cause_failure,
        )
    if isinstance(error, ActivityTimeoutError):
        return Failure(
            message=error.message,
            type="ActivityTimeoutError",
            kind="timeout",
            stack=stack,
            timeout_type=error.timeout_type,
            cause=cause_failure,
        )
    if isinstance(error, asyncio.CancelledError | ActivityCancelledError):
        return Failure(
            message=str(error) or "cancelled",
            type="CancelledError",
            kind="cancelled",
            stack=stack,
            non_retryable=True,
            cause=cause_failure,
        )
    if isinstance(error, ActivityError):
        return Failure(
            message=error.message,
            type="ActivityError",
            kind="activity",
            stack=stack,
            cause=cause_failure,
        )
    return Failure(
        message=str(error), type=type(error).__name__, kind=kind, stack=stack, cause=cause_failure
    )


def from_failure(failure: Failure, converter: DataConverter) -> BaseException:
    """An exception rebuilt from its wire form; the original's stack is in `.remote_stack`."""
    cause = from_failure(failure.cause, converter) if failure.cause is not None else None
    error: FailureError
    if failure.kind == "activity" and failure.type == "ActivityError":
        error = ApplicationError(failure.message, type=failure.type)
    elif failure.kind == "timeout":
        error = ActivityTimeoutError(failure.message, failure.timeout_type or "start_to_close")
    elif failure.kind == "cancelled":
        error = ActivityCancelledError(failure.message)
    else:
        details = converter.from_payloads(failure.details)
        error = ApplicationError(
            failure.message, *details, type=failure.type, non_retryable=failure.non_retryable
        )
    error.remote_stack = failure.stack
    error.__cause__ = cause
    return error
