"""The errors Everflow raises: one base class, each subclass one thing a caller can act on."""

from __future__ import annotations


class EverflowError(Exception):
    """Base of every error Everflow raises to its callers."""


class ConfigError(EverflowError):
    """A setting is missing or invalid; the message names the setting."""


class BrokerError(EverflowError):
    """A Kafka broker could not be provisioned, reached or used."""


class TopicMismatchError(EverflowError):
    """An existing topic has settings that differ from what Everflow needs."""


class PayloadDecodeError(EverflowError):
    """A message or payload could not be decoded.

    Carries where the bytes came from (topic, partition, offset) when known, and why.
    """

    def __init__(
        self,
        reason: str,
        *,
        topic: str | None = None,
        partition: int | None = None,
        offset: int | None = None,
    ) -> None:
        self.reason = reason
        self.topic = topic
        self.partition = partition
        self.offset = offset
        where = ""
        if topic is not None:
            where = f" at {topic}[{partition}]@{offset}"
        super().__init__(f"cannot decode message{where}: {reason}")

    def at(self, topic: str, partition: int, offset: int) -> PayloadDecodeError:
        """The same error, located at a topic, partition and offset."""
        return PayloadDecodeError(self.reason, topic=topic, partition=partition, offset=offset)


class PayloadTooLargeError(EverflowError):
    """A payload or message is larger than the configured limit; it was not sent."""


class WorkflowAlreadyStartedError(EverflowError):
    """A workflow ID is already running (or its reuse policy refuses a new run)."""

    def __init__(
        self, workflow_id: str, run_id: str | None = None, reason: str | None = None
    ) -> None:
        self.workflow_id = workflow_id
        self.run_id = run_id
        super().__init__(
            (reason or f"workflow {workflow_id!r} is already running (run {run_id})")
            + "; pick another ID, wait for that run to close, or change the ID policy"
        )


class WorkflowNotFoundError(EverflowError):
    """No run with this workflow ID (and run ID, if given) is known."""


class WorkflowNotRunningError(EverflowError):
    """The request needs a running run, and the run has closed."""


class RPCTimeoutError(EverflowError):
    """A request to the workflow processors got no reply in time (no worker running?)."""


class WorkflowFailureError(EverflowError):
    """A run closed without a result: failed, cancelled, terminated or timed out.

    `status` is the closing status; `cause` the failure the run ended with, if any.
    """

    def __init__(self, workflow_id: str, status: str, cause: BaseException | None) -> None:
        self.workflow_id = workflow_id
        self.status = status
        self.cause = cause
        detail = f": {cause}" if cause is not None else ""
        super().__init__(f"workflow {workflow_id!r} {status.lower()}{detail}")
        self.__cause__ = cause


class RequestRejectedError(EverflowError, ValueError):
    """The processor refused a request as given (a reset point with work in flight, an
    activity that is not open, a run that is not blocked…); the message says why."""
