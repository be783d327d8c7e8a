"""The wire form of failures: exceptions to `Failure` records and back.

The failure classes themselves (`ApplicationError`, `ActivityError`…) are in
`streams.errors`, under `EverflowError`.
"""

from __future__ import annotations

import asyncio
import traceback

from streams.errors import (
    ActivityCanceledError,
    ActivityError,
    ActivityTimeoutError,
    ApplicationError,
    FailureError,
)
from streams.payload import DataConverter
from streams.wire.records import Failure


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
    if isinstance(error, asyncio.CancelledError | ActivityCanceledError):
        return Failure(
            message=str(error) or "canceled",
            type="CancelledError",
            kind="canceled",
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
    elif failure.is_canceled:
        error = ActivityCanceledError(failure.message)
    else:
        details = converter.from_payloads(failure.details)
        error = ApplicationError(
            failure.message, *details, type=failure.type, non_retryable=failure.non_retryable
        )
    error.remote_stack = failure.stack
    error.__cause__ = cause
    return error
