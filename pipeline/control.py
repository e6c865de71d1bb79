"""Control records on the input topic.

An end-of-input marker tells the stream core that a partition's input has ended
(a backfill, a replay through Kafka, a deterministic test): it closes every open
session and fires the SLA clocks up to the latest event time seen, exactly as
``cxstream replay`` does at the end of its file. It is a record with the header
``cx-control: end-of-input``, sent to every partition explicitly. Its value is
the latest event time of the whole input (epoch ms, decimal ASCII): every
partition then ends there, whichever customers hash to it, as the replay ends
them; without a value a partition ends at its own latest event.

A worker honours it only with ``worker.control_records: true`` (a backfill's or
a test's worker); with the default ``false`` any producer allowed to write the
input topic could close every session of a partition, so the marker is
dead-lettered (stage ``control``) and changes nothing. Live deployments keep it
off and protect the input topic with ACLs (docs/architecture.md).
"""

from __future__ import annotations

from kafka import KafkaProducer

from pipeline.errors import DeliveryError
from pipeline.kafka_clients import check_login, kafka_python_options
from pipeline.settings import KafkaSettings
from pipeline.streaming import CONTROL_HEADER, END_OF_INPUT


def send_end_of_input(
    kafka: KafkaSettings, topic: str, *, input_end_ms: int | None = None, timeout: float = 30.0
) -> int:
    """Send the end-of-input marker to every partition of ``topic``; returns the count.

    ``input_end_ms``: the latest event time of the input just sent (see above).
    """
    check_login(kafka, timeout)
    producer = KafkaProducer(**kafka_python_options(kafka), acks="all")
    try:
        partitions = sorted(producer.partitions_for(topic) or ())
        futures = [
            producer.send(
                topic,
                key=b"__cxstream_control__",
                value=None if input_end_ms is None else str(input_end_ms).encode("ascii"),
                partition=partition,
                headers=[(CONTROL_HEADER, END_OF_INPUT)],
            )
            for partition in partitions
        ]
        producer.flush(timeout)
        for future in futures:
            try:
                future.get(timeout=timeout)
            except Exception as exc:  # kafka-python raises several error types
                raise DeliveryError(f"end-of-input marker not delivered: {exc}") from exc
        return len(partitions)
    finally:
        producer.close()
