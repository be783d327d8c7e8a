"""Everflow on a secured broker (SASL_SSL, SCRAM-SHA-512, ACLs denying what is not granted):
the money transfer with worker and client principals holding only `everflow acls`' sets,
and each refusal raised at once as an error that names its cause.

One secure broker serves the whole module (its own, not the session's plaintext one)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import OFFSET_BEGINNING, KafkaError, KafkaException, TopicPartition

from examples.history_consumer import history
from examples.money_transfer import Bank, MoneyTransferSaga, MoneyTransferWorkflow, TransferOrder
from streams import (
    BrokerError,
    Client,
    ConfigError,
    KafkaAuthenticationError,
    KafkaAuthorizationError,
    WorkflowFailureError,
    kafka,
)
from streams.dev.broker import LocalKafka
from streams.kafka.acls import TRANSACTIONAL_ID, apply_acls, role_acls, upsert_scram_user
from streams.kafka.config import KafkaConfig
from streams.kafka.topics import Topics, ensure_topics, partition_count, topic_specs
from tests.integration.workers import ROOT, WorkerProcesses, everflow

pytestmark = pytest.mark.integration
QUEUE = "transfers"
NO_TXN_USER, NO_TXN_PASSWORD = "worker-no-txn", "no-txn-secret"


@dataclass(frozen=True)
class Deployment:
    """The secure broker, a topic prefix with its topics, and the roles' ACLs applied."""

    broker: LocalKafka
    prefix: str

    def config(self, user: str | None, password: str | None = None) -> KafkaConfig:
        """Connection settings as `user` (None: no security settings at all)."""
        settings: dict[str, Any] = {}
        if user is not None:
            assert self.broker.material is not None
            settings = self.broker.material.client_settings("client")
            settings["sasl.username"] = user
            known = self.broker.material.passwords.get(user, NO_TXN_PASSWORD)
            settings["sasl.password"] = password or known
        return KafkaConfig(
            bootstrap=self.broker.bootstrap, topic_prefix=self.prefix, partitions=4, kafka=settings
        )

    def environment(self, user: str, password: str | None, tmp_path: Path) -> dict[str, str]:
        """A worker process's environment, connecting as `user`."""
        env = self.broker.child_environment("worker")
        env["EVERFLOW_KAFKA_SASL_USERNAME"] = user
        if password is not None:
            env["EVERFLOW_KAFKA_SASL_PASSWORD"] = password
        return {
            **env,
            "EVERFLOW_TOPIC_PREFIX": self.prefix,
            "EVERFLOW_PARTITIONS": "4",
            "EVERFLOW_BANK_LEDGER": str(tmp_path / "bank.jsonl"),
            "EVERFLOW_BANK_STEP_TIMEOUT": "5",
            "PYTHONPATH": str(ROOT),
        }


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    broker = LocalKafka(tmp_path_factory.mktemp("secure-kafka"), secure=True)
    try:
        broker.start(timeout=120)
        prefix = f"s-{uuid.uuid4().hex[:8]}."
        admin_config = KafkaConfig(
            bootstrap=broker.bootstrap,
            topic_prefix=prefix,
            partitions=4,
            kafka=broker.client_settings("admin"),
        )
        admin = kafka.admin(admin_config)
        ensure_topics(admin, topic_specs(admin_config, [QUEUE]))  # an admin makes the topics
        # the roles get what `everflow acls` prints, applied by the command as the admin
        for command in (["worker", "--task-queue", QUEUE], ["client"]):
            applied = everflow(
                broker.child_environment("admin"),
                "acls",
                *command,
                "--principal",
                f"User:{command[0]}",
                "--prefix",
                prefix,
                "--apply",
            )
            assert applied.returncode == 0 and "applied" in applied.stdout, applied
        # a worker that lacks only the transactional-ID grant, made at run time
        upsert_scram_user(admin, NO_TXN_USER, NO_TXN_PASSWORD)
        without = [
            r for r in role_acls("worker", prefix, [QUEUE]) if r.resource != TRANSACTIONAL_ID
        ]
        apply_acls(admin, without, f"User:{NO_TXN_USER}")
        yield Deployment(broker, prefix)
    finally:
        broker.close()


def _transfers(client: Client) -> Any:
    async def main() -> tuple[list[str], BaseException | None]:
        timeout = timedelta(seconds=60)
        orders = [TransferOrder("alice", "bob", 10, f"transfer-{i}") for i in range(3)]
        results = await asyncio.gather(
            *(
                client.execute_workflow(
                    MoneyTransferWorkflow, o, id=o.reference, task_queue=QUEUE, timeout=timeout
                )
                for o in orders
            )
        )
        saga = TransferOrder("alice", "closed-bob", 25, "saga-1")
        try:
            await client.execute_workflow(
                MoneyTransferSaga, saga, id=saga.reference, task_queue=QUEUE, timeout=timeout
            )
        except WorkflowFailureError as e:
            return list(results), e
        return list(results), None

    return asyncio.run(main())


def test_money_transfer_and_saga_run_with_worker_and_client_holding_only_their_acls(
    deployment: Deployment, tmp_path: Path
) -> None:
    workers = WorkerProcesses(deployment.environment("worker", None, tmp_path), tmp_path)
    try:
        workers.start("w1")
        client = Client(deployment.config("client"))
        try:
            results, saga_failure = _transfers(client)
        finally:
            client.close()
    finally:
        workers.stop_all()
    assert all(r.startswith("withdrew 10 from alice; deposited 10 into bob") for r in results)
    assert isinstance(saga_failure, WorkflowFailureError)  # the deposit failed, refunded
    bank = Bank(tmp_path / "bank.jsonl")
    assert bank.balance("bob") == 30 and bank.balance("alice") == -30  # the refund came back
    assert {"account": "alice", "delta": 25} in [
        {"account": e["account"], "delta": e["delta"]} for e in bank.entries()
    ]
    assert "Authorization" not in workers.logs(), workers.logs()


def _environ(deployment: Deployment, user: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """This process's EVERFLOW_KAFKA_* variables, connecting as `user`."""
    for name, value in deployment.broker.client_environment(user).items():
        if name.startswith("EVERFLOW_KAFKA_"):
            monkeypatch.setenv(name, value)


def test_a_downstream_consumer_follows_the_same_variables_and_names_a_refusal(
    deployment: Deployment, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    workers = WorkerProcesses(deployment.environment("worker", None, tmp_path), tmp_path)
    reference = f"downstream-{uuid.uuid4().hex[:6]}"
    try:
        workers.start("w1")
        client = Client(deployment.config("client"))
        try:
            asyncio.run(
                client.execute_workflow(
                    MoneyTransferWorkflow, TransferOrder("a", "b", 1, reference),
                    id=reference, task_queue=QUEUE, timeout=timedelta(seconds=60),
                )
            )  # fmt: skip
        finally:
            client.close()
    finally:
        workers.stop_all()
    # the admin reads the history with examples.history_consumer, set up by the environment
    _environ(deployment, "admin", monkeypatch)
    events = list(history(deployment.broker.bootstrap, deployment.prefix, "audit", True, 5.0))
    kinds = [e["type"] for e in events if e["workflow_id"] == reference]
    assert kinds[0] == "WorkflowStarted" and kinds[-1] == "WorkflowCompleted", kinds
    # the client principal may read neither the history nor with a group of its own: said
    # at once, not waited out in silence
    _environ(deployment, "client", monkeypatch)
    with pytest.raises(KafkaException, match=r"(?i)authorization"):
        list(history(deployment.broker.bootstrap, deployment.prefix, "audit", True, 30.0))


def test_a_client_without_security_settings_is_told_the_listener_wants_them(
    deployment: Deployment,
) -> None:
    with pytest.raises(KafkaAuthenticationError, match="EVERFLOW_KAFKA_SECURITY_PROTOCOL"):
        Client(deployment.config(None))
    settings = {**deployment.config("client").kafka}
    del settings["sasl.username"], settings["sasl.password"]
    bare = KafkaConfig(bootstrap=deployment.broker.bootstrap, kafka=settings)
    with pytest.raises((ConfigError, KafkaAuthenticationError), match="sasl"):
        Client(bare)
    Client(deployment.config("client")).close()  # the same broker, with credentials: fine


def test_a_client_may_not_make_missing_topics_and_is_told_to_have_an_admin_do_it(
    deployment: Deployment,
) -> None:
    # a second deployment on the broker: the client role's ACLs granted, no topics made yet
    prefix = f"s-{uuid.uuid4().hex[:8]}."
    admin = kafka.admin(replace(deployment.config("admin"), topic_prefix=prefix))
    apply_acls(admin, role_acls("client", prefix), "User:client")
    config = replace(deployment.config("client"), topic_prefix=prefix)
    with pytest.raises(
        KafkaAuthorizationError,
        match=rf"topic {prefix}commands does not exist, and the cluster's ACLs deny principal "
        r"User:client creating it; run `everflow topics create` \(as an admin\)",
    ):
        Client(config)
    with pytest.raises(BrokerError, match=f"topic {prefix}commands does not exist; run"):
        Client(config, create_topics=False)
    topics = admin.list_topics(timeout=10).topics
    assert not [name for name in topics if name.startswith(prefix)]


@pytest.mark.parametrize(
    ("user", "password"),
    [("client", "wrong-password"), ("nobody", "any")],
    ids=["wrong", "unknown"],
)
def test_a_wrong_password_or_an_unknown_user_is_refused_by_name(
    deployment: Deployment, user: str, password: str
) -> None:
    with pytest.raises(KafkaAuthenticationError, match="SASL credentials of principal User:"):
        Client(deployment.config(user, password))


def test_the_client_principal_may_neither_write_history_nor_read_tasks(
    deployment: Deployment,
) -> None:
    config = deployment.config("client")
    topics = Topics(deployment.prefix)
    delivered: list[KafkaError | None] = []
    producer = kafka.producer(config)
    producer.produce(
        topics.history, b"forged", b"wf-1", on_delivery=lambda e, m: delivered.append(e)
    )
    assert producer.flush(30) == 0
    (error,) = delivered
    assert error is not None and error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    denied = kafka.refusal(error, topics.history, "client")
    assert isinstance(denied, KafkaAuthorizationError)
    assert f"topic {topics.history}" in str(denied)

    reader = kafka.consumer(config, settings={"enable.partition.eof": True})
    try:
        replies = [TopicPartition(topics.replies, 0, OFFSET_BEGINNING)]
        # allowed: read to its end without a refusal (what is there depends on the tests
        # before this one, which share the deployment and may have been answered on it)
        read = list(kafka.read_to_end(reader, replies, time.monotonic() + 30))
        assert all(m.error() is None for m in read)
        tasks = [TopicPartition(topics.tasks(QUEUE), 0, OFFSET_BEGINNING)]
        with pytest.raises(KafkaAuthorizationError, match=f"topic {topics.tasks(QUEUE)}"):
            list(kafka.read_to_end(reader, tasks, time.monotonic() + 30))
    finally:
        reader.close()
    # a topic the ACLs hide is named as denied, not reported missing
    with pytest.raises(KafkaAuthorizationError, match=f"deny .* topic {topics.tasks(QUEUE)}:"):
        partition_count(kafka.admin(config), topics.tasks(QUEUE))
    assert partition_count(kafka.admin(config), topics.commands) == 4


def test_a_worker_without_the_transactional_id_acl_stops_naming_it(
    deployment: Deployment, tmp_path: Path
) -> None:
    env = deployment.environment(NO_TXN_USER, NO_TXN_PASSWORD, tmp_path)
    workers = WorkerProcesses(env, tmp_path)
    try:
        proc = workers.start("nt", options=["--no-visibility"])
        code = proc.wait(120)
    finally:
        workers.stop_all()
    log = workers.log_of(proc)
    assert code == 4, log
    assert f"transactional ID {deployment.prefix}wp-nt" in log, log
    assert f"User:{NO_TXN_USER}" in log and "everflow acls" in log, log
