"""The least ACL set of each role: what the code does is allowed, nothing more is."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from confluent_kafka import KafkaError
from confluent_kafka.admin import AclOperation, ResourcePatternType, ResourceType

from streams import ConfigError, KafkaAuthenticationError, KafkaAuthorizationError
from streams.cli import main
from streams.kafka import reader_group, refusal
from streams.kafka.acls import (
    GROUP,
    TOPIC,
    TRANSACTIONAL_ID,
    acl_bindings,
    permits,
    role_acls,
)
from streams.kafka.config import KafkaConfig
from streams.kafka.topics import Topics, topic_specs

ROOT = Path(__file__).resolve().parents[2]
P = "bank."
TOPICS = Topics(P)


def source_names(pattern: str) -> set[str]:
    """The names the code builds as f"{...topic_prefix}<suffix>" in the place `pattern`
    matches, with every other placeholder filled in as the task queue `q`."""
    names = set()
    for path in [*(ROOT / "streams").rglob("*.py"), *(ROOT / "processors").rglob("*.py")]:
        for suffix in re.findall(pattern, path.read_text(), re.DOTALL):
            names.add(P + re.sub(r"\{[^}]*\}", "q", suffix))
    return names


def test_every_consumer_group_the_worker_code_joins_is_granted_to_the_worker() -> None:
    groups = source_names(
        r'kafka\.consumer\(\s*[\w.]+,\s*(?:group_id=)?f"\{[\w.]+topic_prefix\}([^"]*)"'
    )
    assert {f"{P}workflow-processor", f"{P}activities.q", f"{P}visibility"} <= groups
    rules = role_acls("worker", P)
    for group in groups:
        assert permits(rules, GROUP, group, "READ"), group


def test_the_processors_transactional_ids_are_granted_to_the_worker_only() -> None:
    (txn,) = source_names(r'transactional_id = f"\{[\w.]+topic_prefix\}([^"]*)"')
    assert txn == f"{P}wp-q"
    assert permits(role_acls("worker", P), TRANSACTIONAL_ID, f"{P}wp-w1", "WRITE")
    assert not permits(role_acls("worker", P), TRANSACTIONAL_ID, "other.wp-w1", "WRITE")
    for role in ("client", "ui"):
        assert not any(r.resource == TRANSACTIONAL_ID for r in role_acls(role, P))


def test_worker_reads_and_writes_every_topic_of_its_prefix_and_checks_their_settings() -> None:
    rules = role_acls("worker", P)
    config = KafkaConfig(bootstrap="x", topic_prefix=P)
    for spec in topic_specs(config, ["transfers"]):
        for op in ("READ", "WRITE", "DESCRIBE_CONFIGS"):
            assert permits(rules, TOPIC, spec.name, op), (spec.name, op)
    assert permits(rules, TOPIC, TOPICS.tasks("another-queue"), "WRITE")  # children's queues
    assert not permits(rules, TOPIC, "other.commands", "READ")
    assert not permits(rules, TOPIC, TOPICS.commands, "CREATE")  # an admin makes topics


def test_worker_activity_groups_narrow_to_the_task_queues_given() -> None:
    rules = role_acls("worker", P, ["transfers"])
    assert permits(rules, GROUP, f"{P}activities.transfers", "READ")
    assert not permits(rules, GROUP, f"{P}activities.payroll", "READ")
    assert permits(role_acls("worker", P), GROUP, f"{P}activities.payroll", "READ")


def test_client_writes_commands_reads_replies_and_completions_and_nothing_else() -> None:
    rules = role_acls("client", P)
    assert permits(rules, TOPIC, TOPICS.commands, "WRITE")
    assert permits(rules, TOPIC, TOPICS.replies, "READ")
    assert permits(rules, TOPIC, TOPICS.completions, "READ")
    assert permits(
        rules, GROUP, reader_group(KafkaConfig(bootstrap="x", topic_prefix=P)), "DESCRIBE"
    )
    assert not permits(rules, TOPIC, TOPICS.history, "WRITE")
    assert not permits(rules, TOPIC, TOPICS.history, "READ")
    assert not permits(rules, TOPIC, TOPICS.tasks("transfers"), "READ")
    assert not permits(rules, TOPIC, TOPICS.commands, "READ")
    assert not permits(rules, GROUP, f"{P}workflow-processor", "READ")


def test_ui_reads_what_its_pages_show_but_writes_only_commands() -> None:
    rules = role_acls("ui", P)
    for topic in (TOPICS.history, TOPICS.workers, TOPICS.dead_letters, TOPICS.completions):
        assert permits(rules, TOPIC, topic, "READ"), topic
    assert permits(rules, TOPIC, TOPICS.commands, "WRITE")
    assert permits(rules, TOPIC, TOPICS.tasks("transfers"), "DESCRIBE")  # lag, not content
    assert not permits(rules, TOPIC, TOPICS.tasks("transfers"), "READ")
    assert permits(rules, GROUP, f"{P}workflow-processor", "DESCRIBE")
    assert not permits(rules, GROUP, f"{P}workflow-processor", "READ")
    for topic in (TOPICS.history, TOPICS.snapshots, TOPICS.dead_letters, TOPICS.timers):
        assert not permits(rules, TOPIC, topic, "WRITE"), topic


def test_every_rule_stays_under_the_prefix() -> None:
    for role in ("worker", "client", "ui"):
        assert all(r.name.startswith(P) for r in role_acls(role, P)), role


def test_unknown_role_empty_prefix_and_bad_principal_are_refused_by_name() -> None:
    with pytest.raises(ConfigError, match="unknown role 'admin'"):
        role_acls("admin", P)
    with pytest.raises(ConfigError, match="prefix is empty"):
        role_acls("worker", "")
    with pytest.raises(ConfigError, match="User:NAME"):
        acl_bindings(role_acls("client", P), "client")


def test_bindings_carry_the_principal_pattern_and_operation() -> None:
    bindings = acl_bindings(role_acls("worker", P), "User:worker")
    txn = [b for b in bindings if b.restype == ResourceType.TRANSACTIONAL_ID]
    assert [(b.name, b.resource_pattern_type, b.operation) for b in txn] == [
        (f"{P}wp-", ResourcePatternType.PREFIXED, AclOperation.WRITE)
    ]
    assert {b.principal for b in bindings} == {"User:worker"} and {b.host for b in bindings} == {
        "*"
    }


def test_acls_command_prints_the_table_and_help_explains_the_roles(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["acls", "client", "--principal", "User:app", "--prefix", P]) == 0
    out = capsys.readouterr().out
    assert "User:app" in out and "not applied" in out
    assert re.search(r"topic\s+literal\s+bank\.commands\s+write", out)
    assert "history" not in out
    with pytest.raises(SystemExit):
        main(["acls", "--help"])
    assert "transactional IDs" in capsys.readouterr().out
    with pytest.raises(SystemExit) as usage:
        main(["acls", "worker", "--principal", "worker"])
    assert usage.value.code == 2


def test_refusals_become_errors_that_name_the_cause() -> None:
    denied = refusal(KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED), "bank.history", "client")
    assert isinstance(denied, KafkaAuthorizationError)
    assert "User:client" in str(denied) and "topic bank.history" in str(denied)
    txn = refusal(KafkaError(KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED), "bank.wp-1")
    assert isinstance(txn, KafkaAuthorizationError) and "transactional ID bank.wp-1" in str(txn)
    assert isinstance(refusal(KafkaError(KafkaError._AUTHENTICATION)), KafkaAuthenticationError)
    assert isinstance(refusal(KafkaError(KafkaError._SSL)), KafkaAuthenticationError)
    wrong = KafkaError(KafkaError._TRANSPORT, "might be caused by incorrect security.protocol")
    assert "EVERFLOW_KAFKA_SECURITY_PROTOCOL" in str(refusal(wrong))
    assert refusal(KafkaError(KafkaError._TRANSPORT, "Connection refused")) is None
    assert refusal(KafkaError(KafkaError.NOT_COORDINATOR)) is None
