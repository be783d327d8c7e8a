"""What a secured local broker needs: a CA, the broker's keystore, SCRAM users, its config.

`secure_material(directory, java)` makes (once; later calls read it back) a CA (`ca.crt`,
the file clients name in `ssl.ca.location`), the broker's PKCS12 keystore signed by it (SAN
localhost and 127.0.0.1, so librdkafka's default hostname check passes), a PKCS12 truststore
holding the CA (the broker's own inter-broker client), and a random password for the
broker's admin principal and for each role's user (`worker`, `client`, `ui`), kept in
`credentials.json` (mode 0600). The CA and keystore come from `openssl` and the JDK's
`keytool`; nothing is asked on a terminal.

`secure_properties()` is the broker config for that: one SASL_SSL listener for clients and
brokers (SCRAM-SHA-512 only), `StandardAuthorizer` denying what no ACL allows, and the
admin principal as super user. The controller listener speaks mutual TLS: only a holder of
a certificate signed by the CA (the nodes' keystore, subject CN=localhost, a super user
too) gets past its handshake; nobody is ANONYMOUS anywhere.
The users are created when the data dir is formatted (`scram_arguments()`).
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from streams.errors import BrokerError

log = logging.getLogger(__name__)

ADMIN_USER = "admin"
"""The broker's own principal (inter-broker, super user); the admin of ACLs and users."""

ROLE_USERS = ("worker", "client", "ui")
"""The users made for Everflow's roles (see `everflow acls`)."""

MECHANISM = "SCRAM-SHA-512"
NODE_PRINCIPAL = "CN=localhost"  # the keystore certificate's subject: a node to a controller
CREDENTIALS = "credentials.json"
_SAN = "dns:localhost,ip:127.0.0.1"
_DAYS = "825"


@dataclass(frozen=True, slots=True)
class SecureMaterial:
    """The files and passwords of a secured local broker (see the module docstring)."""

    directory: Path
    store_password: str
    passwords: dict[str, str]

    @property
    def ca_path(self) -> Path:
        """The CA certificate (PEM): `ssl.ca.location` of every client."""
        return self.directory / "ca.crt"

    @property
    def keystore(self) -> Path:
        return self.directory / "broker.p12"

    @property
    def truststore(self) -> Path:
        return self.directory / "truststore.p12"

    @property
    def credentials_path(self) -> Path:
        """The users, their passwords and the CA's path, as JSON (mode 0600)."""
        return self.directory / CREDENTIALS

    def client_settings(self, user: str = ADMIN_USER) -> dict[str, str]:
        """librdkafka settings to connect as `user` (one of `passwords`)."""
        return {
            "security.protocol": "SASL_SSL",
            "sasl.mechanism": MECHANISM,
            "sasl.username": user,
            "sasl.password": self.passwords[user],
            "ssl.ca.location": str(self.ca_path),
        }

    def environment(self, user: str, bootstrap: str) -> dict[str, str]:
        """The `EVERFLOW_*` variables that connect Everflow as `user`."""
        env = {"EVERFLOW_BOOTSTRAP": bootstrap}
        for key, value in self.client_settings(user).items():
            env[f"EVERFLOW_KAFKA_{key.replace('.', '_').upper()}"] = value
        return env

    def write_env_files(self, bootstrap: str) -> dict[str, Path]:
        """One `<user>.env` per user (`export NAME=value` lines, mode 0600), for `source`."""
        written = {}
        for user in self.passwords:
            lines = "".join(
                f"export {k}={v}\n" for k, v in self.environment(user, bootstrap).items()
            )
            written[user] = _write_private(self.directory / f"{user}.env", lines)
        return written


def secure_material(directory: Path, java: str) -> SecureMaterial:
    """The CA, keystore, truststore and passwords under `directory`, made on first use.

    `java` is the broker's java binary; its `keytool` makes the keystores. Raises
    BrokerError naming the step that failed (openssl or keytool missing or failing).
    """
    directory.mkdir(parents=True, exist_ok=True)
    credentials = directory / CREDENTIALS
    if credentials.is_file():
        stored = json.loads(credentials.read_text())
        material = SecureMaterial(directory, stored["store_password"], dict(stored["users"]))
        if material.keystore.is_file() and material.truststore.is_file():
            return material
    users = (ADMIN_USER, *ROLE_USERS)
    material = SecureMaterial(
        directory, secrets.token_hex(16), {u: secrets.token_urlsafe(18) for u in users}
    )
    _make_stores(material, _keytool(java))
    record = {
        "mechanism": MECHANISM,
        "ca": str(material.ca_path),
        "users": material.passwords,
        "store_password": material.store_password,
    }
    # written last: its presence says the stores are whole
    _write_private(credentials, json.dumps(record, indent=2) + "\n")
    log.info("made a CA and broker keystore in %s", directory)
    return material


def secure_properties(material: SecureMaterial, port: int, controller_port: int) -> dict[str, str]:
    """The server.properties entries of a SASL_SSL node (added over `_node_properties`)."""
    listeners = f"SASL_SSL://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}"
    admin_password = material.passwords[ADMIN_USER]
    return {
        "listeners": listeners,
        "advertised.listeners": listeners,
        "inter.broker.listener.name": "SASL_SSL",
        # the controllers talk mutual TLS: a node proves itself with its keystore's
        # certificate (principal User:CN=localhost), anything else is refused at the handshake
        "listener.security.protocol.map": "CONTROLLER:SSL,SASL_SSL:SASL_SSL",
        "listener.name.controller.ssl.client.auth": "required",
        "sasl.enabled.mechanisms": MECHANISM,
        "sasl.mechanism.inter.broker.protocol": MECHANISM,
        "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config": (
            "org.apache.kafka.common.security.scram.ScramLoginModule required "
            f'username="{ADMIN_USER}" password="{admin_password}";'
        ),
        "ssl.keystore.type": "PKCS12",
        "ssl.keystore.location": str(material.keystore),
        "ssl.keystore.password": material.store_password,
        "ssl.key.password": material.store_password,
        "ssl.truststore.type": "PKCS12",
        "ssl.truststore.location": str(material.truststore),
        "ssl.truststore.password": material.store_password,
        "ssl.client.auth": "none",
        "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "allow.everyone.if.no.acl.found": "false",
        "super.users": f"User:{ADMIN_USER};User:{NODE_PRINCIPAL}",
    }


def scram_arguments(material: SecureMaterial) -> list[str]:
    """`kafka-storage format` arguments creating every user at format time."""
    arguments = []
    for user, password in material.passwords.items():
        arguments += ["--add-scram", f"{MECHANISM}=[name={user},password={password}]"]
    return arguments


def _keytool(java: str) -> str:
    beside = Path(java).resolve().parent / "keytool"
    found = str(beside) if os.access(beside, os.X_OK) else shutil.which("keytool")
    if not found:
        raise BrokerError(f"no keytool beside {java} nor on PATH; it makes the broker keystore")
    return found


def _make_stores(m: SecureMaterial, keytool: str) -> None:
    d, password = m.directory, m.store_password
    for stale in ("ca.key", "ca.crt", "ca.srl", "broker.p12", "broker.csr", "broker.crt"):
        (d / stale).unlink(missing_ok=True)
    m.truststore.unlink(missing_ok=True)
    store = ["-storetype", "PKCS12", "-storepass", password, "-noprompt"]
    # fmt: off
    _run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-sha256", "-days", "3650",
          "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-subj", "/CN=everflow-dev-ca"], d)
    _run([keytool, "-genkeypair", "-alias", "broker", "-keyalg", "RSA", "-keysize", "2048",
          "-validity", _DAYS, "-dname", "CN=localhost", "-ext", f"SAN={_SAN}",
          "-keystore", "broker.p12", "-keypass", password, *store], d)
    _run([keytool, "-certreq", "-alias", "broker", "-keystore", "broker.p12",
          "-ext", f"SAN={_SAN}", "-file", "broker.csr", *store], d)
    (d / "san.ext").write_text(
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n"
    )
    _run(["openssl", "x509", "-req", "-in", "broker.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
          "-CAcreateserial", "-out", "broker.crt", "-days", _DAYS, "-sha256",
          "-extfile", "san.ext"], d)
    # the CA first, so the signed certificate's chain is complete when it replaces the key's
    _run([keytool, "-importcert", "-alias", "ca", "-file", "ca.crt",
          "-keystore", "broker.p12", *store], d)
    _run([keytool, "-importcert", "-alias", "broker", "-file", "broker.crt",
          "-keystore", "broker.p12", *store], d)
    _run([keytool, "-importcert", "-alias", "ca", "-file", "ca.crt",
          "-keystore", "truststore.p12", *store], d)
    # fmt: on
    os.chmod(d / "ca.key", 0o600)
    os.chmod(m.keystore, 0o600)


def _run(command: list[str], cwd: Path) -> None:
    if shutil.which(command[0]) is None and not os.access(command[0], os.X_OK):
        raise BrokerError(f"{command[0]} is not installed; it is needed for the broker's TLS")
    result = subprocess.run(
        command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False
    )
    if result.returncode != 0:
        shown = " ".join(command[:2])
        raise BrokerError(
            f"making the broker's TLS material failed at `{shown} …` "
            f"(exit {result.returncode}):\n{result.stdout.strip()[-2000:]}"
        )


def _write_private(path: Path, text: str) -> Path:
    partial = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(partial, path)
    return path
