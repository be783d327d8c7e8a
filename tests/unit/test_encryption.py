"""Payload encryption: the AES-GCM codec, its keys and settings, the codec server, and what a
run does when it meets a payload whose key is not held."""

from __future__ import annotations

import base64
import json
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from processors.run.effects import Effects
from processors.run.state import Run
from processors.workflow_code.registry import Registry
from streams import PayloadKeyError, Replayer, workflow
from streams.cli import main
from streams.codec_server import CodecServer, CodecServerError, RemoteCodec
from streams.encryption import (
    AesGcmCodec,
    configured_codecs,
    configured_converter,
    generate_key,
)
from streams.errors import ConfigError, PayloadDecodeError
from streams.kafka.config import KafkaConfig
from streams.payload import ENCODING, ENCRYPTED, KEY_ID, DataConverter, Payload, ZlibCodec
from streams.payload_settings import PayloadSettings, read_key_file
from streams.settings import UiSettings
from streams.ui.context import Ui
from streams.ui.history import show_payload
from streams.wire.events import HistoryEvent, WorkflowStarted
from streams.wire.history_json import event_to_json
from streams.wire.records import RunStatus

SECRET = "4111-1111-1111-1111"
K1, K2 = generate_key(), generate_key()


def encrypting(keys: dict[str, bytes], current: str) -> DataConverter:
    return DataConverter([AesGcmCodec(keys, current)])


# ---- the codec ---------------------------------------------------------------------------------
def test_values_round_trip_and_the_wire_shows_only_the_key_id_and_the_marker() -> None:
    conv = encrypting({"k1": K1}, "k1")
    values = [SECRET, {"card": SECRET, "n": 3}, b"\x00raw bytes", None, [1.5, "x"]]
    payloads = conv.to_payloads(values)
    assert conv.from_payloads(payloads) == values
    for p in payloads:
        assert p.metadata == {ENCODING: ENCRYPTED, KEY_ID: b"k1"}  # the inner encoding hidden
        assert SECRET.encode() not in p.data and b"json/plain" not in p.data


def test_each_payload_gets_its_own_random_nonce() -> None:
    conv = encrypting({"k1": K1}, "k1")
    first, second = conv.to_payloads([SECRET, SECRET])
    assert first.data[:12] != second.data[:12] and first.data != second.data


def test_compression_then_encryption_round_trips_in_a_chain() -> None:
    conv = DataConverter([ZlibCodec(min_bytes=0), AesGcmCodec({"k1": K1}, "k1")])
    (payload,) = conv.to_payloads(["y" * 5000])
    assert len(payload.data) < 200 and conv.from_payload(payload) == "y" * 5000


def test_after_a_rotation_old_payloads_decode_and_new_ones_use_the_new_key() -> None:
    before = encrypting({"k1": K1}, "k1").to_payload(SECRET)
    rotated = encrypting({"k1": K1, "k2": K2}, "k2")
    after = rotated.to_payload(SECRET)
    assert after.metadata[KEY_ID] == b"k2"
    assert rotated.from_payloads([before, after]) == [SECRET, SECRET]


def test_a_payload_whose_key_is_not_held_raises_a_key_error_naming_the_key() -> None:
    old = encrypting({"k1": K1}, "k1").to_payload(SECRET)
    with pytest.raises(PayloadKeyError, match="encrypted with key 'k1', which this process does"):
        encrypting({"k2": K2}, "k2").from_payload(old)
    with pytest.raises(PayloadKeyError, match="'k1' and this process has no payload keys") as e:
        DataConverter().from_payload(old)
    assert e.value.key_id == "k1" and isinstance(e.value, PayloadDecodeError)


def test_a_different_key_under_the_same_id_is_refused_naming_the_id() -> None:
    written = encrypting({"k1": K1}, "k1").to_payload(SECRET)
    with pytest.raises(PayloadKeyError, match="key 'k1' does not authenticate") as e:
        encrypting({"k1": K2}, "k1").from_payload(written)
    assert e.value.key_id == "k1"


@pytest.mark.parametrize(
    "tamper",
    [
        lambda p: Payload(p.data[:20] + bytes([p.data[20] ^ 1]) + p.data[21:], p.metadata),
        lambda p: Payload(p.data[:-1], p.metadata),
        lambda p: Payload(p.data, {**p.metadata, KEY_ID: b"k2"}),  # another held key named
        lambda p: Payload(p.data, {**p.metadata, "extra": b"1"}),  # metadata is bound too
    ],
    ids=["ciphertext", "truncated", "key id", "metadata"],
)
def test_tampering_is_detected(tamper: object) -> None:
    conv = encrypting({"k1": K1, "k2": K2}, "k1")
    written = conv.to_payload(SECRET)
    with pytest.raises(PayloadKeyError, match="does not authenticate"):
        conv.from_payload(tamper(written))  # type: ignore[operator]


def test_payloads_written_before_encryption_was_turned_on_still_decode() -> None:
    plain = DataConverter().to_payload({"a": 1})
    assert encrypting({"k1": K1}, "k1").from_payload(plain) == {"a": 1}


# ---- keys and settings -------------------------------------------------------------------------
def key_text(key: bytes) -> str:
    return base64.b64encode(key).decode()


def test_a_key_file_is_json_or_lines_and_the_settings_never_show_a_key(tmp_path: Path) -> None:
    as_json = tmp_path / "keys.json"
    as_json.write_text(json.dumps({"k1": key_text(K1), "k2": key_text(K2)}))
    as_lines = tmp_path / "keys"
    as_lines.write_text(f"# payload keys\nk1={key_text(K1)}\n\nk2 = {key_text(K2)}\n")
    assert read_key_file(as_json) == read_key_file(as_lines) == {"k1": K1, "k2": K2}

    env = {"EVERFLOW_PAYLOAD_KEYS": str(as_lines), "EVERFLOW_PAYLOAD_KEY_ID": "k2"}
    settings = PayloadSettings.from_env(env)
    assert settings.current_key_id == "k2" and settings.keys == {"k1": K1, "k2": K2}
    assert key_text(K1) not in repr(settings) and repr(K1) not in repr(settings)


@pytest.mark.parametrize(
    ("content", "key_id", "message"),
    [
        ("k1=not base64!\n", None, "payload key 'k1' in .* is not base64"),
        (f"k1={key_text(b'short')}\n", None, "payload key 'k1' in .* is 5 bytes"),
        (f"k1={key_text(K1)}\n", "k9", "current payload key 'k9' .* keys held: k1"),
        (f"k1={key_text(K1)}\nk2={key_text(K2)}\n", None, "holds 2 payload keys: name"),
        ("just a line\n", None, "line 1 of payload key file"),
        ("{not json", None, "is not a JSON object"),
    ],
)
def test_a_bad_key_file_or_key_id_is_a_config_error_naming_it(
    tmp_path: Path, content: str, key_id: str | None, message: str
) -> None:
    path = tmp_path / "keys"
    path.write_text(content)
    env = {"EVERFLOW_PAYLOAD_KEYS": str(path), "EVERFLOW_PAYLOAD_KEY_ID": key_id or ""}
    with pytest.raises(ConfigError, match=message):
        PayloadSettings.from_env(env)


def test_a_missing_key_file_is_a_config_error_naming_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cannot read the payload key file .*nope"):
        PayloadSettings.from_env({"EVERFLOW_PAYLOAD_KEYS": str(tmp_path / "nope")})


def test_the_settings_pick_the_codec_keys_then_a_codec_server_then_none(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text(f"k1={key_text(K1)}\n")
    [local] = configured_codecs(PayloadSettings.from_env({"EVERFLOW_PAYLOAD_KEYS": str(path)}))
    assert isinstance(local, AesGcmCodec) and local.current == "k1"
    remote_env = {"EVERFLOW_CODEC_ENDPOINT": "http://127.0.0.1:8081/"}
    [remote] = configured_codecs(PayloadSettings.from_env(remote_env))
    assert isinstance(remote, RemoteCodec) and remote.endpoint == "http://127.0.0.1:8081"
    assert configured_codecs(PayloadSettings.from_env({})) == []
    with pytest.raises(ConfigError, match="EVERFLOW_CODEC_ENDPOINT must be an http"):
        PayloadSettings.from_env({"EVERFLOW_CODEC_ENDPOINT": "localhost:8081"})


def test_the_ui_and_the_replayer_built_without_a_converter_encrypt_as_the_environment_says(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "keys"
    path.write_text(f"k1={key_text(K1)}\n")
    monkeypatch.setenv("EVERFLOW_PAYLOAD_KEYS", str(path))
    config = KafkaConfig(bootstrap="127.0.0.1:1", topic_prefix="t.")
    ui = Ui(config, UiSettings())
    converters = [ui.converter, Replayer([Vault]).registry.converter, configured_converter()]
    for converter in converters:
        payload = converter.to_payload(SECRET)
        assert payload.metadata[KEY_ID] == b"k1"
        assert configured_converter().from_payload(payload) == SECRET


def test_keys_new_adds_keys_to_a_private_key_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "payload-keys.json"
    assert main(["keys", "new", "--file", str(path), "--id", "k1"]) == 0
    assert main(["keys", "new", "--file", str(path), "--id", "k2"]) == 0
    keys = read_key_file(path)
    assert sorted(keys) == ["k1", "k2"] and all(len(k) == 32 for k in keys.values())
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert main(["keys", "new", "--file", str(path), "--id", "k1"]) == 1
    assert "already holds a key 'k1'" in capsys.readouterr().err
    assert main(["keys", "new"]) == 0
    line = capsys.readouterr().out.strip()
    key_id, _, key = line.partition("=")
    assert key_id.startswith("k") and len(base64.b64decode(key)) == 32


# ---- the codec server --------------------------------------------------------------------------
@pytest.fixture
def server() -> Iterator[CodecServer]:
    server = CodecServer([AesGcmCodec({"k1": K1, "k2": K2}, "k2")], port=0, token="s3cret")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_a_process_without_keys_decodes_through_the_codec_server(server: CodecServer) -> None:
    written = encrypting({"k1": K1}, "k1").to_payloads([SECRET, {"a": 1}])
    remote = DataConverter([RemoteCodec(server.address, token="s3cret")])
    assert remote.from_payloads([*written, DataConverter().to_payload(7)]) == [SECRET, {"a": 1}, 7]
    encoded = remote.to_payload(SECRET)
    assert encoded.metadata[KEY_ID] == b"k2"
    assert encrypting({"k2": K2}, "k2").from_payload(encoded) == SECRET


def test_the_codec_server_names_a_key_it_lacks_and_refuses_a_wrong_token(
    server: CodecServer,
) -> None:
    foreign = encrypting({"k3": generate_key()}, "k3").to_payload(SECRET)
    remote = DataConverter([RemoteCodec(server.address, token="s3cret")])
    with pytest.raises(PayloadKeyError, match=r"refused \(400\).*key 'k3'") as e:
        remote.from_payload(foreign)
    assert e.value.key_id == "k3"
    intruder = DataConverter([RemoteCodec(server.address, token="guess")])
    mine = encrypting({"k1": K1}, "k1").to_payload(SECRET)
    with pytest.raises(PayloadDecodeError, match=r"refused \(401\)"):
        intruder.from_payload(mine)
    with pytest.raises(CodecServerError, match=r"refused \(401\)"):
        intruder.to_payload(SECRET)


def test_an_unreachable_codec_server_is_a_decode_error_naming_it() -> None:
    mine = encrypting({"k1": K1}, "k1").to_payload(SECRET)
    remote = DataConverter([RemoteCodec("http://127.0.0.1:9", timeout=2)])
    with pytest.raises(PayloadDecodeError, match=r"codec server http://127\.0\.0\.1:9 .*cannot be"):
        remote.from_payload(mine)


def test_the_codec_server_will_not_listen_beyond_loopback_without_a_token() -> None:
    with pytest.raises(ConfigError, match="set EVERFLOW_CODEC_TOKEN"):
        CodecServer([AesGcmCodec({"k1": K1}, "k1")], host="0.0.0.0", port=0)


# ---- a run meeting a key it does not hold ------------------------------------------------------
@workflow.defn
class Vault:
    def __init__(self) -> None:
        self.opened: list[str] = []

    @workflow.run
    async def run(self, secret: str) -> str:
        await workflow.wait_condition(lambda: bool(self.opened))
        return f"{secret}/{self.opened[0]}"

    @workflow.signal
    def open(self, who: str) -> None:
        self.opened.append(who)


def test_a_run_whose_key_is_missing_is_blocked_and_resumes_once_the_key_is_there() -> None:
    client = encrypting({"k1": K1}, "k1")
    lacking = Registry([Vault], [], encrypting({"k2": K2}, "k2"))
    run = Run("vault-1", "r-1", 0, lacking)
    run.start(WorkflowStarted("Vault", "q", client.to_payloads([SECRET]), "c"), 1000, Effects())
    assert run.status is RunStatus.RUNNING and run.blocked is not None
    assert run.blocked.type == "PayloadKeyError" and "key 'k1'" in run.blocked.message
    assert not run.try_unblock(2000, Effects())  # still no key: still blocked

    holding = Registry([Vault], [], encrypting({"k1": K1, "k2": K2}, "k2"))
    assert run.try_unblock(3000, Effects(), code=holding)
    assert run.blocked is None
    run.signal("open", client.to_payloads(["alice"]), 4000, Effects())
    assert run.status is RunStatus.COMPLETED
    assert holding.converter.from_payload(run.result) == f"{SECRET}/alice"


def test_a_signal_whose_key_is_missing_blocks_the_run_instead_of_being_dropped() -> None:
    worker = encrypting({"k2": K2}, "k2")
    run = Run("vault-2", "r-2", 0, Registry([Vault], [], worker))
    run.start(WorkflowStarted("Vault", "q", worker.to_payloads([SECRET]), "c"), 1000, Effects())
    foreign = encrypting({"k1": K1}, "k1").to_payloads(["mallory"])
    run.signal("open", foreign, 2000, Effects())
    assert run.blocked is not None and run.blocked.type == "PayloadKeyError"
    holding = Registry([Vault], [], encrypting({"k1": K1, "k2": K2}, "k2"))
    assert run.try_unblock(3000, Effects(), code=holding)
    assert run.status is RunStatus.COMPLETED  # the signal was kept, and now it counts


def test_the_ui_names_the_key_of_a_payload_it_cannot_decrypt() -> None:
    written = encrypting({"k1": K1}, "k1").to_payload(SECRET)
    shown = show_payload(DataConverter(), written)
    assert "encrypted payload (key 'k1'" in shown and "EVERFLOW_CODEC_ENDPOINT" in shown
    assert show_payload(encrypting({"k1": K1}, "k1"), written) == f'"{SECRET}"'


def test_an_exported_event_names_the_key_of_a_payload_it_cannot_decrypt() -> None:
    started = WorkflowStarted("Vault", "q", encrypting({"k1": K1}, "k1").to_payloads([SECRET]), "c")
    shown = event_to_json(HistoryEvent("w", "r", 1, 0, started), DataConverter())
    [arg] = shown["args"]
    assert arg["encrypted_payload"]["key_id"] == "k1" and arg["encrypted_payload"]["bytes"] > 12
