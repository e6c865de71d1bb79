"""The output records: their fast ``__init__`` keeps the dataclass contract."""

from __future__ import annotations

import dataclasses
import inspect
import pickle

import pytest

from pipeline.core.records import ContactSummary, SessionRecord, SlaEvent

SESSION_FIELDS = {
    "session_id": "s1",
    "customer_id": "c1",
    "status": "final",
    "started_at": 1,
    "ended_at": 2,
    "channel_path": ["chat"],
    "contacts": 1,
    "events": 2,
    "channel_switches": 0,
    "first_contact_resolved": True,
    "resolved_at_end": True,
    "switch_failures": 0,
    "sla_breaches": 0,
    "nps_score": None,
}

# An SLA breach's required fields, in field order.
BREACH_ARGUMENTS = (
    "k1:p:first_reply:0:breach",
    "breach",
    "c1",
    "k1",
    "chat",
    "p",
    "first_reply",
    1,
    2,
    60.0,
    "24x7",
    2,
)


def test_a_record_takes_keywords_and_fills_defaults_like_a_dataclass():
    record = SessionRecord(**SESSION_FIELDS)
    assert (record.contact_ids, record.superseded_by, record.version) == ([], None, 0)
    assert record.to_dict() == {
        **SESSION_FIELDS,
        "contact_ids": [],
        "superseded_by": None,
        "version": 0,
        "correction": False,
        "fcr_undecided": False,
        "first_outcome_resolved": False,
        "nps_average": None,
        "feedback": [],
    }


def test_each_record_gets_its_own_default_list():
    first, second = SessionRecord(**SESSION_FIELDS), SessionRecord(**SESSION_FIELDS)
    assert first.contact_ids is not second.contact_ids


def test_a_record_takes_positional_arguments_in_field_order():
    event = SlaEvent(*BREACH_ARGUMENTS)
    assert (event.fired_at, event.replied_at, event.overrun_seconds) == (2, None, None)


def test_a_built_record_cannot_be_changed():
    summary = ContactSummary("k1", "c1", "chat", "s1", 1, 2, "resolved", None, None, None, False, 3)
    with pytest.raises(dataclasses.FrozenInstanceError):
        summary.events = 4  # type: ignore[misc]


def test_the_init_signature_is_the_dataclass_one():
    parameters = inspect.signature(SessionRecord).parameters
    assert list(parameters) == [f.name for f in dataclasses.fields(SessionRecord)]
    assert parameters["version"].default == 0
    assert repr(parameters["contact_ids"].default) == "<factory>"


@pytest.mark.parametrize(
    "record",
    [
        SessionRecord(**SESSION_FIELDS, contact_ids=["k1"], version=3),
        ContactSummary("k1", "c1", "chat", "s1", 1, 2, "resolved", None, 1.5, 0.5, False, 3),
        SlaEvent(*BREACH_ARGUMENTS, replied_at=5, overrun_seconds=3.0),
    ],
    ids=lambda record: type(record).__name__,
)
def test_a_record_survives_pickling_with_every_field(record):
    # A parallel replay sends its records between processes pickled.
    copy = pickle.loads(pickle.dumps(record, protocol=pickle.HIGHEST_PROTOCOL))
    assert type(copy) is type(record)
    assert copy == record
    assert copy.to_dict() == record.to_dict()
