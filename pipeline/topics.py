"""The Kafka topics cxstream uses, and their explicit creation.

Broker-side auto-creation is off (see ``pipeline.tools.broker``), so every topic the
pipeline reads or writes is declared by :func:`project_topics` and created by
:func:`ensure_topics` before producers or workers start. Faust's own internal
topics (table changelogs, repartitions) are declared by Faust itself.

Names are ``<kafka.topic_prefix>.<suffix>``, e.g. ``cx.interactions``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

from pipeline.errors import BrokerError
from pipeline.kafka_clients import check_login, kafka_python_options
from pipeline.settings import KafkaSettings

INTERACTIONS = "interactions"
DLQ = "dlq"
LATE_EVENTS = "late-events"
SESSIONS = "sessions"
CONTACTS = "contacts"
SLA_EVENTS = "sla-events"
JOURNEY_SIGNALS = "journey-signals"
NEEDS = "needs"
# Identity continuity (issue 16; docs/architecture.md "Identity continuity"):
# events for the identity processor, forwarded by the worker from the input and
# keyed like it (``id:<kind>:<value>``); what identity gives a customer, keyed by
# customer; the identifiers' link periods (an output the sink stores).
IDENTITY = "identity"
REKEYED = "interactions-rekeyed"
IDENTITY_LINKS = "identity-links"

OUTPUT_SUFFIXES = (SESSIONS, CONTACTS, SLA_EVENTS, JOURNEY_SIGNALS, NEEDS)

# Rejected events stay at least this long: a producer team has to notice, fix and
# replay them, which takes longer than the normal retention of a busy input topic.
DLQ_MIN_RETENTION_MS = 30 * 24 * 3600 * 1000

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """How one topic is created: partitions, retention and cleanup policy."""

    partitions: int
    retention_ms: int
    cleanup_policy: str = "delete"
    replication_factor: int = 1

    def configs(self) -> dict[str, str]:
        """The topic-level broker configs this spec sets."""
        return {"retention.ms": str(self.retention_ms), "cleanup.policy": self.cleanup_policy}


def project_topics(kafka: KafkaSettings) -> dict[str, TopicSpec]:
    """Every topic the pipeline uses, by full name, with how to create it.

    The input topic gets ``kafka.input_partitions`` (it bounds how many workers share
    the load), and so do ``identity`` and ``interactions-rekeyed``. Outputs and late
    events (and ``identity-links``) get ``kafka.output_partitions``. The dead-letter
    topic has one partition: it is low volume, and one ordered log is what a producer
    team reads to find why its events were rejected. All topics use ``delete``: they
    are keyed by customer, and compaction would keep only each customer's last record.
    """
    retention_ms = round(kafka.retention_hours * 3600 * 1000)

    def spec(partitions: int, retention: int = retention_ms) -> TopicSpec:
        return TopicSpec(
            partitions=partitions,
            retention_ms=retention,
            replication_factor=kafka.replication_factor,
        )

    specs = {
        kafka.topic(INTERACTIONS): spec(kafka.input_partitions),
        kafka.topic(DLQ): spec(1, max(retention_ms, DLQ_MIN_RETENTION_MS)),
        kafka.topic(LATE_EVENTS): spec(kafka.output_partitions),
    }
    specs.update({kafka.topic(suffix): spec(kafka.output_partitions) for suffix in OUTPUT_SUFFIXES})
    # The input's partition count: identity partition p holds the identity events
    # of input partition p, re-keyed partition p the customers of input partition
    # p (one worker holds all three, pipeline/runtime/loop.py).
    specs[kafka.topic(IDENTITY)] = spec(kafka.input_partitions)
    specs[kafka.topic(REKEYED)] = spec(kafka.input_partitions)
    specs[kafka.topic(IDENTITY_LINKS)] = spec(kafka.output_partitions)
    return specs


def ensure_topics(
    kafka: KafkaSettings, specs: Mapping[str, TopicSpec], timeout: float = 30
) -> list[str]:
    """Create the topics in ``specs`` that do not exist yet; return those created, in order.

    Connects with ``kafka``'s bootstrap servers and security settings.

    Idempotent: existing topics are left as they are (their partition count and
    configs are not compared or changed), including one created concurrently by
    another process between our check and our create. Returns only once every topic
    in ``specs`` has a leader on every partition, so producing right after is safe.

    Raises:
        KafkaAuthError: the broker refused our login or TLS handshake.
        BrokerError: the broker is unreachable, refused a topic, or the topics were
            not ready within ``timeout`` seconds.
    """
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError, TopicAlreadyExistsError

    bootstrap = kafka.bootstrap
    timeout_ms = int(timeout * 1000)
    check_login(kafka, timeout)
    try:
        admin = KafkaAdminClient(
            **kafka_python_options(kafka),
            client_id="cxstream-topics",
            request_timeout_ms=timeout_ms,
            bootstrap_timeout_ms=timeout_ms,
        )
    except KafkaError as exc:
        raise BrokerError(f"cannot reach Kafka at {bootstrap} to create topics: {exc}") from exc
    try:
        existing = set(admin.list_topics())
        missing = {name: spec for name, spec in specs.items() if name not in existing}
        created: set[str] = set()
        if missing:
            request = {
                name: {
                    "num_partitions": spec.partitions,
                    "replication_factor": spec.replication_factor,
                    "configs": spec.configs(),
                }
                for name, spec in missing.items()
            }
            response = admin.create_topics(request, timeout_ms=timeout_ms, raise_errors=False)
            refused = []
            for result in response["topics"]:
                code = result["error_code"]
                if code == 0:
                    created.add(result["name"])
                elif code != TopicAlreadyExistsError.errno:
                    refused.append(f"{result['name']}: {result.get('error_message') or code}")
            if refused:
                raise BrokerError(f"Kafka refused to create topics: {'; '.join(refused)}")
        admin.wait_for_topics(list(specs), timeout_ms=timeout_ms)
    except KafkaError as exc:
        raise BrokerError(f"creating topics on {bootstrap} failed: {exc}") from exc
    finally:
        admin.close()
    created_in_order = [name for name in specs if name in created]
    if created_in_order:
        log.info("created topics %s", ", ".join(created_in_order))
    return created_in_order
