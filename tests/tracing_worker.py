"""`everflow` with the spans of this process written to a file, for the tracing tests.

    EVERFLOW_TEST_SPANS=spans.jsonl EVERFLOW_TRACING=1 python -m tests.tracing_worker worker ...

With EVERFLOW_TEST_SPANS set, it installs an OpenTelemetry SDK tracer provider (with
Everflow's `WorkflowIdGenerator`) whose exporter appends each finished span to that file as
a JSON line, synchronously, so a SIGKILL loses no span that ended. Then it runs the normal
command line. When the command returns it prints the `opentelemetry` modules it loaded (a
worker with tracing off must have loaded none).
"""

from __future__ import annotations

import json
import os
import sys
import threading
from collections.abc import Sequence
from typing import Any


def install(path: str) -> None:
    """The global tracer provider, exporting to the JSON lines file `path` (a provider set
    before in this process gets one more exporter)."""
    from opentelemetry import trace
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export import (
        SimpleSpanProcessor,
        SpanExporter,
        SpanExportResult,
    )

    from streams.tracing import WorkflowIdGenerator

    class JsonLines(SpanExporter):
        def __init__(self) -> None:
            self._lock = threading.Lock()

        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            lines = "".join(json.dumps(_as_dict(s)) + "\n" for s in spans)
            with self._lock, open(path, "a") as f:  # O_APPEND: processes share the file
                f.write(lines)
                f.flush()
            return SpanExportResult.SUCCESS

    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider(id_generator=WorkflowIdGenerator())
        trace.set_tracer_provider(provider)
    provider.add_span_processor(SimpleSpanProcessor(JsonLines()))


def _as_dict(span: Any) -> dict[str, Any]:
    context, parent = span.get_span_context(), span.parent
    return {
        "name": span.name,
        "trace_id": f"{context.trace_id:032x}",
        "span_id": f"{context.span_id:016x}",
        "parent_id": None if parent is None else f"{parent.span_id:016x}",
        "attributes": dict(span.attributes or {}),
        "status": span.status.status_code.name,
        "pid": os.getpid(),
    }


def main() -> int:
    spans = os.environ.get("EVERFLOW_TEST_SPANS")
    if spans:
        install(spans)
    from streams.cli import main as everflow

    code = everflow(sys.argv[1:])
    loaded = sorted(m for m in sys.modules if m.split(".")[0] == "opentelemetry")
    print("opentelemetry modules:", json.dumps(loaded), flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
