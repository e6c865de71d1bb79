"""What a local broker needs before its JVM starts: jars, configuration, certificates.

The broker's jars are Apache Kafka's own, fetched once from Maven Central through
``deploy/kafka/pom.xml`` into a cache directory (:func:`fetch_kafka`). Its
``server.properties`` (:func:`server_properties`), cluster id, SCRAM users and, for
the secured listeners, a throw-away CA and certificates made with ``openssl``
(:func:`make_tls_files`) are written into its data dir at every start.
:mod:`pipeline.tools.broker` runs the processes.
"""

from __future__ import annotations

import base64
import fcntl
import os
import shutil
import subprocess
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import BrokerError

KAFKA_VERSION = "4.1.1"

KAFKA_POM = Path(__file__).parents[2] / "deploy" / "kafka" / "pom.xml"
#: The broker's log4j2 configuration, beside the pom.
LOG_CONFIG = KAFKA_POM.with_name("log4j2.properties")
_MAVEN_TIMEOUT_SECONDS = 600
#: Lines of a failed tool's output kept in the error message.
LOG_TAIL_LINES = 40


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/cxstream``, or ``~/.cache/cxstream`` when that is unset."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "cxstream"


def fetch_kafka(cache_dir: Path) -> Path:
    """Return the folder holding the Kafka broker's jars, fetching them once.

    Maven runs only when the completion marker for :data:`KAFKA_VERSION` is missing,
    so later calls cost a stat. Concurrent callers (two test sessions) serialise on a
    lock file instead of writing into the same folder at once.

    Raises:
        BrokerError: Maven is missing or failed; the message ends with its output tail.
    """
    home = cache_dir / f"kafka-{KAFKA_VERSION}"
    libs = home / "libs"
    marker = home / ".fetched"
    if marker.exists():
        return libs
    home.mkdir(parents=True, exist_ok=True)
    with (home / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if marker.exists():  # another process fetched while we waited
            return libs
        mvn = shutil.which("mvn")
        if mvn is None:
            raise BrokerError("Maven (mvn) is not on PATH; it fetches the Kafka jars")
        if not KAFKA_POM.exists():
            raise BrokerError(
                f"{KAFKA_POM} is missing; install cxstream editable (pip install -e .)"
            )
        # A half-copied folder from an interrupted run would mix jar versions.
        shutil.rmtree(libs, ignore_errors=True)
        command = [
            mvn,
            "-q",
            "-B",
            "-f",
            str(KAFKA_POM),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={libs}",
            "-DincludeScope=runtime",
        ]
        try:
            done = subprocess.run(
                command,
                capture_output=True,
                text=True,
                timeout=_MAVEN_TIMEOUT_SECONDS,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise BrokerError(f"Maven did not finish in {_MAVEN_TIMEOUT_SECONDS}s") from exc
        if done.returncode != 0 or not any(libs.glob("kafka_2.13-*.jar")):
            output = output_tail((done.stdout or "") + (done.stderr or ""))
            raise BrokerError(f"Maven could not fetch Kafka {KAFKA_VERSION}:\n{output}")
        marker.write_text(KAFKA_VERSION + "\n", encoding="utf-8")
    return libs


def random_cluster_id() -> str:
    """A cluster id in the form ``kafka-storage random-uuid`` prints.

    Generated here to save one JVM start (about a second). Like Kafka's
    ``Uuid.randomUuid`` it is 16 random bytes in unpadded URL-safe base64, never
    all zeroes and never starting with ``-`` (which the CLI would read as an option).
    """
    while True:
        raw = uuid.uuid4().bytes
        text = base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")
        if any(raw) and not text.startswith("-"):
            return text


#: The SASL mechanism of the secured test listener (the one docs/ops.md recommends).
SCRAM_MECHANISM = "SCRAM-SHA-512"
_TLS_DAYS = 7  # a test broker's certificates never need to outlive a few runs


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """A throw-away CA and the certificates it signed, all PEM.

    ``broker_keystore`` holds the broker's PKCS#8 key followed by its certificate
    chain (what Kafka reads with ``ssl.keystore.type=PEM``); the client pair is for
    a listener that requires TLS client authentication.
    """

    ca_file: Path
    broker_keystore: Path
    client_cert: Path
    client_key: Path


def make_tls_files(folder: Path) -> TlsFiles:
    """Make a CA, a broker certificate for 127.0.0.1/localhost and a client one.

    EC P-256 keys: generating them takes milliseconds where RSA takes up to a
    second on a small machine. Nothing here is secret beyond the test run: the
    files live in the broker's data dir and are made afresh at every start.

    Raises:
        BrokerError: ``openssl`` is missing or refused a step (its output says why).
    """
    openssl = shutil.which("openssl")
    if openssl is None:
        raise BrokerError("openssl is not on PATH; it makes the secured listener's certificates")
    folder.mkdir(parents=True, exist_ok=True)
    key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

    def run(*args: str) -> None:
        done = subprocess.run(
            [openssl, *args], cwd=folder, capture_output=True, text=True, timeout=60, check=False
        )
        if done.returncode != 0:
            raise BrokerError(
                f"openssl {args[0]} failed:\n{output_tail(done.stdout + done.stderr)}"
            )

    run(
        "req", "-x509", *key, "-keyout", "ca.key", "-out", "ca.pem", "-days", str(_TLS_DAYS),
        "-subj", "/CN=cxstream throw-away test CA",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip
    for name, usage in (("broker", "serverAuth"), ("client", "clientAuth")):
        (folder / f"{name}.ext").write_text(
            "basicConstraints=CA:FALSE\n"
            "keyUsage=critical,digitalSignature,keyEncipherment\n"
            f"extendedKeyUsage={usage}\n"
            # Clients check the broker's name against the address they dialled.
            "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
            encoding="ascii",
        )
        run("req", "-new", *key, "-keyout", f"{name}.key", "-out", f"{name}.csr",
            "-subj", f"/CN=cxstream-test-{name}")  # fmt: skip
        run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", f"{name}.pem", "-days", str(_TLS_DAYS),
            "-extfile", f"{name}.ext")  # fmt: skip
    keystore = folder / "broker-keystore.pem"
    keystore.write_text(
        "".join(
            (folder / f).read_text(encoding="ascii") for f in ("broker.key", "broker.pem", "ca.pem")
        ),
        encoding="ascii",
    )
    (folder / "ca.key").unlink()  # nothing may sign further certificates with it
    return TlsFiles(
        ca_file=folder / "ca.pem",
        broker_keystore=keystore,
        client_cert=folder / "client.pem",
        client_key=folder / "client.key",
    )


@dataclass(frozen=True, slots=True)
class SecureListeners:
    """The secured listeners of a test broker: where they listen, what they trust."""

    sasl_ssl_port: int
    ssl_port: int
    tls: TlsFiles


def server_properties(
    *, port: int, controller_port: int, log_dir: Path, secure: SecureListeners | None = None
) -> str:
    """The ``server.properties`` text of a single-node broker+controller.

    With ``secure``, two more listeners: ``SASL_SSL`` (SCRAM-SHA-512 over TLS) and
    ``SSL`` (TLS with a required client certificate). The brokers and the
    controller keep talking PLAINTEXT among themselves on loopback.
    """
    listeners = f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}"
    advertised = f"PLAINTEXT://127.0.0.1:{port}"
    protocols = "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"
    if secure is not None:
        extra = f"SASL_SSL://127.0.0.1:{secure.sasl_ssl_port},SSL://127.0.0.1:{secure.ssl_port}"
        listeners = f"{listeners},{extra}"
        advertised = f"{advertised},{extra}"
        protocols = f"{protocols},SASL_SSL:SASL_SSL,SSL:SSL"
    settings = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@127.0.0.1:{controller_port}",
        "listeners": listeners,
        "advertised.listeners": advertised,
        "controller.listener.names": "CONTROLLER",
        "listener.security.protocol.map": protocols,
        "inter.broker.listener.name": "PLAINTEXT",
        "log.dirs": str(log_dir),
        # One node: internal topics cannot have more replicas than brokers.
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "transaction.state.log.num.partitions": "1",
        # Tests and the demo start consumers right after the broker; the default 3 s
        # delay would stall every first rebalance.
        "group.initial.rebalance.delay.ms": "0",
        # Every topic is created explicitly (pipeline.topics), so a typo in a topic
        # name fails loudly instead of creating a stray one-partition topic.
        "auto.create.topics.enable": "false",
    }
    if secure is not None:
        scram = SCRAM_MECHANISM.lower()
        settings.update(
            {
                "listener.name.sasl_ssl.sasl.enabled.mechanisms": SCRAM_MECHANISM,
                f"listener.name.sasl_ssl.{scram}.sasl.jaas.config": (
                    "org.apache.kafka.common.security.scram.ScramLoginModule required;"
                ),
                "ssl.keystore.type": "PEM",
                "ssl.keystore.location": str(secure.tls.broker_keystore),
                "ssl.truststore.type": "PEM",
                "ssl.truststore.location": str(secure.tls.ca_file),
                # The SSL listener is the "TLS with a client certificate" case.
                "listener.name.ssl.ssl.client.auth": "required",
            }
        )
    return "".join(f"{key}={value}\n" for key, value in settings.items())


def scram_arguments(users: Mapping[str, str]) -> list[str]:
    """``kafka-storage format`` arguments that create SCRAM users with the metadata log.

    Names and passwords are restricted to characters the tool's ``[name=..,password=..]``
    syntax cannot misread.
    """
    arguments = []
    for name, password in users.items():
        for value in (name, password):
            if not value or not all(c.isalnum() or c in "-_." for c in value):
                raise BrokerError(
                    f"SCRAM user names and passwords are [A-Za-z0-9._-]+, not {value!r}"
                )
        arguments += ["--add-scram", f"{SCRAM_MECHANISM}=[name={name},password={password}]"]
    return arguments


def output_tail(text: str, lines: int = LOG_TAIL_LINES) -> str:
    """The last ``lines`` lines of a tool's output, for an error message."""
    return "\n".join(text.splitlines()[-lines:])
