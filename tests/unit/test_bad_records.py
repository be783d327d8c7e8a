"""Bad records at the decoder: trailing bytes, lengths and counts that claim more than the
record holds, text that is not UTF-8. Each is refused with one clear PayloadDecodeError,
quickly and without allocating what the record claims."""

from __future__ import annotations

import zlib
from pathlib import Path

import pytest

from processors.workflow_processor.breaker import Breaker
from processors.workflow_processor.intake import Poison, check_command
from streams.errors import PayloadDecodeError
from streams.kafka.clients import partition_for
from streams.payload import Payload, ZlibCodec, from_payload, to_payload
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
    trailing = r": 3 trailing bytes after a everflow\.Command of \d+ bytes"
    with pytest.raises(PayloadDecodeError, match=trailing):
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
    with pytest.raises(PayloadDecodeError, match=r"corrupt everflow\.Command body"):
        wire.command.decode(bytes(bomb))


def test_text_that_is_not_utf8_is_refused(wire: Wire) -> None:
    raw = bytearray(wire.command.encode(Command("c", "wxyz", 1, SignalWorkflow("s"))))
    at = raw.index(b"wxyz")
    raw[at : at + 4] = b"\xed\xa0\x80w"  # a lone surrogate (U+D800) in UTF-8 form
    with pytest.raises(PayloadDecodeError, match="UnicodeDecodeError"):
        wire.command.decode(bytes(raw))


# ---- a `commands` record checked before any run sees it (processors.workflow_processor.intake)
def _check(wire: Wire, key: bytes | None, value: bytes | None, partition: int) -> object:
    return check_command(wire.command, key, value, "p.commands", partition, 7, 4)


def test_a_command_keyed_by_its_workflow_id_on_its_partition_passes(wire: Wire) -> None:
    raw = _signal(wire)
    home = partition_for("wf-1", 4)
    command = _check(wire, b"wf-1", raw, home)
    assert isinstance(command, Command) and command.workflow_id == "wf-1"


def test_a_tombstone_carries_no_command(wire: Wire) -> None:
    assert _check(wire, b"wf-1", None, partition_for("wf-1", 4)) is None


@pytest.mark.parametrize(
    ("key", "code", "says"),
    [
        (None, "null_key", "has no key"),
        (b"wf-2", "key_mismatch", "is keyed 'wf-2' but is for workflow 'wf-1'"),
        (b"\xff", "key_mismatch", r"is keyed '\\xff'"),
    ],
)
def test_a_command_not_keyed_by_its_workflow_id_is_poison(
    wire: Wire, key: bytes | None, code: str, says: str
) -> None:
    poison = _check(wire, key, _signal(wire), partition_for("wf-1", 4))
    assert isinstance(poison, Poison) and poison.code == code
    assert says in poison.reason and "p.commands[" in poison.reason


def test_a_command_on_another_partition_than_its_key_hashes_to_is_poison(wire: Wire) -> None:
    home = partition_for("wf-1", 4)
    poison = _check(wire, b"wf-1", _signal(wire), (home + 1) % 4)
    assert isinstance(poison, Poison) and poison.code == "wrong_partition"
    assert f"belongs on partition {home}" in poison.reason


def test_trailing_bytes_make_a_command_record_poison(wire: Wire) -> None:
    poison = _check(wire, b"wf-1", _signal(wire) + b"\x00", partition_for("wf-1", 4))
    assert isinstance(poison, Poison) and poison.code == "undecodable"
    assert "1 trailing bytes" in poison.reason and "p.commands" in poison.reason


# ---- payloads ---------------------------------------------------------------------------------
def test_a_compression_bomb_is_refused_without_inflating_it() -> None:
    codec = ZlibCodec(max_decompressed_bytes=1024 * 1024)
    bomb = zlib.compress(b"\x00" * (50 * 1024 * 1024), 9)  # ~50 KB that inflates to 50 MiB
    payload = Payload(bomb, {"encoding": b"binary/zlib", "inner": b"{}"})
    with pytest.raises(PayloadDecodeError, match="refused as a compression bomb"):
        codec.decode([payload])
    exact = codec.encode([to_payload("x" * (1024 * 1024 - 2))])  # JSON quotes: exactly 1 MiB
    assert len(codec.decode(exact)[0].data) == 1024 * 1024


def test_corrupt_or_truncated_zlib_payloads_are_refused() -> None:
    codec = ZlibCodec()
    good = codec.encode([to_payload("y" * 4096)])[0]
    for data, says in [(b"not zlib", "corrupt"), (good.data[:10], "truncated")]:
        with pytest.raises(PayloadDecodeError, match=says):
            codec.decode([Payload(data, good.metadata)])


def test_deeply_nested_json_is_a_decode_error_not_a_recursion_error() -> None:
    deep = Payload(b"[" * 100_000 + b"]" * 100_000, {"encoding": b"json/plain"})
    with pytest.raises(PayloadDecodeError, match="not valid JSON"):
        from_payload(deep)


# ---- the crash-loop breaker's note (processors.workflow_processor.breaker) ----------------------
def _restarted(path: Path, committed: dict[int, int]) -> Breaker:
    """A new process's breaker, after its partitions were assigned."""
    breaker = Breaker.open(path)
    for partition, offset in committed.items():
        breaker.assigned(partition, offset)
    return breaker


def test_a_command_that_kills_the_process_three_times_is_doomed(tmp_path: Path) -> None:
    note = tmp_path / "p.inflight"
    breaker = Breaker.open(note)
    breaker.processing({1: (5, 9), 2: (3, 3)})  # then the process dies
    breaker = _restarted(note, {1: 5, 2: 4})  # partition 2's batch committed: no crash there
    assert breaker.stepping and breaker.suspects == {1: 9} and not breaker.doomed
    for crashes in (1, 2, 3):
        breaker.processing({1: (7, 7)})  # stepping found it: offset 7 kills the process
        breaker = _restarted(note, {1: 7})
        assert breaker.crashes[(1, 7)] == crashes
    assert breaker.reason(1, 6) is None
    reason = breaker.reason(1, 7)
    assert reason is not None and "died 3 times" in reason and "offset 7" in reason
    breaker.passed(1, 9)
    assert not breaker.stepping


def test_a_clean_stop_or_a_committed_batch_counts_no_crash(tmp_path: Path) -> None:
    note = tmp_path / "p.inflight"
    breaker = Breaker.open(note)
    breaker.processing({0: (4, 4)})
    breaker.close()
    assert not _restarted(note, {0: 4}).stepping
    breaker = Breaker.open(note)
    breaker.processing({0: (4, 4)})
    assert not _restarted(note, {0: 5}).stepping  # committed past it: it finished
    assert not Breaker.open(None).stepping  # no note: no breaker
