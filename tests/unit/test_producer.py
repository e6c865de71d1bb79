"""The producer library against an in-memory client double (no broker)."""

import dataclasses

import pytest

from pipeline.contract.codec import EventCodec
from pipeline.contract.event import InteractionEvent
from pipeline.contract.jsonform import event_to_json_line
from pipeline.errors import DeliveryError, ValidationError
from pipeline.producer import EventProducer, produce_file
from pipeline.settings import KafkaSettings
from pipeline.settings_loader import build_settings

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
    return EventProducer(KafkaSettings(), "cx.interactions", CHANNELS, client=client)


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


# -- the future-skew rule before sending (issue 12) -------------------------------------


def _wall_ms() -> int:
    from time import time_ns  # imported here to keep this block self-contained

    return time_ns() // 1_000_000


def test_the_producer_refuses_an_event_too_far_ahead_of_its_wall_clock_and_sends_nothing():
    client = FakeClient()
    producer = _producer(client)
    ahead = dataclasses.replace(EVENT, occurred_at=_wall_ms() + 300_000 + 60_000)
    with pytest.raises(ValidationError) as caught:
        producer.send(ahead)
    assert caught.value.field == "occurred_at"
    assert "over limits.max_future_skew (300 s)" in str(caught.value)
    assert client.sent == []


def test_the_producer_refuses_an_event_dated_2099_12_31():
    client = FakeClient()
    with pytest.raises(ValidationError, match=r"^occurred_at: 2099-12-31T00:00:00\.000"):
        _producer(client).send(dataclasses.replace(EVENT, occurred_at=4_102_358_400_000))
    assert client.sent == []


def test_an_event_dated_now_is_sent():
    client = FakeClient()
    _producer(client).send(dataclasses.replace(EVENT, occurred_at=_wall_ms()))
    assert len(client.sent) == 1


def test_the_producer_skew_defaults_to_the_settings_default_and_can_be_tightened():
    assert EventProducer.max_future_ms == 300_000
    client = FakeClient()
    producer = _producer(client)
    producer.max_future_ms = 10_000
    with pytest.raises(ValidationError, match=r"over limits.max_future_skew \(10 s\)"):
        producer.send(dataclasses.replace(EVENT, occurred_at=_wall_ms() + 60_000))
    assert client.sent == []
