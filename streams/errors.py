"""The errors Everflow raises: one base class, each subclass one thing a caller can act on.

Every error a user can meet is here and exported from `streams`; the engine (`processors/`)
raises these and defines none of its own. Engine control signals (a run suspending, being
canceled or fenced) derive from BaseException instead, so that user code's
`except Exception:` cannot swallow them; they are not errors and are not here.
"""

from __future__ import annotations

from typing import Any


class EverflowError(Exception):
    """Base of every error Everflow raises to its callers.

    `except EverflowError:` catches all of them; catch a subclass to act on one case.
    """


class ConfigError(EverflowError):
    """A setting is missing or invalid; the message names the setting: fix it and restart."""


class BrokerError(EverflowError):
    """A Kafka broker could not be provisioned, reached or used.

    Check that the broker runs and `bootstrap_servers` points at it; the message says which
    step failed.
    """


class KafkaAuthenticationError(BrokerError):
    """The Kafka cluster did not let this client in: its TLS certificate is not trusted,
    the SASL user or password was refused, or the security protocol does not match the
    listener.

    The message names which; fix the `EVERFLOW_KAFKA_*` settings (`security.protocol`,
    `sasl.mechanism`, `sasl.username`, `sasl.password`, `ssl.ca.location`).
    """


class KafkaAuthorizationError(BrokerError):
    """The cluster's ACLs deny this client's principal an operation it needs.

    The message names the resource (topic, consumer group, transactional ID); grant the
    role's ACLs (`everflow acls worker|client|ui --principal User:NAME --apply`).
    """


class TopicMismatchError(EverflowError):
    """An existing topic has settings that differ from what Everflow needs.

    The message names the topic and the setting; change the topic (or the prefix) to match.
    """


class PayloadDecodeError(EverflowError):
    """A message or payload could not be decoded.

    Carries where the bytes came from (topic, partition, offset) when known, and why. An
    unknown writer schema means a newer Everflow wrote it: upgrade this reader.
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


class PayloadKeyError(PayloadDecodeError):
    """An encrypted payload could not be decrypted: this process does not hold the key it
    names (`key_id`), or holds a different key under that ID (or the payload was altered).

    A run that meets it is blocked, not failed: add the key to the key file
    (EVERFLOW_PAYLOAD_KEYS) of every worker, client, CLI and UI, restart them, and the run
    resumes. A process without keys can decode through a codec server
    (EVERFLOW_CODEC_ENDPOINT).
    """

    def __init__(self, key_id: str, reason: str) -> None:
        PayloadDecodeError.__init__(self, reason)
        self.key_id = key_id


class PayloadTooLargeError(EverflowError):
    """A payload or message is larger than the configured limit; it was not sent.

    Send a reference (a key in a blob store) instead of the data, or raise the limit.
    """


class PayloadStoreError(EverflowError):
    """The payload store (EVERFLOW_PAYLOAD_STORE) could not keep or give back a payload.

    A run whose code needs the payload waits, blocked with this error, and goes on once
    the store answers again (`everflow workflow unblock`); an activity attempt fails and
    is retried per its policy. Subclasses say what exactly went wrong.
    """


class PayloadNotFoundError(PayloadStoreError):
    """A message refers to a stored payload that is not in the store.

    The store was emptied, collected too early, or this process points at another store
    than the writer did; put the object back (or fix EVERFLOW_PAYLOAD_STORE) and unblock.
    """


class PayloadChecksumError(PayloadStoreError):
    """A stored payload's size or SHA-256 differs from what its reference recorded: the
    object is corrupt or was replaced. It is never handed to code."""


class WorkflowAlreadyStartedError(EverflowError):
    """A workflow ID is already running (or its reuse policy refuses a new run).

    Pick another ID, wait for that run to close, or change the ID reuse/conflict policy.
    """

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
    """No run with this workflow ID (and run ID, if given) is known.

    Check the IDs and the topic prefix; a closed run is forgotten after its retention.
    """


class WorkflowNotRunningError(EverflowError):
    """The request needs a running run, and the run has closed; read its result instead."""


class RPCTimeoutError(EverflowError):
    """A request to the workflow processors got no reply in time.

    Usually no worker is running for the topic prefix; start one, or retry later. The request
    may still take effect.
    """


class WorkflowResultTimeoutError(EverflowError, TimeoutError):
    """A run did not close within the time `WorkflowHandle.result(timeout=...)` allowed.

    The run goes on: wait again, describe it, or cancel it. Also a builtin TimeoutError.
    """


class WorkflowFailureError(EverflowError):
    """A run closed without a result: failed, canceled, terminated or timed out.

    `status` is the closing status; `cause` the failure the run ended with, if any: inspect
    it to decide whether to start the workflow again.
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


class FilterError(EverflowError, ValueError):
    """A run-index filter (`ExecutionStatus = 'Running' AND ...`) could not be understood.

    `query` is the filter as given, `position` the 0-based offset of the bad token in it and
    `token` that token's text; str() shows the message, the query and a caret under the token.
    Fix the filter as the message says.
    """

    def __init__(self, message: str, *, query: str, position: int, token: str) -> None:
        self.message = message
        self.query = query
        self.position = position
        self.token = token
        super().__init__(message)

    def __str__(self) -> str:
        start = self.query.rfind("\n", 0, self.position) + 1
        end = self.query.find("\n", self.position)
        line = self.query[start : end if end >= 0 else len(self.query)]
        first_line = self.token.split("\n", 1)[0]
        width = max(1, min(len(first_line), len(line) - (self.position - start)))
        caret = " " * (self.position - start) + "^" * width
        return f"{self.message}\n  {line}\n  {caret}"


# ---- failures: what workflows and activities raise and catch -----------------------------


class FailureError(EverflowError):
    """Base of failures that travel between activities, workflows and clients.

    Catch it in workflow code to handle any failed activity or child; `cause` holds the
    failure that caused this one, rebuilt from the wire.
    """

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
    """An activity failed for good (non-retryable, or attempts exhausted).

    What the workflow sees at the activity call; `cause` is the activity's own error. Catch
    it to compensate, or let it fail the workflow.
    """

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
    """A child workflow could not start, or closed without a result.

    What the parent sees at the child call; `cause` is the child's own failure, if it had
    one, and `status` how it ended: `start_failed`, `failed`, `canceled`, `terminated` or
    `timed_out`. Catch it to compensate, or let it fail the parent.
    """

    def __init__(self, message: str, status: str = "") -> None:
        super().__init__(message)
        self.status = status


class ActivityTimeoutError(FailureError):
    """An activity attempt timed out; `timeout_type` says which timeout.

    Usually the `cause` of an ActivityError; lengthen that timeout, or heartbeat more often
    for `heartbeat`.
    """

    def __init__(self, message: str, timeout_type: str) -> None:
        super().__init__(message)
        self.timeout_type = timeout_type


class ActivityCanceledError(FailureError):
    """An activity stopped because the workflow asked it to; no retry follows."""


# ---- workflow code and the engine ----------------------------------------------------------


class NotInWorkflowError(EverflowError, RuntimeError):
    """A workflow-only function was called outside workflow code.

    `workflow.*` functions work only inside a @workflow.run method or a handler while a worker
    runs the workflow; call the activity or client API elsewhere.
    """


class NotInActivityError(EverflowError, RuntimeError):
    """An activity-only function (`activity.info()`, `heartbeat()`…) was called outside a
    running activity; call it only from the activity function itself."""


class NonDeterminismError(EverflowError):
    """Replayed workflow code issued other commands than the run's history records.

    The workflow code changed incompatibly while runs were open: guard the change with
    `workflow.patched()`, or reset the affected runs. The run stays blocked until then.
    """


class NondeterministicCallError(EverflowError):
    """Workflow code called something that differs between replays (clock, random, I/O).

    The message names the deterministic replacement (`workflow.now()`, `workflow.random()`,
    an activity for I/O); use it.
    """


class NotRegisteredError(EverflowError):
    """A workflow or activity type is not registered on the worker that got the work.

    Deploy a worker that registers it (and check the task queue and the type's name).
    """


class UnknownWorkflowError(NotRegisteredError):
    """A run's workflow type is not registered on this worker."""


class UnknownActivityError(NotRegisteredError):
    """An activity type is not registered on the worker that polled its task queue."""


class UnknownHandlerError(EverflowError):
    """A signal, query or update name the workflow has no handler for.

    The message lists the names it has; check the name, or deploy the code that handles it.
    """


class QueryError(EverflowError):
    """A query handler failed, or tried to do more than read state.

    Queries must only read the workflow's state; fix the handler (the message says why).
    """


class ReadOnlyContextError(QueryError):
    """A query handler or update validator tried to schedule work (an activity, a timer, a
    child, a signal) or change the run's search attributes; what it issued was discarded.

    Queries and validators may only read the workflow's state: move the work to a signal
    or update handler. The run itself is unaffected.
    """


class DeadlockError(EverflowError):
    """Workflow code ran too long without yielding (`while True:` with no await,
    `time.sleep()`, heavy CPU): a potential deadlock. The run is blocked, not failed.

    The message says where the code was; workflow code must only wait with `await`
    (`workflow.sleep()`, an activity for slow work). After a fix is deployed the run
    replays and goes on. The limit is EVERFLOW_DEADLOCK_TIMEOUT (seconds; 0 turns the
    detector off, for debugging).
    """


class SignalLimitError(EverflowError):
    """A run has received the maximum number of signals (EVERFLOW_MAX_SIGNALS) and refuses
    more; nothing was recorded.

    A run that takes an unbounded stream of signals must hand over to a fresh run with
    `workflow.continue_as_new()` before it reaches the limit.
    """


class PendingLimitError(EverflowError):
    """Workflow code asked for one more activity (or child workflow) while its run already
    has the maximum open (EVERFLOW_MAX_PENDING, 2,000 each).

    Raised into the workflow code at the call; uncaught, it blocks the run. Wait for some
    to finish (in batches) before starting more.
    """


class WorkflowIdError(EverflowError, ValueError):
    """A workflow ID the client refuses before sending anything: empty, or longer than
    1,000 characters (Temporal's limit). Use a shorter ID (a hash of a long key)."""


class TimerDurationError(EverflowError, ValueError):
    """Workflow code asked for a timer with a negative duration, or one too long to be
    recorded (over 100 years).

    Raised into the workflow code at the call (`workflow.sleep()`); pass a duration
    within range.
    """


class WorkflowBlockedError(EverflowError):
    """A run stopped making progress: its code raised an error that is not a FailureError,
    turned non-deterministic, or names a workflow type no one has.

    A worker keeps such a run, waiting for a fix (`everflow workflow unblock`); the
    time-skipping test environment (`streams.testing`) raises this from `result()` instead
    of waiting. `reason` is the block's reason (`workflow_error`, `non_determinism`…),
    `cause` the code's own error; fix the workflow code.
    """

    def __init__(
        self, workflow_id: str, run_id: str, reason: str, cause: BaseException | None
    ) -> None:
        self.workflow_id = workflow_id
        self.run_id = run_id
        self.reason = reason
        self.cause = cause
        # a failure from the wire keeps the code's error type in `type`
        kind = getattr(cause, "type", type(cause).__name__)
        super().__init__(
            f"workflow {workflow_id!r} run {run_id} is blocked ({reason}): {kind}: {cause}; "
            "fix the workflow code (a worker keeps the run waiting for `everflow workflow "
            "unblock`)"
        )


class VisibilityUnavailableError(EverflowError):
    """The run index (the store `list_workflows` and `count_workflows` read) is missing or
    unreachable.

    The message names the store. The index is written by a projector: `everflow worker` runs
    one by default, or run `everflow visibility` (same `--visibility` URL or EVERFLOW_VISIBILITY).
    """


class SearchAttributeError(EverflowError, ValueError):
    """A custom search attribute cannot be set: its name is not a valid identifier or is one
    of the built-in names, its value has a type search attributes do not take, or its type
    differs from the type the run gave the name before.

    The message names the attribute and what it accepts; change the name or the value.
    """


class ScheduleSpecError(EverflowError, ValueError):
    """A schedule's spec or policy cannot be used: a cron expression that does not parse, a
    calendar range out of bounds, an interval under a second, a spec with nothing in it.

    The message names the field; fix it and create (or update) the schedule again.
    """


class ScheduleAlreadyRunningError(EverflowError):
    """`create_schedule` with the ID of a schedule that exists; delete it first, or pick
    another ID."""
