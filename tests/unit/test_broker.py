import base64
import contextlib
import ssl
from pathlib import Path

import pytest

from pipeline.errors import BrokerError
from pipeline.tools.broker_files import (
    KAFKA_VERSION,
    SecureListeners,
    TlsFiles,
    fetch_kafka,
    make_tls_files,
    random_cluster_id,
    scram_arguments,
    server_properties,
)


def test_cluster_ids_are_sixteen_bytes_of_url_safe_base64_never_starting_with_a_dash() -> None:
    ids = [random_cluster_id() for _ in range(2000)]

    assert {len(cluster_id) for cluster_id in ids} == {22}
    assert [i for i in ids if i.startswith("-")] == []
    assert {len(base64.urlsafe_b64decode(i + "==")) for i in ids} == {16}
    assert len(set(ids)) == 2000


def test_server_properties_describe_one_local_node_without_topic_auto_creation() -> None:
    lines = server_properties(port=19092, controller_port=19093, log_dir=Path("data")).splitlines()
    settings = dict(line.split("=", 1) for line in lines)

    assert settings["listeners"] == "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"
    assert settings["advertised.listeners"] == "PLAINTEXT://127.0.0.1:19092"
    assert settings["controller.quorum.voters"] == "1@127.0.0.1:19093"
    assert settings["log.dirs"] == "data"
    assert settings["auto.create.topics.enable"] == "false"
    assert settings["offsets.topic.replication.factor"] == "1"


def test_fetch_is_skipped_once_the_version_is_marked_complete(tmp_path: Path) -> None:
    home = tmp_path / f"kafka-{KAFKA_VERSION}"
    home.mkdir()
    (home / ".fetched").write_text(KAFKA_VERSION)

    libs = fetch_kafka(tmp_path)

    assert libs == home / "libs"
    assert not libs.exists()  # Maven would have created it


def _tls_handshake(server: ssl.SSLContext, client: ssl.SSLContext, name: str) -> str:
    """Run one in-memory TLS handshake; return the server's view of the client subject."""
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    tls_client = client.wrap_bio(c_in, c_out, server_hostname=name)
    tls_server = server.wrap_bio(s_in, s_out, server_side=True)
    for _ in range(10):
        for side, (incoming, outgoing) in (
            (tls_client, (c_in, s_out)),
            (tls_server, (s_in, c_out)),
        ):
            with contextlib.suppress(ssl.SSLWantReadError):  # waits for the other side
                side.do_handshake()
            incoming.write(outgoing.read())
        if tls_client.version() and tls_server.version():
            break
    cert = tls_server.getpeercert()
    return dict(entry[0] for entry in cert["subject"])["commonName"] if cert else ""


def test_the_throw_away_ca_signs_a_broker_certificate_for_the_loopback_address(
    tmp_path: Path,
) -> None:
    tls = make_tls_files(tmp_path / "tls")
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(tls.broker_keystore)  # the PEM keystore Kafka reads
    server.load_verify_locations(tls.ca_file)
    server.verify_mode = ssl.CERT_REQUIRED
    client = ssl.create_default_context(cafile=tls.ca_file)
    client.load_cert_chain(tls.client_cert, tls.client_key)

    assert _tls_handshake(server, client, "127.0.0.1") == "cxstream-test-client"
    assert not (tmp_path / "tls" / "ca.key").exists()
    assert tls.broker_keystore.read_text().startswith("-----BEGIN PRIVATE KEY-----")


def test_a_client_trusting_another_ca_refuses_the_broker(tmp_path: Path) -> None:
    ours, theirs = make_tls_files(tmp_path / "ours"), make_tls_files(tmp_path / "theirs")
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(ours.broker_keystore)

    with pytest.raises(ssl.SSLCertVerificationError):
        _tls_handshake(server, ssl.create_default_context(cafile=theirs.ca_file), "127.0.0.1")


def test_secure_listeners_add_sasl_ssl_with_scram_and_ssl_with_client_certificates() -> None:
    tls = TlsFiles(Path("ca.pem"), Path("keystore.pem"), Path("client.pem"), Path("client.key"))
    secure = SecureListeners(sasl_ssl_port=19094, ssl_port=19095, tls=tls)
    text = server_properties(port=19092, controller_port=19093, log_dir=Path("d"), secure=secure)
    settings = dict(line.split("=", 1) for line in text.splitlines())

    assert settings["listeners"] == (
        "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093,"
        "SASL_SSL://127.0.0.1:19094,SSL://127.0.0.1:19095"
    )
    assert settings["advertised.listeners"] == (
        "PLAINTEXT://127.0.0.1:19092,SASL_SSL://127.0.0.1:19094,SSL://127.0.0.1:19095"
    )
    assert settings["listener.security.protocol.map"] == (
        "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL,SSL:SSL"
    )
    assert settings["listener.name.sasl_ssl.sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
    assert settings["listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config"] == (
        "org.apache.kafka.common.security.scram.ScramLoginModule required;"
    )
    assert (settings["ssl.keystore.type"], settings["ssl.keystore.location"]) == (
        "PEM",
        "keystore.pem",
    )
    assert settings["listener.name.ssl.ssl.client.auth"] == "required"
    assert settings["inter.broker.listener.name"] == "PLAINTEXT"


def test_the_default_broker_has_no_secured_listener() -> None:
    text = server_properties(port=19092, controller_port=19093, log_dir=Path("d"))

    assert "SASL" not in text
    assert "ssl." not in text


def test_scram_users_are_created_at_format_time() -> None:
    assert scram_arguments({"cx-worker": "pw-1", "cx-producer": "pw.2"}) == [
        "--add-scram",
        "SCRAM-SHA-512=[name=cx-worker,password=pw-1]",
        "--add-scram",
        "SCRAM-SHA-512=[name=cx-producer,password=pw.2]",
    ]


def test_a_scram_password_the_format_syntax_would_misread_is_refused() -> None:
    with pytest.raises(BrokerError, match="SCRAM user names and passwords"):
        scram_arguments({"cx": "a,password=b]"})
