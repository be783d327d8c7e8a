"""Bad records at the decoder: trailing bytes, lengths and counts that claim more than the
record holds, text that is not UTF-8. Each is refused with one clear PayloadDecodeError,
quickly and without allocating what the record claims."""

from __future__ import annotations

import pytest

from streams.errors import PayloadDecodeError
from streams.payload import to_payload
from streams.wire import Wire
from streams.wire.avro import SchemaRegistry
from streams.wire.commands import Command, SignalWorkflow, StartWorkflow
from streams.wire.compiled import write_long


@pytest.fixture(scope="module")
def wire() -> Wire:
    return Wire()


def _signal(wire: Wire) -> bytes:
    return wire.command.encode(Command("c-1", "wf-1", 1, SignalWorkflow("go", [to_payload(1)])))


def test_trailing_bytes_after_a_valid_command_are_refused(wire: Wire) -> None:
    raw = _signal(wire)
    assert wire.command.decode(raw).workflow_id == "wf-1"
    with pytest.raises(PayloadDecodeError, match=r": 3 trailing bytes after a everflow\.Command of \d+ bytes"):
        wire.command.decode(raw + b"\x00\x00\x00")


def test_two_commands_run_together_are_refused(wire: Wire) -> None:
    raw = _signal(wire)
    with pytest.raises(PayloadDecodeError, match="trailing bytes"):
        wire.command.decode(raw + raw)


def test_trailing_bytes_are_refused_on_the_schema_resolution_path_too() -> None:
    """A message of an older writer schema is read by fastavro, not the compiled codec."""
    registry = SchemaRegistry()
    old_id = 0x983B3AECFBB73C71  # an archived HistoryEvent schema (see test_codec)
    wire = Wire(registry)
    raw = wire.event.encode_with(
        old_id,
        {
            "workflow_id": "wf", "run_id": "r", "event_id": 2, "time": 5,
            "attributes": ("everflow.history.WorkflowCancelRequested", {"reason": "x"}),
        },
    )  # fmt: skip
    assert wire.event.decode(raw).event_id == 2
    with pytest.raises(PayloadDecodeError, match="1 trailing bytes"):
        wire.event.decode(raw + b"\x07")


def test_a_length_claiming_two_gibibytes_is_refused_at_once(wire: Wire) -> None:
    # header, then command_id: a string whose length says 2 GiB, followed by 4 bytes
    raw = bytearray(wire.command.encode(Command("c", "w", 1, SignalWorkflow("s"))))[:10]
    write_long(raw, 2**31)
    raw += b"abcd"
    with pytest.raises(PayloadDecodeError, match="runs past the end of the message"):
        wire.command.decode(bytes(raw))


def test_an_array_count_claiming_billions_of_items_is_refused(wire: Wire) -> None:
    prefix = wire.command.encode(Command("c", "w", 1, StartWorkflow("r", "T", "q")))
    # StartWorkflow's args array comes right after its task queue "q" (length 1, zigzag 2):
    # cut the record there and claim 2**40 arguments
    bomb = bytearray(prefix[: prefix.index(b"\x02q") + 2])
    write_long(bomb, 2**40)
    with pytest.raises(PayloadDecodeError, match="corrupt everflow.Command body"):
        wire.command.decode(bytes(bomb))


def test_text_that_is_not_utf8_is_refused(wire: Wire) -> None:
    raw = bytearray(wire.command.encode(Command("c", "wxyz", 1, SignalWorkflow("s"))))
    at = raw.index(b"wxyz")
    raw[at : at + 4] = b"\xed\xa0\x80w"  # a lone surrogate (U+D800) in UTF-8 form
    with pytest.raises(PayloadDecodeError, match="UnicodeDecodeError"):
        wire.command.decode(bytes(raw))
