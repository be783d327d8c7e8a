"""Payload encryption on a real broker, with real worker processes configured through the
environment: no plaintext of a secret in any topic, a key rotation mid-workload, a worker
missing a key blocking the run until a worker with the key resumes it, and the CLI reading
results through a codec server."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import signal
import subprocess
from collections.abc import Awaitable, Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from streams import Client, PayloadKeyError, kafka
from streams.codec_server import CodecServer
from streams.encryption import AesGcmCodec, configured_converter, generate_key
from streams.kafka.config import KafkaConfig
from streams.kafka.topics import Topics, ensure_topics, topic_specs
from streams.payload import KEY_ID, DataConverter, Payload
from streams.payload_settings import PayloadSettings
from streams.wire.events import ActivityAttemptFailed
from streams.wire.history_json import event_to_json
from streams.wire.records import Failure, RunStatus
from tests.faults.records import read_topic
from tests.helpers import wait_until
from tests.integration.workers import WorkerProcesses, everflow
from tests.integration.workers import with_client as run_with_client

pytestmark = pytest.mark.integration
QUEUE = "vault"
APP = "tests.integration.apps.vault"
SECRET = "4111-1111-1111-1111"
WAIT = timedelta(seconds=60)
K1, K2 = generate_key(), generate_key()


@pytest.fixture
def config(kafka_bootstrap: str, topic_prefix: str) -> KafkaConfig:
    cfg = KafkaConfig(bootstrap=kafka_bootstrap, topic_prefix=topic_prefix, partitions=4)
    ensure_topics(kafka.admin(cfg), topic_specs(cfg, [QUEUE]))
    return cfg


def key_file(path: Path, keys: dict[str, bytes], current: str | None = None) -> dict[str, str]:
    """Writes `keys` to `path`; the environment that points a process at them."""
    path.write_text(json.dumps({k: base64.b64encode(v).decode() for k, v in keys.items()}))
    return {"EVERFLOW_PAYLOAD_KEYS": str(path), "EVERFLOW_PAYLOAD_KEY_ID": current or ""}


def converter_of(env: dict[str, str]) -> DataConverter:
    return configured_converter(PayloadSettings.from_env(env))


def with_client(
    config: KafkaConfig, converter: DataConverter | None, body: Callable[[Client], Awaitable[Any]]
) -> Any:
    return run_with_client(config, body, converter)


async def sealed(client: Client, workflow_id: str) -> None:
    """Waits until the run's activity completed (its query says what it sealed)."""
    handle = client.get_workflow_handle(workflow_id)
    for _ in range(600):
        if await handle.query("stage"):
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{workflow_id}'s activity never completed")


async def blocked(client: Client, workflow_id: str) -> Failure:
    handle = client.get_workflow_handle(workflow_id)
    for _ in range(600):
        d = await handle.describe()
        if d.blocked is not None:
            assert d.status is RunStatus.RUNNING
            return d.blocked
        await asyncio.sleep(0.1)
    raise AssertionError(f"{workflow_id} never blocked")


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    proc.wait(30)


def payloads_in(value: Any) -> Iterator[Payload]:
    if isinstance(value, Payload):
        yield value
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            yield from payloads_in(getattr(value, f.name))
    elif isinstance(value, list | tuple):
        for item in value:
            yield from payloads_in(item)


def test_a_secret_argument_never_reaches_the_topics_in_plaintext(
    config: KafkaConfig, workers: WorkerProcesses, worker_env: dict[str, str], tmp_path: Path
) -> None:
    keys = key_file(tmp_path / "keys.json", {"k1": K1})
    workers.start("w1", APP, task_queue=QUEUE, extra_env=keys)

    async def secret_run(client: Client) -> str:
        handle = await client.start_workflow("CardCheck", SECRET, id="card-1", task_queue=QUEUE)
        await sealed(client, "card-1")
        await handle.signal("approve", f"approver of {SECRET}")
        return await handle.result(timeout=WAIT)  # type: ignore[no-any-return]

    async def plain_run(client: Client) -> PayloadKeyError:
        # the control: a client without keys sends its argument and signal in plaintext
        handle = await client.start_workflow(
            "CardCheck", "PLAINCONTROL", id="card-0", task_queue=QUEUE
        )
        await handle.signal("approve", "PLAINCONTROL-approver")
        with pytest.raises(PayloadKeyError) as refused:  # the worker's result is encrypted
            await handle.result(timeout=WAIT)
        return refused.value

    result = with_client(config, converter_of(keys), secret_run)
    refused = with_client(config, DataConverter(), plain_run)

    assert result == f"sealed:{SECRET}|approver of {SECRET}"
    assert refused.key_id == "k1" and "key 'k1'" in str(refused)
    topics = Topics(config.topic_prefix)
    snapshot_keys = lambda: {r.key for r in read_topic(config, topics.snapshots)}  # noqa: E731
    wait_until(lambda: {b"card-1", b"card-0"} <= snapshot_keys(), timeout=60)
    names = [topics.commands, topics.history, topics.snapshots, topics.completions]
    names += [topics.replies, topics.timers, topics.tasks(QUEUE)]
    raw = {name: read_topic(config, name) for name in names}
    for name, records in raw.items():
        for r in records:
            seen = b"".join([r.key or b"", r.value or b"", *(v for _, v in r.headers)])
            assert SECRET.encode() not in seen, f"{SECRET} in plaintext at {name}@{r.offset}"
    # the scan can see plaintext where there is some, and the secret run's payloads are there,
    # encrypted under k1
    for name in (topics.commands, topics.history, topics.snapshots):
        assert any(b"PLAINCONTROL" in (r.value or b"") for r in raw[name]), name
    history = b"".join(r.value or b"" for r in raw[topics.history])
    assert b"binary/encrypted" in history and b"encryption-key-id" in history
    assert len(raw[topics.tasks(QUEUE)]) >= 2 and raw[topics.completions]

    # the CLI holds no key: through a codec server it reads the result, without one it
    # names the key it lacks
    server = CodecServer([AesGcmCodec({"k1": K1}, "k1")], port=0)
    server.start()
    try:
        through = {**worker_env, "EVERFLOW_CODEC_ENDPOINT": server.address}
        shown = everflow(through, "workflow", "result", "-w", "card-1", "-o", "json")
    finally:
        server.stop()
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout) == result
    keyless = everflow(worker_env, "workflow", "result", "-w", "card-1")
    assert keyless.returncode == 1 and "encrypted with key 'k1'" in keyless.stderr


def test_a_key_rotation_mid_workload_leaves_every_run_readable(
    config: KafkaConfig, workers: WorkerProcesses, tmp_path: Path
) -> None:
    path = tmp_path / "keys.json"
    old = key_file(path, {"k1": K1})
    first = workers.start("w1", APP, task_queue=QUEUE, extra_env=old)
    before = [f"before-{i}" for i in range(4)]

    async def start_before(client: Client) -> None:
        for wid in before:
            await client.start_workflow("CardCheck", f"{SECRET}/{wid}", id=wid, task_queue=QUEUE)
        for wid in before:
            await sealed(client, wid)

    with_client(config, converter_of(old), start_before)
    # the rotation: k2 joins the key file and becomes the current key; k1 stays to read
    new = key_file(path, {"k1": K1, "k2": K2}, current="k2")
    stop(first)
    workers.start("w2", APP, task_queue=QUEUE, extra_env=new)
    after = [f"after-{i}" for i in range(2)]
    rotated = converter_of(new)

    async def finish_all(client: Client) -> dict[str, Any]:
        for wid in after:
            await client.start_workflow("CardCheck", f"{SECRET}/{wid}", id=wid, task_queue=QUEUE)
        results, seen = {}, {}
        for wid in before + after:
            handle = client.get_workflow_handle(wid)
            await handle.signal("approve", "ops")
            results[wid] = await handle.result(timeout=WAIT)
            seen[wid] = await handle.fetch_history()
        return {"results": results, "histories": seen}

    done = with_client(config, rotated, finish_all)

    assert done["results"] == {w: f"sealed:{SECRET}/{w}|ops" for w in before + after}
    used: dict[str, set[bytes]] = {}
    for wid, events in done["histories"].items():
        shown = json.dumps([event_to_json(e, rotated) for e in events], default=str)
        assert "undecodable_payload" not in shown and f"{SECRET}/{wid}" in shown
        used[wid] = {p.metadata[KEY_ID] for e in events for p in payloads_in(e.attributes)}
    assert all(used[w] == {b"k1", b"k2"} for w in before)  # runs that lived across it
    assert all(used[w] == {b"k2"} for w in after)
    first_args = done["histories"]["before-0"][0].attributes.args
    with pytest.raises(PayloadKeyError, match="'k1'"):  # k1 is still needed to read them
        converter_of(key_file(tmp_path / "k2.json", {"k2": K2})).from_payloads(first_args)


def test_a_worker_missing_the_key_blocks_the_run_and_a_worker_with_it_resumes_it(
    config: KafkaConfig, workers: WorkerProcesses, tmp_path: Path
) -> None:
    lacking = key_file(tmp_path / "k2.json", {"k2": K2})
    first = workers.start("w1", APP, task_queue=QUEUE, extra_env=lacking)
    sender = converter_of(key_file(tmp_path / "k1.json", {"k1": K1}))

    async def start(client: Client) -> Failure:
        await client.start_workflow("CardCheck", SECRET, id="card-k1", task_queue=QUEUE)
        return await blocked(client, "card-k1")

    reason = with_client(config, sender, start)

    assert reason.type == "PayloadKeyError"
    assert "encrypted with key 'k1', which this process does not hold" in reason.message
    stop(first)
    holding = key_file(tmp_path / "both.json", {"k1": K1, "k2": K2}, current="k2")
    workers.start("w2", APP, task_queue=QUEUE, extra_env=holding)

    async def resume(client: Client) -> tuple[str, list[str]]:
        await sealed(client, "card-k1")
        handle = client.get_workflow_handle("card-k1")
        await handle.signal("approve", "ops")
        result = await handle.result(timeout=WAIT)
        kinds = [type(e.attributes).__name__ for e in await handle.fetch_history()]
        return result, kinds

    result, kinds = with_client(config, converter_of(holding), resume)

    assert result == f"sealed:{SECRET}|ops"
    assert kinds.index("WorkflowBlocked") < kinds.index("WorkflowUnblocked")
    assert kinds[-1] == "WorkflowCompleted" and "WorkflowFailed" not in kinds


def test_an_activity_worker_missing_the_key_fails_attempts_with_the_key_error_and_goes_on(
    config: KafkaConfig, workers: WorkerProcesses, tmp_path: Path
) -> None:
    holding = key_file(tmp_path / "k1.json", {"k1": K1})
    lacking = key_file(tmp_path / "k2.json", {"k2": K2})
    workers.start("wf", APP, task_queue=QUEUE, extra_env=holding, options=["--no-activities"])
    runner = workers.start(
        "act-1", APP, task_queue=QUEUE, extra_env=lacking, options=["--no-workflows"]
    )

    async def first_failure(client: Client) -> Failure:
        handle = await client.start_workflow("CardCheck", SECRET, id="card-a", task_queue=QUEUE)
        await handle.signal("approve", "ops")
        for _ in range(600):
            for event in await handle.fetch_history():
                if isinstance(event.attributes, ActivityAttemptFailed):
                    return event.attributes.failure
            await asyncio.sleep(0.1)
        raise AssertionError("no attempt of card-a's activity failed")

    failure = with_client(config, converter_of(holding), first_failure)

    assert failure.type == "PayloadKeyError" and "with key 'k1'" in failure.message
    assert runner.poll() is None  # the runner went on
    stop(runner)
    workers.start("act-2", APP, task_queue=QUEUE, extra_env=holding, options=["--no-workflows"])

    async def result(client: Client) -> str:
        return await client.get_workflow_handle("card-a").result(timeout=WAIT)  # type: ignore[no-any-return]

    assert with_client(config, converter_of(holding), result) == f"sealed:{SECRET}|ops"
