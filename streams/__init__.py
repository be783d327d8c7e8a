"""Everflow: durable workflows on Apache Kafka.

from streams import workflow, activity, Client, Worker, RetryPolicy
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
    EverflowError,
    FailureError,
    NonDeterminismError,
    NondeterministicCallError,
    NotInActivityError,
    NotInWorkflowError,
    NotRegisteredError,
    PayloadDecodeError,
    PayloadTooLargeError,
    QueryError,
    RequestRejectedError,
    RPCTimeoutError,
    TopicMismatchError,
    UnknownActivityError,
    UnknownHandlerError,
    UnknownWorkflowError,
    WorkflowAlreadyStartedError,
    WorkflowFailureError,
    WorkflowNotFoundError,
    WorkflowNotRunningError,
    WorkflowResultTimeoutError,
)
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
    "EverflowError",
    "FailureError",
    "NonDeterminismError",
    "NondeterministicCallError",
    "NotInActivityError",
    "NotInWorkflowError",
    "NotRegisteredError",
    "Payload",
    "PayloadDecodeError",
    "PayloadTooLargeError",
    "QueryError",
    "RPCTimeoutError",
    "RequestRejectedError",
    "RetryPolicy",
    "TopicMismatchError",
    "UnknownActivityError",
    "UnknownHandlerError",
    "UnknownWorkflowError",
    "WorkflowAlreadyStartedError",
    "WorkflowFailureError",
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
