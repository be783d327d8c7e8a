"""`everflow acls worker|client|ui`: the least Kafka ACLs a role needs, printed or applied."""

from __future__ import annotations

import argparse

from streams import kafka
from streams.cli.common import SubParsers, add_connection_arguments, add_subparser, kafka_config
from streams.cli.output import table
from streams.errors import ConfigError
from streams.kafka.acls import ROLES, AclRule, apply_acls, check_principal, role_acls
from streams.kafka.config import DEFAULT_PREFIX, topic_prefix_from_env

_DESCRIPTION = """\
Print the least Kafka ACLs one Everflow role needs on a cluster whose authorizer denies
what is not granted (allow.everyone.if.no.acl.found=false), or create them with --apply.

roles:
  worker  `everflow worker`: reads and writes every topic under the prefix, its consumer
          groups, the transactional IDs <prefix>wp-<instance id> of its processors
  client  an application's Client: writes <prefix>commands, reads <prefix>replies and
          <prefix>completions; it can neither read tasks nor write history
  ui      the Web UI and the read-only commands (workers, history export, audit): a
          client's rights plus reading history, workers, dead-letters and describing the
          prefix's topics and groups

Topics and transactional IDs are matched by prefix where a role uses every name under it
(PREFIXED), else named one by one (LITERAL). Topics are created by an admin
(`everflow topics create` with the admin's EVERFLOW_KAFKA_* settings), not by the roles.
--apply connects with EVERFLOW_BOOTSTRAP and EVERFLOW_KAFKA_* (an admin principal allowed
to alter ACLs, e.g. a super user) and creates the bindings; existing ones are kept."""


def add_parser(subparsers: SubParsers) -> None:
    """Register `acls`."""
    acls = add_subparser(
        subparsers,
        "acls",
        "print or apply the Kafka ACLs a role (worker, client, ui) needs",
        _DESCRIPTION,
    )
    acls.formatter_class = argparse.RawDescriptionHelpFormatter
    acls.add_argument("role", choices=ROLES, help="the role whose ACLs to print or apply")
    acls.add_argument(
        "--principal",
        required=True,
        type=_principal,
        help="who gets them: User:NAME, NAME being the SASL user the role connects as",
    )
    add_connection_arguments(acls)  # --bootstrap (for --apply), --topic-prefix/-n
    acls.add_argument(
        "--prefix",
        dest="topic_prefix",
        help="the deployment's topic prefix, as --topic-prefix (default: EVERFLOW_TOPIC_PREFIX,"
        f" else {DEFAULT_PREFIX})",
    )
    acls.add_argument(
        "--task-queue",
        "-t",
        action="append",
        default=[],
        help="worker: grant only this queue's activity group (repeatable; default every queue)",
    )
    acls.add_argument(
        "--apply", action="store_true", help="create the ACLs on the cluster (else only print)"
    )
    acls.set_defaults(run=acls_command)


def _principal(text: str) -> str:
    try:
        return check_principal(text)
    except ConfigError as e:  # argparse turns it into a usage error
        raise argparse.ArgumentTypeError(str(e)) from None


def acls_command(args: argparse.Namespace) -> int:
    """`everflow acls`: the table of the role's ACLs; with --apply, also creates them."""
    prefix = args.topic_prefix or topic_prefix_from_env()
    rules = role_acls(args.role, prefix, args.task_queue)
    print(f"ACLs for {args.principal} as {args.role} (topic prefix {prefix!r}):")
    for line in format_rules(rules):
        print(f"  {line}")
    if not args.apply:
        print("not applied: add --apply (with an admin's EVERFLOW_KAFKA_* settings) to create them")
        return 0
    config = kafka_config(args).with_prefix(prefix)
    count = apply_acls(kafka.admin(config), rules, args.principal)
    print(f"applied {count} ACLs on {config.bootstrap}")
    return 0


def format_rules(rules: list[AclRule]) -> list[str]:
    """The rules as an aligned table: resource, pattern, name, operation, why."""
    rows = [
        (r.resource.lower(), r.pattern.lower(), r.name, r.operation.lower(), r.why) for r in rules
    ]
    return table(("RESOURCE", "PATTERN", "NAME", "OPERATION", "NEEDED FOR"), rows)
