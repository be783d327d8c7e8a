"""The least Kafka ACLs each Everflow role needs on a secured cluster, and their creation.

A cluster with an authorizer and `allow.everyone.if.no.acl.found=false` refuses every
principal everything not granted. Each role's set below follows what the code does (a Write or
Read grant implies Describe on the same resource):

- `worker` (`everflow worker`: workflow processor, activity runner, run index projector)
  reads and writes every topic under the prefix: it consumes `commands` and `tasks.<queue>`,
  restores from `history`, `snapshots` and `timers`, writes all of these plus `replies`,
  `completions`, `workers` and `dead-letters` (and `tasks.*` of any queue a workflow
  schedules on), and checks the topics' settings at start (DescribeConfigs). Its groups are
  `<prefix>workflow-processor`, `<prefix>activities.<queue>`, `<prefix>visibility` and
  `<prefix>payload-gc`; its transactional producer's ID is `<prefix>wp-<instance id>`.
  Creating the topics is left to an admin (`everflow topics create` with the admin's
  settings).
- `client` (an application's `Client`): writes `commands`; reads `replies` (answers to its
  requests) and `completions` (`result()`). It can neither read `tasks.*` nor write
  `history`.
- `ui` (the Web UI and the read-only CLI commands: `workers`, `history export`, `audit`):
  what a client does (its buttons send commands), plus reading `history`, `workers` and
  `dead-letters`, and describing every topic and group under the prefix (partition counts,
  end offsets, the workers' groups and lag). Re-publishing a dead letter writes to the
  topic it came from, so it stays an admin's act.

Consumers that only `assign()` (`client`, restores, readers) carry the group ID
`<prefix>reader`, which librdkafka looks up but never joins: each role may Describe it.
No role needs IdempotentWrite on the cluster: since Kafka 3.0 (KIP-679) Write on a topic lets
a producer be idempotent.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import (
    AclBinding,
    AclOperation,
    AclPermissionType,
    ResourcePatternType,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialUpsertion,
)

from streams.errors import BrokerError, ConfigError
from streams.kafka.clients import refusal

ROLES = ("worker", "client", "ui")
"""The roles `role_acls` knows."""

TOPIC, GROUP, TRANSACTIONAL_ID = "TOPIC", "GROUP", "TRANSACTIONAL_ID"
LITERAL, PREFIXED = "LITERAL", "PREFIXED"


@dataclass(frozen=True, slots=True)
class AclRule:
    """One grant a role needs: allow `operation` on the resource(s) `pattern` names.

    `resource` is TOPIC, GROUP or TRANSACTIONAL_ID; `pattern` LITERAL (that name) or
    PREFIXED (every name starting with it); `operation` an ACL operation (READ, WRITE,
    DESCRIBE, DESCRIBE_CONFIGS); `why` says what in Everflow needs it.
    """

    resource: str
    name: str
    pattern: str
    operation: str
    why: str


def role_acls(role: str, prefix: str, task_queues: Sequence[str] = ()) -> list[AclRule]:
    """The least ACLs `role` (worker, client, ui) needs under topic prefix `prefix`.

    `task_queues` narrows a worker's activity groups to those queues (by default every
    queue under the prefix). Raises ConfigError for an unknown role or an empty prefix.
    """
    if not prefix:
        raise ConfigError("the topic prefix is empty: ACLs on every topic are not least")
    if role == "worker":
        return _worker(prefix, task_queues)
    if role == "client":
        return _client(prefix)
    if role == "ui":
        return _ui(prefix)
    raise ConfigError(f"unknown role {role!r}: one of {', '.join(ROLES)}")


def _worker(p: str, task_queues: Sequence[str]) -> list[AclRule]:
    if task_queues:
        activities = [
            AclRule(GROUP, f"{p}activities.{q}", LITERAL, "READ", f"activity runner of {q}")
            for q in task_queues
        ]
    else:
        activities = [AclRule(GROUP, f"{p}activities.", PREFIXED, "READ", "activity runners")]
    return [
        AclRule(TOPIC, p, PREFIXED, "READ", "consumes commands and tasks; restores history,"
                " snapshots, timers"),
        AclRule(TOPIC, p, PREFIXED, "WRITE", "writes history, snapshots, timers, tasks,"
                " replies, completions, commands, workers, dead-letters"),
        AclRule(TOPIC, p, PREFIXED, "DESCRIBE_CONFIGS", "checks the topics' settings at start"),
        AclRule(GROUP, f"{p}workflow-processor", LITERAL, "READ", "workflow processors"),
        *activities,
        AclRule(GROUP, f"{p}visibility", LITERAL, "READ", "the run index's projector"),
        AclRule(GROUP, f"{p}payload-gc", LITERAL, "READ", "picks the worker that removes"
                " stored payloads"),
        AclRule(GROUP, f"{p}reader", LITERAL, "DESCRIBE", "consumers that only assign()"),
        AclRule(TRANSACTIONAL_ID, f"{p}wp-", PREFIXED, "WRITE",
                f"the processor's transactions ({p}wp-<instance id>)"),
    ]  # fmt: skip


def _client(p: str) -> list[AclRule]:
    return [
        AclRule(TOPIC, f"{p}commands", LITERAL, "WRITE", "start, signal, query, update, cancel"),
        AclRule(TOPIC, f"{p}replies", LITERAL, "READ", "answers to its requests"),
        AclRule(TOPIC, f"{p}completions", LITERAL, "READ", "result(): how runs ended"),
        AclRule(GROUP, f"{p}reader", LITERAL, "DESCRIBE", "consumers that only assign()"),
    ]


def _ui(p: str) -> list[AclRule]:
    return [
        *_client(p),
        AclRule(TOPIC, f"{p}history", LITERAL, "READ", "run histories, index lag, audit"),
        AclRule(TOPIC, f"{p}workers", LITERAL, "READ", "the workers' status"),
        AclRule(TOPIC, f"{p}dead-letters", LITERAL, "READ", "the dead letters page"),
        AclRule(TOPIC, p, PREFIXED, "DESCRIBE", "partition counts and end offsets (lag)"),
        AclRule(GROUP, p, PREFIXED, "DESCRIBE", "the workers' groups, members and offsets"),
    ]


_IMPLIED = {"READ": {"READ", "DESCRIBE"}, "WRITE": {"WRITE", "DESCRIBE"}}


def permits(rules: Sequence[AclRule], resource: str, name: str, operation: str) -> bool:
    """Whether `rules` allow `operation` on the resource `name`, as Kafka's authorizer
    decides it: a LITERAL rule names it, a PREFIXED one starts it; Read and Write imply
    Describe."""
    return any(
        r.resource == resource
        and (r.name == name if r.pattern == LITERAL else name.startswith(r.name))
        and operation in _IMPLIED.get(r.operation, {r.operation})
        for r in rules
    )


def acl_bindings(rules: Sequence[AclRule], principal: str, host: str = "*") -> list[AclBinding]:
    """The rules as Kafka ACL bindings allowing `principal` ("User:NAME") from `host`."""
    check_principal(principal)
    return [
        AclBinding(
            ResourceType[r.resource],
            r.name,
            ResourcePatternType[r.pattern],
            principal,
            host,
            AclOperation[r.operation],
            AclPermissionType.ALLOW,
        )
        for r in rules
    ]


def check_principal(principal: str) -> str:
    """`principal` if it reads "User:NAME"; ConfigError otherwise."""
    kind, _, name = principal.partition(":")
    if kind != "User" or not name:
        raise ConfigError(f"a principal reads User:NAME (the SASL user), got {principal!r}")
    return principal


def apply_acls(admin: Any, rules: Sequence[AclRule], principal: str, timeout: float = 30) -> int:
    """Creates the ACLs of `rules` for `principal` (existing ones are kept as they are);
    returns how many bindings were sent. The admin client's principal must be allowed to
    alter ACLs (a super user): KafkaAuthorizationError otherwise."""
    bindings = acl_bindings(rules, principal)
    futures = admin.create_acls(bindings, request_timeout=timeout)
    for binding, future in futures.items():
        try:
            future.result(timeout=timeout)
        except KafkaException as e:
            what = f"of creating ACLs for {principal}"
            raise refusal(e, what, getattr(admin, "principal", None)) or BrokerError(
                f"cannot create the ACL {binding}: {e.args[0].str()}"
            ) from e
    return len(bindings)


def upsert_scram_user(admin: Any, user: str, password: str, timeout: float = 30) -> None:
    """Creates SCRAM-SHA-512 credentials for `user` (or replaces its password); the admin
    client's principal must be allowed to alter the cluster's configuration."""
    upsertion = UserScramCredentialUpsertion(
        user, ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 8192), password.encode()
    )
    future = admin.alter_user_scram_credentials([upsertion], request_timeout=timeout)[user]
    try:
        future.result(timeout=timeout)
    except KafkaException as e:
        what = f"of setting the SCRAM credentials of {user}"
        raise refusal(e, what, getattr(admin, "principal", None)) or BrokerError(
            f"cannot set the SCRAM credentials of {user}: {e.args[0].str()}"
        ) from e
