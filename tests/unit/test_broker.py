import base64
from pathlib import Path

from pipeline.broker import KAFKA_VERSION, fetch_kafka, random_cluster_id, server_properties


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
