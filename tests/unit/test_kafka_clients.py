"""KafkaSettings -> client options, in the one module that does it."""

from __future__ import annotations

import ast
import ssl
from pathlib import Path

import faust
import pytest

from pipeline.errors import ConfigError, KafkaAuthError
from pipeline.kafka_clients import (
    aiokafka_options,
    auth_error,
    faust_broker_credentials,
    kafka_python_options,
    sasl_password,
)
from pipeline.settings import KafkaSettings
from pipeline.tools.broker_files import make_tls_files

ROOT = Path(__file__).parents[2]

SCRAM = KafkaSettings(
    bootstrap="b1:9094,b2:9094",
    security_protocol="SASL_SSL",
    sasl_mechanism="SCRAM-SHA-512",
    sasl_username="cx-worker",
    sasl_password="s3cret",
)


@pytest.fixture(scope="module")
def ca_file(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A real CA certificate, made the way the test broker makes its own."""
    return str(make_tls_files(tmp_path_factory.mktemp("tls")).ca_file)


def test_plaintext_settings_give_only_the_bootstrap_list_and_the_protocol() -> None:
    kafka = KafkaSettings(bootstrap="127.0.0.1:9092,127.0.0.1:9093")

    assert kafka_python_options(kafka) == {
        "bootstrap_servers": ["127.0.0.1:9092", "127.0.0.1:9093"],
        "security_protocol": "PLAINTEXT",
    }
    assert aiokafka_options(kafka) == {
        "bootstrap_servers": ["127.0.0.1:9092", "127.0.0.1:9093"],
        "security_protocol": "PLAINTEXT",
    }
    assert faust_broker_credentials(kafka) is None


def test_sasl_ssl_with_scram_maps_to_kafka_python_keywords(ca_file: str) -> None:
    ca = ca_file
    kafka = KafkaSettings(**{**_fields(SCRAM), "ssl_cafile": ca, "ssl_check_hostname": False})

    assert kafka_python_options(kafka) == {
        "bootstrap_servers": ["b1:9094", "b2:9094"],
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "cx-worker",
        "sasl_plain_password": "s3cret",
        "ssl_cafile": ca,
        "ssl_check_hostname": False,
    }


def test_client_certificate_and_key_are_passed_for_tls_client_auth(tmp_path: Path) -> None:
    kafka = KafkaSettings(
        bootstrap="b1:9093",
        security_protocol="SSL",
        ssl_cafile="ca.pem",
        ssl_certfile="client.pem",
        ssl_keyfile="client.key",
    )

    assert kafka_python_options(kafka) == {
        "bootstrap_servers": ["b1:9093"],
        "security_protocol": "SSL",
        "ssl_cafile": "ca.pem",
        "ssl_certfile": "client.pem",
        "ssl_keyfile": "client.key",
        "ssl_check_hostname": True,
    }


def test_aiokafka_gets_an_ssl_context_that_verifies_the_broker(ca_file: str) -> None:
    kafka = KafkaSettings(**{**_fields(SCRAM), "ssl_cafile": ca_file})

    options = aiokafka_options(kafka)
    context = options.pop("ssl_context")

    assert options == {
        "bootstrap_servers": ["b1:9094", "b2:9094"],
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "cx-worker",
        "sasl_plain_password": "s3cret",
    }
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname is True
    assert len(context.get_ca_certs()) == 1


def test_hostname_check_can_be_turned_off_while_the_chain_is_still_verified(
    ca_file: str,
) -> None:
    kafka = KafkaSettings(
        bootstrap="b1:9093",
        security_protocol="SSL",
        ssl_cafile=ca_file,
        ssl_check_hostname=False,
    )

    context = aiokafka_options(kafka)["ssl_context"]

    assert (context.check_hostname, context.verify_mode) == (False, ssl.CERT_REQUIRED)


def test_sasl_plaintext_has_no_ssl_options() -> None:
    kafka = KafkaSettings(**{**_fields(SCRAM), "security_protocol": "SASL_PLAINTEXT"})

    assert "ssl_context" not in aiokafka_options(kafka)
    assert sorted(kafka_python_options(kafka)) == [
        "bootstrap_servers",
        "sasl_mechanism",
        "sasl_plain_password",
        "sasl_plain_username",
        "security_protocol",
    ]


def test_the_password_is_read_from_its_file_without_the_trailing_newline(tmp_path: Path) -> None:
    secret = tmp_path / "kafka-password"
    secret.write_text("from-the-file\n", encoding="utf-8")
    kafka = KafkaSettings(
        **{**_fields(SCRAM), "sasl_password": None, "sasl_password_file": str(secret)}
    )

    assert sasl_password(kafka) == "from-the-file"
    assert kafka_python_options(kafka)["sasl_plain_password"] == "from-the-file"
    assert (
        aiokafka_options(
            KafkaSettings(**{**_fields(kafka), "security_protocol": "SASL_PLAINTEXT"})
        )["sasl_plain_password"]
        == "from-the-file"
    )


def test_a_missing_password_file_is_a_config_error_naming_the_setting(tmp_path: Path) -> None:
    kafka = KafkaSettings(
        **{**_fields(SCRAM), "sasl_password": None, "sasl_password_file": str(tmp_path / "nope")}
    )

    with pytest.raises(ConfigError) as raised:
        kafka_python_options(kafka)

    assert "kafka.sasl_password_file" in str(raised.value)
    assert str(tmp_path / "nope") in str(raised.value)


def test_faust_gets_scram_credentials_over_tls(ca_file: str) -> None:
    kafka = KafkaSettings(**{**_fields(SCRAM), "ssl_cafile": ca_file})

    credentials = faust_broker_credentials(kafka)

    assert isinstance(credentials, faust.SASLCredentials)
    assert (credentials.username, credentials.password) == ("cx-worker", "s3cret")
    assert credentials.mechanism.value == "SCRAM-SHA-512"
    assert credentials.protocol.value == "SASL_SSL"
    assert isinstance(credentials.ssl_context, ssl.SSLContext)


def test_faust_gets_scram_without_tls_on_sasl_plaintext() -> None:
    kafka = KafkaSettings(**{**_fields(SCRAM), "security_protocol": "SASL_PLAINTEXT"})

    credentials = faust_broker_credentials(kafka)

    assert isinstance(credentials, faust.SASLCredentials)
    assert credentials.protocol.value == "SASL_PLAINTEXT"
    assert credentials.ssl_context is None


def test_faust_gets_ssl_credentials_for_plain_tls(ca_file: str) -> None:
    kafka = KafkaSettings(bootstrap="b1:9093", security_protocol="SSL", ssl_cafile=ca_file)

    credentials = faust_broker_credentials(kafka)

    assert isinstance(credentials, faust.SSLCredentials)
    assert credentials.protocol.value == "SSL"
    assert len(credentials.context.get_ca_certs()) == 1


def test_an_authentication_failure_becomes_our_error_naming_mechanism_and_user() -> None:
    from kafka.errors import SaslAuthenticationFailedError

    cause = SaslAuthenticationFailedError("Authentication failed during authentication")

    error = auth_error(SCRAM, cause)

    assert isinstance(error, KafkaAuthError)
    assert str(error) == (
        "Kafka at b1:9094,b2:9094 refused SASL_SSL SCRAM-SHA-512 login as 'cx-worker': "
        "authentication failed (check kafka.sasl_username and the password)"
    )
    assert auth_error(SCRAM, ConnectionRefusedError("nope")) is None


def test_a_certificate_the_broker_refused_is_found_behind_a_closed_connection() -> None:
    from aiokafka.errors import KafkaConnectionError

    alert = ssl.SSLError(1, "[SSL: SSLV3_ALERT_BAD_CERTIFICATE] sslv3 alert bad certificate")
    alert.reason = "SSLV3_ALERT_BAD_CERTIFICATE"
    closed = KafkaConnectionError("Connection at b1:9093 closed")
    closed.__cause__ = alert
    kafka = KafkaSettings(bootstrap="b1:9093", security_protocol="SSL")

    error = auth_error(kafka, closed)

    assert str(error) == (
        "Kafka at b1:9093: the SSL TLS handshake failed: SSLV3_ALERT_BAD_CERTIFICATE "
        "(check kafka.ssl_cafile, ssl_certfile and ssl_keyfile)"
    )


CLIENT_CLASSES = {
    "KafkaProducer": "kafka_python_options",
    "KafkaConsumer": "kafka_python_options",
    "KafkaAdminClient": "kafka_python_options",
    "AIOKafkaProducer": "aiokafka_options",
    "AIOKafkaConsumer": "aiokafka_options",
    "AIOKafkaAdminClient": "aiokafka_options",
}

#: Client constructions that may skip the settings' options, and why.
ALLOWED_WITHOUT_OPTIONS = {
    # The launcher's readiness probe talks to the test broker's own PLAINTEXT
    # listener: it runs before any client settings exist.
    ("pipeline/tools/broker.py", "KafkaAdminClient"),
}


def _calls_without_options(path: Path, root: Path = ROOT) -> list[str]:
    """``file:line Class`` of every client constructed without the settings' options."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    where = path.relative_to(root)
    missing = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
        if name == "App" and isinstance(func, ast.Attribute):
            credentials = {kw.arg: kw.value for kw in node.keywords}.get("broker_credentials")
            if not _calls(credentials, "faust_broker_credentials"):
                missing.append(f"{where}:{node.lineno} faust.App")
            continue
        if name not in CLIENT_CLASSES:
            continue
        spread = [kw.value for kw in node.keywords if kw.arg is None]
        if not any(_calls(value, CLIENT_CLASSES[name]) for value in spread):
            missing.append(f"{where}:{node.lineno} {name}")
    return missing


def _calls(node: ast.AST | None, function: str) -> bool:
    """True if ``node`` holds a call of ``function`` (e.g. ``**{**f(kafka), ...}``)."""
    if node is None:
        return False
    return any(
        isinstance(inner, ast.Call)
        and function in (getattr(inner.func, "id", None), getattr(inner.func, "attr", None))
        for inner in ast.walk(node)
    )


def test_every_kafka_client_the_project_opens_uses_the_settings_security_options() -> None:
    sources = sorted((ROOT / "pipeline").rglob("*.py")) + sorted((ROOT / "agents").rglob("*.py"))
    missing = [
        call
        for path in sources
        if path.name != "kafka_clients.py"
        for call in _calls_without_options(path)
        if (call.split(":")[0], call.rsplit(" ", 1)[1]) not in ALLOWED_WITHOUT_OPTIONS
    ]

    assert missing == []


def test_the_client_check_finds_constructors_without_options(tmp_path: Path) -> None:
    """The test above would pass vacuously if the check found nothing."""
    sample = tmp_path / "sample.py"
    sample.write_text(
        "good = KafkaProducer(**{**kafka_python_options(k), 'acks': 'all'})\n"
        "bad = KafkaProducer(bootstrap_servers='x')\n"
        "app = faust.App('id', broker='kafka://x')\n"
        "fine = faust.App('id', broker_credentials=faust_broker_credentials(k))\n"
        "aio = AIOKafkaConsumer(**kafka_python_options(k))\n",
        encoding="utf-8",
    )

    assert _calls_without_options(sample, tmp_path) == [
        "sample.py:2 KafkaProducer",
        "sample.py:3 faust.App",
        "sample.py:5 AIOKafkaConsumer",
    ]


def _fields(kafka: KafkaSettings) -> dict[str, object]:
    return {name: getattr(kafka, name) for name in kafka.__slots__}
