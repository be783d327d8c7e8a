"""The payload store: the claim check behind the data converter, the file store, collection."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

import pytest

from processors.run.state import Effects, Run
from processors.workflow_code.registry import Registry
from streams import (
    ConfigError,
    DataConverter,
    PayloadChecksumError,
    PayloadDecodeError,
    PayloadNotFoundError,
    PayloadStoreError,
    PayloadTooLargeError,
    ZlibCodec,
    activity,
    workflow,
)
from streams.payload import STORED, Payload, check_size
from streams.payload_gc import References
from streams.payload_settings import PayloadStoreSettings
from streams.payload_store import (
    ClaimCheck,
    FileStore,
    collect,
    converter_from_env,
    pack,
    payload_key,
    stored_keys,
    unpack,
)
from streams.settings import RunLimits
from streams.ui.history import show_payload
from streams.wire.events import WorkflowBlocked, WorkflowStarted
from streams.wire.records import RunStatus

THRESHOLD = 1024


def store_converter(root: Path, codecs: tuple[ZlibCodec, ...] = ()) -> DataConverter:
    return DataConverter(codecs, store=ClaimCheck(FileStore(root), THRESHOLD, 10_000_000))


def test_payloads_under_the_threshold_stay_in_the_message(tmp_path: Path) -> None:
    conv = store_converter(tmp_path)
    (small,) = conv.to_payloads(["s" * 100])
    assert small.metadata["encoding"] == b"json/plain"
    assert not (tmp_path / "sha256").exists()  # nothing was stored


def test_a_large_payload_travels_as_a_reference_and_comes_back_whole(tmp_path: Path) -> None:
    conv = store_converter(tmp_path)
    value = {"blob": "x" * 500_000, "n": 7}
    (ref,) = conv.to_payloads([value])
    meta = ref.metadata
    assert meta["encoding"] == STORED and ref.data == b""
    assert meta["store"] == tmp_path.as_uri().encode()
    blob = (tmp_path / meta["key"].decode()).read_bytes()
    assert int(meta["size"]) == len(blob)
    assert meta["sha256"].decode() == hashlib.sha256(blob).hexdigest()
    assert meta["key"].decode() == payload_key(meta["sha256"].decode())
    check_size([ref], 1024, "the reference")  # the wire limit applies to the reference
    assert conv.from_payloads([ref]) == [value]
    # a converter in another process, pointed at the same store, reads it too
    assert store_converter(tmp_path).from_payload(ref) == value


def test_the_store_holds_what_the_codecs_made(tmp_path: Path) -> None:
    conv = store_converter(tmp_path, (ZlibCodec(),))
    value = "a" * 200_000  # compresses well under the threshold: stays in the message
    (p,) = conv.to_payloads([value])
    assert p.metadata["encoding"] == b"binary/zlib"
    noisy = os.urandom(300_000)  # does not compress: stored, as the codec left it
    (ref,) = conv.to_payloads([noisy])
    assert ref.metadata["encoding"] == STORED
    stored = unpack((tmp_path / ref.metadata["key"].decode()).read_bytes())
    assert stored.metadata["encoding"] == b"binary/zlib"
    assert conv.from_payloads([p, ref]) == [value, noisy]


def test_writing_the_same_payload_again_writes_one_object(tmp_path: Path) -> None:
    conv = store_converter(tmp_path)
    first = conv.to_payload("y" * 50_000)
    second = conv.to_payload("y" * 50_000)
    assert first == second
    assert len(list(FileStore(tmp_path).objects())) == 1
    assert not [p for p in tmp_path.rglob(".*") if p.is_file()]  # no temporary file left


def test_a_corrupt_object_is_refused_with_a_checksum_error(tmp_path: Path) -> None:
    conv = store_converter(tmp_path)
    ref = conv.to_payload("z" * 50_000)
    path = tmp_path / ref.metadata["key"].decode()
    blob = bytearray(path.read_bytes())
    blob[-3] ^= 0xFF  # same size, other content
    path.write_bytes(bytes(blob))
    with pytest.raises(PayloadChecksumError, match="corrupt or was replaced"):
        conv.from_payload(ref)
    path.write_bytes(bytes(blob[:-10]))  # truncated
    with pytest.raises(PayloadChecksumError, match=r"is \d+ bytes"):
        conv.from_payload(ref)


def test_a_missing_object_raises_a_named_error(tmp_path: Path) -> None:
    conv = store_converter(tmp_path)
    ref = conv.to_payload("m" * 50_000)
    (tmp_path / ref.metadata["key"].decode()).unlink()
    with pytest.raises(PayloadNotFoundError, match="is not in the payload store") as e:
        conv.from_payload(ref)
    assert isinstance(e.value, PayloadStoreError)
    assert ref.metadata["key"].decode() in str(e.value)


def test_a_reference_read_without_a_store_says_to_configure_one(tmp_path: Path) -> None:
    ref = store_converter(tmp_path).to_payload("q" * 50_000)
    with pytest.raises(PayloadStoreError, match="set EVERFLOW_PAYLOAD_STORE"):
        DataConverter().from_payload(ref)


def test_stored_objects_are_bounded_by_their_own_cap(tmp_path: Path) -> None:
    conv = DataConverter(store=ClaimCheck(FileStore(tmp_path), THRESHOLD, 100_000))
    with pytest.raises(PayloadTooLargeError, match="EVERFLOW_PAYLOAD_STORE_MAX_BYTES"):
        conv.to_payload("b" * 200_000)


def test_a_store_that_cannot_write_raises_a_store_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    conv = store_converter(blocker)
    with pytest.raises(PayloadStoreError, match="cannot write payload"):
        conv.to_payload("w" * 50_000)


def test_pack_keeps_metadata_and_bytes() -> None:
    p = Payload(b"\x00\x01data", {"encoding": b"binary/plain", "k": b"\xff"})
    assert unpack(pack(p)) == p


# ---- settings -----------------------------------------------------------------------------------
def test_settings_are_off_unless_set_and_file_means_the_data_dir(tmp_path: Path) -> None:
    assert PayloadStoreSettings.from_env({}).url is None
    assert converter_from_env(env={}).store is None
    env = {"EVERFLOW_PAYLOAD_STORE": "file", "EVERFLOW_DATA_DIR": str(tmp_path)}
    s = PayloadStoreSettings.from_env(env)
    assert s.url == (tmp_path / "payloads").resolve().as_uri()
    assert (s.threshold, s.max_object_bytes, s.retry_seconds) == (256 * 1024, 1024**3, 30.0)
    assert (
        PayloadStoreSettings.from_env({"EVERFLOW_PAYLOAD_STORE_RETRY": "2.5"}).retry_seconds == 2.5
    )
    assert s.gc_seconds == 3600.0  # workers collect hourly unless told otherwise
    assert PayloadStoreSettings.from_env({"EVERFLOW_PAYLOAD_GC_EVERY": "0"}).gc_seconds == 0.0
    env = {
        "EVERFLOW_PAYLOAD_STORE": f"file://{tmp_path}/p",
        "EVERFLOW_PAYLOAD_STORE_THRESHOLD": "2048",
        "EVERFLOW_PAYLOAD_STORE_MAX_BYTES": "4096",
    }
    store = converter_from_env(env=env).store
    assert isinstance(store, ClaimCheck) and isinstance(store.store, FileStore)
    assert (store.store.root, store.threshold, store.max_object_bytes) == (
        tmp_path / "p",
        2048,
        4096,
    )


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"EVERFLOW_PAYLOAD_STORE": "ftp://x/y"}, "must be file:///absolute/dir, s3://"),
        ({"EVERFLOW_PAYLOAD_STORE": "file://relative/dir"}, "absolute path"),
        ({"EVERFLOW_PAYLOAD_STORE_THRESHOLD": "0"}, r"threshold must be >= 1"),
        ({"EVERFLOW_PAYLOAD_STORE_MAX_BYTES": "lots"}, "must be a whole number"),
        ({"EVERFLOW_PAYLOAD_STORE_RETRY": "0"}, r"retry_seconds must be >= 0.1"),
        ({"EVERFLOW_PAYLOAD_GC_EVERY": "-1"}, r"EVERFLOW_PAYLOAD_GC_EVERY"),
        ({"EVERFLOW_PAYLOAD_GC_EVERY": "hourly"}, r"EVERFLOW_PAYLOAD_GC_EVERY must be"),
    ],
)
def test_bad_store_settings_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        PayloadStoreSettings.from_env(env)


# ---- collection ----------------------------------------------------------------------------------
def test_collect_removes_old_unreferenced_objects_only(tmp_path: Path) -> None:
    conv = store_converter(tmp_path)
    kept, orphan, young = (conv.to_payload(c * 5000) for c in "kou")
    old = time.time() - 3600
    for ref in (kept, orphan):
        os.utime(tmp_path / ref.metadata["key"].decode(), (old, old))
    referenced = set(stored_keys([WorkflowStarted("T", "q", [kept], "c")]))
    assert referenced == {kept.metadata["key"].decode()}
    store = FileStore(tmp_path)
    dry = collect(store, referenced, older_than_ms=60_000, dry_run=True)
    assert dry.removed == [orphan.metadata["key"].decode()]
    assert len(list(store.objects())) == 3
    done = collect(store, referenced, older_than_ms=60_000)
    assert done.removed == dry.removed
    assert (done.kept_referenced, done.kept_young) == (1, 1)
    assert conv.from_payloads([kept, young]) == ["k" * 5000, "u" * 5000]
    with pytest.raises(PayloadNotFoundError):
        conv.from_payload(orphan)


def test_writing_an_object_again_keeps_it_young(tmp_path: Path) -> None:
    conv = store_converter(tmp_path)
    ref = conv.to_payload("r" * 5000)
    path = tmp_path / ref.metadata["key"].decode()
    os.utime(path, (0, 0))
    conv.to_payload("r" * 5000)  # a retried activity returns the same result
    assert collect(FileStore(tmp_path), (), older_than_ms=60_000).removed == []


# ---- a run waits for a missing object ------------------------------------------------------------
@activity.defn
def produce() -> str:
    return "p" * 50_000


@workflow.defn
class Consumes:
    @workflow.run
    async def run(self) -> int:
        big = await workflow.execute_activity(produce, start_to_close_timeout=timedelta(seconds=5))
        return len(big)


def test_a_run_blocks_on_a_missing_object_and_resumes_once_it_is_back(tmp_path: Path) -> None:
    conv = store_converter(tmp_path)
    registry = Registry([Consumes], [produce], conv)
    run, fx = Run("wf-1", "run-1", 0, registry), Effects()
    run.start(WorkflowStarted("Consumes", "q", [], "cmd-1"), 1000, fx)
    result = conv.to_payload(produce())
    path = tmp_path / result.metadata["key"].decode()
    saved = path.read_bytes()
    path.unlink()
    fx = Effects()
    assert run.complete_activity(1, 1, result, 2000, fx)
    blocked = fx.events[-1].attributes
    assert isinstance(blocked, WorkflowBlocked) and blocked.reason == "payload_store"
    assert blocked.failure.type == "PayloadNotFoundError"
    assert "is not in the payload store" in blocked.failure.message
    assert not run.try_unblock(3000, Effects())  # still missing: it keeps waiting
    path.write_bytes(saved)
    fx = Effects()
    assert run.try_unblock(4000, fx)
    assert run.status is RunStatus.COMPLETED and conv.from_payload(run.result) == 50_000


def test_gc_keeps_open_runs_and_runs_closed_within_the_retention() -> None:
    refs = References(
        keys={("a", "1"): {"k-open"}, ("b", "1"): {"k-recent"}, ("c", "1"): {"k-old", "k-both"}},
        closed_at={("b", "1"): 9_000, ("c", "1"): 1_000},
    )
    refs.keys[("d", "1")] = {"k-both"}  # the same bytes in an open run: kept
    assert refs.needed(now_ms=10_000, retention_ms=5_000) == {"k-open", "k-recent", "k-both"}
    assert refs.needed(now_ms=20_000, retention_ms=5_000) == {"k-open", "k-both"}


def test_the_ui_describes_large_or_missing_stored_payloads_instead_of_failing(
    tmp_path: Path,
) -> None:
    conv = store_converter(tmp_path)
    small, large = conv.to_payload("s" * 5000), conv.to_payload("l" * 2_000_000)
    assert show_payload(conv, small) == f'"{"s" * 5000}"'
    assert show_payload(conv, large).startswith("stored payload (2,000,0")
    assert "too large to show here" in show_payload(conv, large)
    (tmp_path / small.metadata["key"].decode()).unlink()
    shown = show_payload(conv, small)
    assert shown.startswith("stored payload (") and "is not in the payload store" in shown
    assert "set EVERFLOW_PAYLOAD_STORE" in show_payload(DataConverter(), small)


class SlowStore(ClaimCheck):
    """A store that takes its time (a far-away bucket, a busy disk)."""

    def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        time.sleep(0.4)
        return super().encode(payloads)

    def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        time.sleep(0.4)
        return super().decode(payloads)


def test_a_slow_store_is_not_taken_for_a_deadlock_in_the_workflow_code(tmp_path: Path) -> None:
    conv = DataConverter(store=SlowStore(FileStore(tmp_path), THRESHOLD))
    limits = RunLimits(deadlock_timeout=0.2)
    run, fx = Run("wf-1", "run-1", 0, Registry([Consumes], [produce], conv, limits)), Effects()
    run.start(WorkflowStarted("Consumes", "q", [], "cmd-1"), 1000, fx)
    assert run.complete_activity(1, 1, conv.to_payload(produce()), 2000, fx)
    assert run.blocked is None, run.blocked
    assert run.status is RunStatus.COMPLETED and conv.from_payload(run.result) == 50_000


def test_a_reference_whose_key_is_not_its_hash_is_refused(tmp_path: Path) -> None:
    (tmp_path / "secret").write_text("not a payload")
    conv = store_converter(tmp_path / "store")
    ref = conv.to_payload("x" * 5000)
    for key in (b"../secret", b"sha256/00/" + b"0" * 64):
        forged = Payload(b"", {**ref.metadata, "key": key})
        with pytest.raises(PayloadDecodeError, match="malformed key"):
            conv.from_payload(forged)
