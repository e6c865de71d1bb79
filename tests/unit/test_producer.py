"""The producer library against an in-memory client double (no broker)."""

import dataclasses

import pytest

from pipeline.contract.codec import EventCodec
from pipeline.contract.event import InteractionEvent
from pipeline.contract.jsonform import event_to_json_line
from pipeline.errors import DeliveryError, ValidationError
from pipeline.producer import EventProducer, produce_file
from pipeline.settings import build_settings

CHANNELS = build_settings().channels

EVENT = InteractionEvent(
    event_id="e-1",
    occurred_at=1_772_439_300_000,
    customer_id="cust-ä1",
    channel="chat",
    contact_id="chat-1",
    type="customer_message",
    actor="customer",
    producer="chat-gateway/2.3",
)


class FakeFuture:
    def __init__(self, error: Exception | None) -> None:
        self.error = error

    def add_errback(self, callback):
        if self.error is not None:
            callback(self.error)
        return self


class FakeClient:
    """Records what was sent; fails the sends whose value is in ``fail_values``."""

    def __init__(self, fail_values=()) -> None:
        self.sent: list[tuple[str, bytes | None, bytes]] = []
        self.fail_values = set(fail_values)
        self.closed = False

    def send(self, topic, *, key, value):
        self.sent.append((topic, key, value))
        failing = value in self.fail_values
        return FakeFuture(RuntimeError("NotEnoughReplicas") if failing else None)

    def flush(self, timeout=None):
        pass

    def close(self, timeout=None):
        self.closed = True


def _producer(client: FakeClient) -> EventProducer:
    return EventProducer("unused:9092", "cx.interactions", CHANNELS, client=client)


def test_valid_event_is_sent_keyed_by_customer_id_in_single_object_encoding():
    client = FakeClient()
    _producer(client).send(EVENT)
    assert client.sent == [("cx.interactions", "cust-ä1".encode(), EventCodec().encode(EVENT))]


def test_invalid_event_raises_naming_the_field_and_sends_nothing():
    client = FakeClient()
    with pytest.raises(ValidationError) as caught:
        _producer(client).send(dataclasses.replace(EVENT, channel="fax"))
    assert (caught.value.field, client.sent) == ("channel", [])


def test_send_raw_passes_bytes_unchecked():
    client = FakeClient()
    _producer(client).send_raw(None, b"garbage")
    assert client.sent == [("cx.interactions", None, b"garbage")]


def test_flush_raises_delivery_error_once_for_failed_sends():
    client = FakeClient(fail_values={b"bad"})
    producer = _producer(client)
    producer.send_raw(b"k", b"bad")
    producer.send_raw(b"k", b"good")
    with pytest.raises(DeliveryError, match=r"1 records to cx\.interactions were not delivered"):
        producer.flush(1)
    producer.flush(1)  # reported once, not again


def test_context_manager_closes_the_client():
    client = FakeClient()
    with _producer(client) as producer:
        producer.send(EVENT)
    assert client.closed is True


def test_produce_file_sends_valid_lines_and_reports_bad_ones(tmp_path):
    path = tmp_path / "events.jsonl"
    unknown_channel = dataclasses.replace(EVENT, event_id="e-2", channel="fax")
    lines = [event_to_json_line(EVENT), "{oops", event_to_json_line(unknown_channel)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    client = FakeClient()
    report = produce_file(path, _producer(client))
    assert report.sent == 1
    assert [(line, type(error).__name__, error.field) for line, error in report.rejected] == [
        (2, "DecodeError", None),
        (3, "ValidationError", "channel"),
    ]
    assert len(client.sent) == 1
