"""Everflow: durable workflows on Apache Kafka.

from streams import workflow, activity, Client, Worker, RetryPolicy
"""

from streams import activity, workflow
from streams.errors import (
    EverflowError,
    PayloadDecodeError,
    PayloadTooLargeError,
    RPCTimeoutError,
    WorkflowAlreadyStartedError,
    WorkflowFailureError,
    WorkflowNotFoundError,
    WorkflowNotRunningError,
)
from streams.failures import (
    ActivityCancelledError,
    ActivityError,
    ActivityTimeoutError,
    ApplicationError,
)
from streams.payload import DataConverter, Payload, ZlibCodec
from streams.retry import RetryPolicy

__all__ = [
    "ActivityCancelledError",
    "ActivityError",
    "ActivityTimeoutError",
    "ApplicationError",
    "DataConverter",
    "EverflowError",
    "Payload",
    "PayloadDecodeError",
    "PayloadTooLargeError",
    "RPCTimeoutError",
    "RetryPolicy",
    "WorkflowAlreadyStartedError",
    "WorkflowFailureError",
    "WorkflowNotFoundError",
    "WorkflowNotRunningError",
    "ZlibCodec",
    "activity",
    "workflow",
]

from streams.client import Client, WorkflowHandle
from streams.replayer import Replayer, ReplayResult
from streams.worker import Worker

__all__ += ["Client", "ReplayResult", "Replayer", "Worker", "WorkflowHandle"]
