"""Everflow: durable workflows on Apache Kafka.

    from streams import workflow, activity, Client, Worker, RetryPolicy

This package is what users import: the workflow and activity APIs, the client, the worker
and the replayer, retry policies, the data converter, option enums and every error (all in
`__all__`, pinned by tests/unit/test_sdk.py). Beside them: `wire/` (the records on the
topics), `kafka/` (Kafka I/O), `cli/` (`everflow`), `dev/` (a local broker), `settings`
(worker settings from the environment) and `_runtime` (the seam the engine implements).

May import: its own modules. Only the composition roots (`worker`, `replayer`, `cli/`)
import the engine (`processors`); `Worker`, `Replayer` and `ReplayResult` are loaded on first
use, so importing `streams` never loads the engine.
"""

import importlib
from typing import TYPE_CHECKING, Any

from streams import activity, workflow
from streams.errors import (
    ActivityCanceledError,
    ActivityError,
    ActivityTimeoutError,
    ApplicationError,
    BrokerError,
    ChildWorkflowError,
    ConfigError,
    DeadlockError,
    EverflowError,
    FailureError,
    FilterError,
    KafkaAuthenticationError,
    KafkaAuthorizationError,
    NonDeterminismError,
    NondeterministicCallError,
    NotInActivityError,
    NotInWorkflowError,
    NotRegisteredError,
    PayloadChecksumError,
    PayloadDecodeError,
    PayloadKeyError,
    PayloadNotFoundError,
    PayloadStoreError,
    PayloadTooLargeError,
    PendingLimitError,
    QueryError,
    ReadOnlyContextError,
    RequestRejectedError,
    RPCTimeoutError,
    ScheduleAlreadyRunningError,
    ScheduleSpecError,
    SearchAttributeError,
    SignalLimitError,
    TimerDurationError,
    TopicMismatchError,
    UnknownActivityError,
    UnknownHandlerError,
    UnknownWorkflowError,
    VisibilityUnavailableError,
    WorkflowAlreadyStartedError,
    WorkflowBlockedError,
    WorkflowFailureError,
    WorkflowIdError,
    WorkflowNotFoundError,
    WorkflowNotRunningError,
    WorkflowResultTimeoutError,
)
from streams.options import IdConflictPolicy, IdReusePolicy
from streams.payload import DataConverter, Payload, ZlibCodec
from streams.retry import RetryPolicy

__all__ = [
    "ActivityCanceledError",
    "ActivityError",
    "ActivityTimeoutError",
    "ApplicationError",
    "BrokerError",
    "ChildWorkflowError",
    "ConfigError",
    "DataConverter",
    "DeadlockError",
    "EverflowError",
    "FailureError",
    "FilterError",
    "IdConflictPolicy",
    "IdReusePolicy",
    "KafkaAuthenticationError",
    "KafkaAuthorizationError",
    "NonDeterminismError",
    "NondeterministicCallError",
    "NotInActivityError",
    "NotInWorkflowError",
    "NotRegisteredError",
    "Payload",
    "PayloadChecksumError",
    "PayloadDecodeError",
    "PayloadKeyError",
    "PayloadNotFoundError",
    "PayloadStoreError",
    "PayloadTooLargeError",
    "PendingLimitError",
    "QueryError",
    "RPCTimeoutError",
    "ReadOnlyContextError",
    "RequestRejectedError",
    "RetryPolicy",
    "ScheduleAlreadyRunningError",
    "ScheduleSpecError",
    "SearchAttributeError",
    "SignalLimitError",
    "TimerDurationError",
    "TopicMismatchError",
    "UnknownActivityError",
    "UnknownHandlerError",
    "UnknownWorkflowError",
    "VisibilityUnavailableError",
    "WorkflowAlreadyStartedError",
    "WorkflowBlockedError",
    "WorkflowFailureError",
    "WorkflowIdError",
    "WorkflowNotFoundError",
    "WorkflowNotRunningError",
    "WorkflowResultTimeoutError",
    "ZlibCodec",
    "activity",
    "workflow",
]

from streams.client import Client, WorkflowHandle

__all__ += ["Client", "ReplayResult", "Replayer", "Worker", "WorkflowHandle"]

if TYPE_CHECKING:
    from streams.replayer import Replayer, ReplayResult
    from streams.worker import Worker

# The worker and the replayer are composition roots: they import the engine (`processors`),
# which itself imports this package's wire and Kafka modules. Loading them on first use keeps
# `import streams` (and any engine module imported first) free of an import cycle.
_ENGINE = {
    "Worker": "streams.worker",
    "Replayer": "streams.replayer",
    "ReplayResult": "streams.replayer",
}


def __getattr__(name: str) -> Any:
    module = _ENGINE.get(name)
    if module is None:
        raise AttributeError(f"module 'streams' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
