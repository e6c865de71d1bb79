"""A rebuilt customer's corrections never count twice what the metrics counted.

The worker's Prometheus counters count a contact's first reply, containment and
service level on the one summary that carries them first (``first_reply_new``,
``contained_new``, ``settled_new``). A customer rebuilt after an unattribute sends
summaries again (docs/architecture.md, "Identity continuity"); a correction of a
contact that was already counted must not carry those flags again, or the counters
drift from SQL, which counts each contact once (latest row).
"""

from __future__ import annotations

from collections import Counter

from pipeline.contract.event import (
    AGENT,
    AGENT_REPLY,
    CONTACT_ENDED,
    CONTACT_STARTED,
    CUSTOMER,
    CUSTOMER_MESSAGE,
    IDENTIFIED,
    NO_CUSTOMER,
    RESOLVED,
    SYSTEM,
    UNLINKED,
    InteractionEvent,
)
from pipeline.contract.validate import validate
from pipeline.core.identity import IdentityRules
from pipeline.core.identity_stage import CustomerEvent, IdentityStage
from pipeline.core.processor import PartitionProcessor
from pipeline.core.reattribution import CustomerJournal, corrections
from pipeline.core.records import ContactSummary
from pipeline.replay import collapse
from pipeline.settings_loader import build_settings

T0 = 1_772_438_400_000  # 2026-03-02T08:00:00Z
MINUTE = 60_000
SETTINGS = build_settings()


def summary(**changes) -> ContactSummary:
    fields = dict(
        contact_id="chat-1",
        customer_id="cust-A",
        channel="chat",
        session_id="s-1",
        started_at=T0,
        ended_at=T0 + 5 * MINUTE,
        outcome=RESOLVED,
        topic=None,
        first_reply_seconds=30.0,
        first_reply_business_seconds=30.0,
        breached=False,
        events=4,
        version=3,
    )
    fields.update(changes)
    return ContactSummary(**fields)


def test_a_correction_of_a_counted_contact_carries_no_new_flags():
    journal = CustomerJournal(None)
    journal.note_sent(
        summary(settled=True, service_level="answered_in_target", first_reply_new=False)
    )
    rebuilt = summary(
        session_id="s-2",  # its journey changed: the summary goes again
        version=1,
        first_reply_new=True,
        settled=True,
        settled_new=True,
        service_level="answered_in_target",
    )

    [correction] = corrections(journal, [rebuilt], T0 + 2 * 60 * MINUTE, "cust-A", {"chat-1"})

    assert correction.session_id == "s-2"
    assert correction.version == 4
    assert (correction.first_reply_new, correction.settled_new) == (False, False)


def test_a_correction_counts_what_the_sent_summary_had_not_counted_yet():
    journal = CustomerJournal(None)
    journal.note_sent(summary(first_reply_seconds=None, first_reply_business_seconds=None))
    rebuilt = summary(
        version=1,
        first_reply_new=True,
        settled=True,
        settled_new=True,
        service_level="answered_in_target",
    )

    [correction] = corrections(journal, [rebuilt], T0 + 2 * 60 * MINUTE, "cust-A", {"chat-1"})

    assert (correction.first_reply_new, correction.settled_new) == (True, True)


def event(event_id: str, at: int, type_: str, **fields) -> InteractionEvent:
    values = dict(
        event_id=event_id,
        occurred_at=at,
        customer_id=NO_CUSTOMER,
        channel="phone",
        contact_id="call-1",
        type=type_,
        actor=CUSTOMER,
        identifier_kind="phone",
        identifier_value="+358401234567",
    )
    values.update(fields)
    return validate(InteractionEvent(**values), SETTINGS.channels, identity_events=True)


def own_chat(event_id: str, at: int, type_: str, **fields) -> InteractionEvent:
    values = dict(
        customer_id="cust-A",
        channel="chat",
        contact_id="chat-1",
        identifier_kind=None,
        identifier_value=None,
    )
    values.update(fields)
    return event(event_id, at, type_, **values)


def test_service_levels_counted_from_the_records_equal_the_settled_contacts_after_an_unlink():
    # A call wrongly linked to customer A joins A's journey with A's own chat; the
    # chat settles; an hour later the link is undone: A's journey is rebuilt
    # without the call and the chat's summary goes again under the new journey.
    events = [
        event("c1", T0, CONTACT_STARTED),
        event("c2", T0 + 1 * MINUTE, IDENTIFIED, customer_id="cust-A", actor=SYSTEM),
        event("c3", T0 + 2 * MINUTE, CONTACT_ENDED, actor=AGENT, outcome=RESOLVED),
        own_chat("a1", T0 + 5 * MINUTE, CUSTOMER_MESSAGE),
        own_chat("a2", T0 + 6 * MINUTE, AGENT_REPLY, actor=AGENT),
        own_chat("a3", T0 + 7 * MINUTE, CONTACT_ENDED, actor=AGENT, outcome=RESOLVED),
        own_chat("a4", T0 + 70 * MINUTE, CONTACT_STARTED, contact_id="chat-2"),
        event("c4", T0 + 71 * MINUTE, UNLINKED, customer_id="cust-A", actor=SYSTEM),
        own_chat("a5", T0 + 72 * MINUTE, CONTACT_ENDED, contact_id="chat-2", actor=AGENT,
                 outcome=RESOLVED),
    ]  # fmt: skip
    processor = PartitionProcessor.from_settings(SETTINGS)
    stage = IdentityStage(IdentityRules.from_settings(SETTINGS.identity), 1)
    sent: list = []
    for item in events:
        for routed in stage.process(item):
            if isinstance(routed, CustomerEvent):
                apply = processor.process_released if routed.released else processor.process
                sent.extend(apply(routed.event))
            else:
                sent.extend(processor.unattribute(routed.customer_key, routed.event_ids))
            sent.extend(processor.flush_updates())
    sent.extend(processor.end_of_input())

    summaries = [r for r in sent if isinstance(r, ContactSummary)]
    chat_summaries = [r for r in summaries if r.contact_id == "chat-1"]
    assert len({r.session_id for r in chat_summaries}) == 2  # the correction happened
    counted = Counter(r.contact_id for r in summaries if r.settled_new)
    first_replies = Counter(r.contact_id for r in summaries if r.first_reply_new)
    contacts = collapse(sent)["contact"]
    assert counted == Counter(c for c, row in contacts.items() if row["settled"])
    assert first_replies["chat-1"] == 1
