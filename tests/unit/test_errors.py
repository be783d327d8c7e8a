"""One error tree: every error a user can meet is exported from `streams` and is an
EverflowError; the engine defines none of its own."""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
from pathlib import Path

import pytest

import processors
import streams
from streams import activity, workflow
from streams.wire.records import Failure

EXPORTED_ERRORS = [name for name in streams.__all__ if name.endswith("Error")]


@pytest.mark.parametrize("name", EXPORTED_ERRORS)
def test_every_exported_error_is_an_everflow_error_with_a_docstring(name: str) -> None:
    cls = getattr(streams, name)
    assert issubclass(cls, streams.EverflowError)
    assert cls.__module__ == "streams.errors"
    assert vars(cls).get("__doc__"), f"{name} has no docstring of its own"


def test_every_error_class_in_streams_errors_is_exported() -> None:
    import streams.errors

    defined = {
        name
        for name, value in vars(streams.errors).items()
        if inspect.isclass(value) and issubclass(value, BaseException)
    }
    assert defined <= set(streams.__all__)


def _engine_modules() -> list[str]:
    return [m.name for m in pkgutil.walk_packages(processors.__path__, "processors.")]


def test_processors_defines_no_exception_a_user_can_see() -> None:
    """Only BaseException control signals (suspend, cancel, fenced) may live in the engine."""
    offenders = []
    for name in _engine_modules():
        module = importlib.import_module(name)
        for attr, value in vars(module).items():
            if inspect.isclass(value) and value.__module__ == name and issubclass(value, Exception):
                offenders.append(f"{name}.{attr}")
    assert offenders == []


def test_processors_source_has_no_class_deriving_from_an_error_or_exception() -> None:
    """The same, by reading the source: also catches classes defined inside functions."""
    offenders = []
    for path in Path(processors.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                for base in node.bases:
                    base_name = ast.unparse(base)
                    if base_name.endswith(("Error", "Exception")) and base_name != (
                        "BaseException"
                    ):
                        offenders.append(f"{path.name}:{node.lineno} {node.name}({base_name})")
    assert offenders == []


def test_failures_are_everflow_errors_that_user_code_can_catch_as_one() -> None:
    for cls in (
        streams.ApplicationError,
        streams.ActivityError,
        streams.ChildWorkflowError,
        streams.ActivityTimeoutError,
        streams.ActivityCanceledError,
    ):
        assert issubclass(cls, streams.FailureError)
        assert issubclass(cls, streams.EverflowError)


def test_a_failure_from_the_wire_is_an_everflow_error() -> None:
    from streams.failures import from_failure

    error = from_failure(
        Failure("card declined", "CardDeclined", "application"), streams.DataConverter()
    )
    assert isinstance(error, streams.ApplicationError)
    assert isinstance(error, streams.EverflowError)


def test_workflow_functions_outside_a_workflow_raise_not_in_workflow_error() -> None:
    with pytest.raises(streams.NotInWorkflowError, match="only inside workflow code") as e:
        workflow.now()
    # callers that caught the RuntimeError it used to be still catch it
    assert isinstance(e.value, RuntimeError)
    assert workflow.NotInWorkflowError is streams.NotInWorkflowError


def test_activity_functions_outside_an_activity_raise_not_in_activity_error() -> None:
    with pytest.raises(streams.NotInActivityError, match="only inside a running activity") as e:
        activity.info()
    assert isinstance(e.value, RuntimeError)


def test_unknown_workflow_and_unknown_activity_are_told_apart() -> None:
    from processors.workflow_code.registry import Registry

    registry = Registry()
    with pytest.raises(streams.UnknownWorkflowError, match="workflow type 'Nope'"):
        registry.workflow("Nope")
    with pytest.raises(streams.UnknownActivityError, match="activity type 'nope'") as e:
        registry.activity("nope")
    assert not isinstance(e.value, streams.UnknownWorkflowError)
    assert isinstance(e.value, streams.NotRegisteredError)


@pytest.mark.parametrize("kind", ["canceled", "cancelled"])
def test_a_cancellation_reads_as_activity_canceled_error_in_either_spelling(kind: str) -> None:
    """The wire writes "canceled"; messages from before the spelling was settled say
    "cancelled" and still mean a cancellation."""
    from streams.failures import from_failure, to_failure

    failure = Failure("stopped", "CancelledError", kind=kind, non_retryable=True)
    assert failure.is_canceled
    assert isinstance(from_failure(failure, streams.DataConverter()), streams.ActivityCanceledError)
    written = to_failure(streams.ActivityCanceledError("stopped"), streams.DataConverter())
    assert written.kind == "canceled"
    assert not Failure("boom", "ValueError").is_canceled


def test_waiting_too_long_for_a_result_raises_workflow_result_timeout_error() -> None:
    import asyncio
    from datetime import timedelta
    from typing import cast

    from streams.client import Client, WorkflowHandle

    async def wait() -> None:
        never: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        handle = WorkflowHandle(cast(Client, None), "wf-1", "r", never)  # type: ignore[arg-type]
        await handle.result(timeout=timedelta(milliseconds=10))

    with pytest.raises(streams.WorkflowResultTimeoutError, match="'wf-1' did not close") as e:
        asyncio.run(wait())
    assert isinstance(e.value, TimeoutError)  # callers catching the builtin still catch it
