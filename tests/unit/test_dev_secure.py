"""The secure local broker's config and the settings its users connect with (no JVM)."""

from __future__ import annotations

from pathlib import Path

from streams.dev.secure import SecureMaterial, scram_arguments, secure_properties
from streams.kafka.config import KafkaConfig

MATERIAL = SecureMaterial(
    Path("/data/secure"), "store-pw", {"admin": "a-pw", "worker": "w-pw", "client": "c-pw"}
)


def test_clients_get_only_sasl_ssl_and_acls_deny_what_is_not_granted() -> None:
    props = secure_properties(MATERIAL, 9092, 9093)
    assert props["listeners"] == "SASL_SSL://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093"
    assert props["listener.security.protocol.map"] == "CONTROLLER:SSL,SASL_SSL:SASL_SSL"
    # the controllers admit only a node's certificate: nobody is anonymous, nor a super user
    assert props["listener.name.controller.ssl.client.auth"] == "required"
    assert props["super.users"] == "User:admin;User:CN=localhost"
    assert props["sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
    assert props["authorizer.class.name"].endswith("StandardAuthorizer")
    assert props["allow.everyone.if.no.acl.found"] == "false"
    assert props["super.users"].split(";")[0] == "User:admin"
    assert (
        'username="admin" password="a-pw"'
        in props["listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config"]
    )
    assert props["ssl.keystore.location"] == "/data/secure/broker.p12"


def test_every_user_is_created_at_format_time() -> None:
    args = scram_arguments(MATERIAL)
    assert args[0::2] == ["--add-scram"] * 3
    assert "SCRAM-SHA-512=[name=client,password=c-pw]" in args


def test_a_users_environment_reaches_librdkafka_through_kafka_config() -> None:
    env = MATERIAL.environment("worker", "127.0.0.1:9092")
    config = KafkaConfig.from_env(env)
    settings = config.client_settings()
    assert settings["bootstrap.servers"] == "127.0.0.1:9092"
    assert settings["security.protocol"] == "SASL_SSL"
    assert settings["sasl.mechanism"] == "SCRAM-SHA-512"
    assert settings["sasl.username"] == "worker" and settings["sasl.password"] == "w-pw"
    assert settings["ssl.ca.location"] == "/data/secure/ca.crt"
