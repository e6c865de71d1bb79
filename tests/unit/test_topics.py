from pipeline.settings import KafkaSettings
from pipeline.settings_loader import build_settings
from pipeline.topics import DLQ_MIN_RETENTION_MS, TopicSpec, project_topics

WEEK_MS = 7 * 24 * 3600 * 1000


def test_project_topics_names_every_topic_under_the_prefix() -> None:
    topics = project_topics(KafkaSettings(topic_prefix="bank"))

    assert list(topics) == [
        "bank.interactions",
        "bank.dlq",
        "bank.late-events",
        "bank.sessions",
        "bank.contacts",
        "bank.sla-events",
        "bank.journey-signals",
        "bank.needs",
        "bank.identity",
        "bank.interactions-rekeyed",
        "bank.identity-links",
    ]


def test_input_uses_input_partitions_and_outputs_use_output_partitions() -> None:
    kafka = KafkaSettings(topic_prefix="cx", input_partitions=12, output_partitions=3)

    partitions = {name: spec.partitions for name, spec in project_topics(kafka).items()}

    assert partitions == {
        "cx.interactions": 12,
        "cx.dlq": 1,
        "cx.late-events": 3,
        "cx.sessions": 3,
        "cx.contacts": 3,
        "cx.sla-events": 3,
        "cx.journey-signals": 3,
        "cx.needs": 3,
        # Issue 16: identity partition p and re-keyed partition p go with input
        # partition p; the link periods are an output.
        "cx.identity": 12,
        "cx.interactions-rekeyed": 12,
        "cx.identity-links": 3,
    }


def test_default_settings_give_a_week_of_retention_with_delete_policy() -> None:
    topics = project_topics(build_settings().kafka)

    assert topics["cx.interactions"] == TopicSpec(
        partitions=6, retention_ms=WEEK_MS, cleanup_policy="delete", replication_factor=1
    )
    assert topics["cx.sessions"].configs() == {
        "retention.ms": str(WEEK_MS),
        "cleanup.policy": "delete",
    }


def test_dead_letters_outlive_a_short_input_retention() -> None:
    topics = project_topics(KafkaSettings(retention_hours=2))

    assert topics["cx.interactions"].retention_ms == 2 * 3600 * 1000
    assert topics["cx.dlq"].retention_ms == DLQ_MIN_RETENTION_MS


def test_dead_letters_follow_a_retention_longer_than_their_minimum() -> None:
    topics = project_topics(KafkaSettings(retention_hours=24 * 90))

    assert topics["cx.dlq"].retention_ms == 90 * 24 * 3600 * 1000


def test_replication_factor_comes_from_settings() -> None:
    topics = project_topics(KafkaSettings(replication_factor=3))

    assert {spec.replication_factor for spec in topics.values()} == {3}
