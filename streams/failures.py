"""Failures that workflows and activities raise and catch, and their wire form.

`ApplicationError` is what user code raises to fail an activity or a workflow on purpose;
`ActivityError` is what a workflow sees when an activity failed for good, with the activity's
own error as `cause`.
"""

from __future__ import annotations

import traceback
from typing import Any

from streams.payload import DataConverter
from streams.records import Failure


class FailureError(Exception):
    """Base of failures that travel between activities, workflows and clients."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


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

    @property
    def cause(self) -> BaseException | None:
        return self.__cause__


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
    else:
        details = converter.from_payloads(failure.details)
        error = ApplicationError(
            failure.message, *details, type=failure.type, non_retryable=failure.non_retryable
        )
    error.remote_stack = failure.stack  # type: ignore[attr-defined]
    error.__cause__ = cause
    return error
