"""The stored form of one customer's state, and reading the forms of older versions.

:meth:`CustomerState.to_state` and :meth:`CustomerState.from_state` are the
state machine's side of :class:`pipeline.core.logic.CustomerLogic`; what the
JSON looks like, and how a state of an earlier :data:`STATE_VERSION` is read,
is kept here, apart from the event logic, so that a change of either shows in
one place. The SLA clocks store themselves (``rules.sla_type``'s
``to_row``/``from_row``, :class:`pipeline.core.sla.ContactSla`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from pipeline.core.contact import Contact
from pipeline.core.dedup import DedupWindow
from pipeline.core.needs import NeedBook
from pipeline.core.records import SessionRecord
from pipeline.core.rules import CoreRules
from pipeline.core.sessions import SessionBook
from pipeline.core.switches import Candidate
from pipeline.errors import StateError

if TYPE_CHECKING:
    from pipeline.core.customer import CustomerState

# Version 2: contacts as flat rows with a compact SLA row, candidates without
# their (derivable) keys, seen ids as one joined string. Version 3: contacts
# also count their summaries, and final journeys that may still be corrected
# are kept ("f"). Versions 1 and 2 are still read. Contact rows of version 3
# may carry four more fields (bot, human, repeated, contained reported) and
# sessions their feedback; shorter rows read as before (nothing known). A
# contact row may end with its settled service level ([level, queue, team]);
# a shorter row has not settled; after it may come when identity identified it.
# Contacts the core let go recently ("x", with
# the clock they went at) come back if an event of theirs dated before it comes.
STATE_VERSION: Final = 3


# -- one contact ----------------------------------------------------------------


def contact_to_row(contact: Contact) -> list[Any]:
    """The contact and its SLA clocks as one flat row (state version 3)."""
    return [
        contact.contact_id,
        contact.channel,
        contact.started_at,
        contact.ended_at,
        contact.outcome,
        contact.topic,
        contact.events,
        contact.last_at,
        contact.session_id,
        contact.sla_since,
        contact.switched_into,
        contact.sla.to_row(),
        contact.version,
        contact.replied_reported,
        contact.bot,
        contact.human,
        contact.repeated,
        contact.contained_reported,
        # The settled service level, queue and team (None: not settled yet).
        None if contact.settled is None else list(contact.settled),
        # When identity identified it (issue 16); rows without it have none.
        *(() if contact.identified_at is None else (contact.identified_at,)),
    ]


def contact_from_row(row: list[Any], customer_id: str, rules: CoreRules) -> Contact:
    """Rebuild a contact from :func:`contact_to_row` (of state version 2 or 3)."""
    contact = Contact(row[0], row[1], row[2], row[8])
    contact.ended_at, contact.outcome, contact.topic = row[3], row[4], row[5]
    contact.events, contact.last_at = row[6], row[7]
    contact.sla_since, contact.switched_into = row[9], row[10]
    contact.sla = rules.sla_type.from_row(
        row[11],
        customer_id=customer_id,
        contact_id=contact.contact_id,
        channel=contact.channel,
        policies=rules.policies,
        business_calendar=rules.business_calendar,
    )
    if len(row) > 12:  # state version 3
        contact.version, contact.replied_reported = row[12], row[13]
        if len(row) > 14:
            contact.bot, contact.human = row[14], row[15]
            contact.repeated, contact.contained_reported = row[16], row[17]
        if len(row) > 18 and row[18] is not None:
            level, queue, team = row[18]
            contact.settled = (level, queue, team)
        if len(row) > 19:
            contact.identified_at = row[19]
            contact.sla.identified_at = row[19]
    else:
        assume_summary_sent(contact)
    return contact


def assume_summary_sent(contact: Contact) -> None:
    """For a state of version 1 or 2, which did not count summaries: an ended
    contact has sent one (with its first reply, if it had one)."""
    if contact.ended_at is not None:
        contact.version = 1
        contact.replied_reported = contact.sla.first_reply_seconds is not None


def contact_from_state_v1(state: list[Any], rules: CoreRules) -> Contact:
    """Rebuild from a version-1 state row (the SLA as :meth:`ContactSla.to_state`)."""
    contact = Contact(state[0], state[1], state[2], state[8])
    contact.ended_at, contact.outcome, contact.topic = state[3], state[4], state[5]
    contact.events, contact.last_at = state[6], state[7]
    contact.sla = rules.sla_type.from_state(state[9], rules.policies, rules.business_calendar)
    contact.sla_since, contact.switched_into = state[10], state[11]
    assume_summary_sent(contact)
    return contact


# -- one customer ---------------------------------------------------------------


def customer_to_state(customer: CustomerState) -> dict[str, Any]:
    """A JSON-able snapshot of the customer, :data:`STATE_VERSION`."""
    return {
        "v": STATE_VERSION,
        "b": customer.book.to_state(),
        "k": [contact_to_row(c) for c in customer.contacts.values()],
        "w": [c.to_state() for c in customer.candidates.values()],
        "d": customer.dedup.to_state(),
        "f": [final.to_dict() for final in customer.finals.values()],
        # The latest contact end each kept final counted; a state written before
        # late ends corrected journeys has none (still version 3).
        "e": [[sid, *end] for sid, end in customer.final_ends.items()],
        # Open needs; a state written before needs has none (still version 3).
        "n": customer.needs.to_state(),
        # Contacts let go within the lateness bound: [clock at drop, contact row].
        "x": [[at, contact_to_row(c)] for at, c in customer.dropped.values()],
    }


def restore_customer(customer: CustomerState, state: dict[str, Any]) -> None:
    """Fill a new, empty customer from :func:`customer_to_state` of this or an earlier version.

    Version 1 (contacts with the SLA as a keyed dict, candidates with their
    keys, seen ids as ``[id, time]`` pairs) is still read, so a changelog
    written before version 2 restores without a rebuild. Raises
    :class:`StateError` for a version this code does not know.
    """
    version = state["v"]
    if version not in (1, 2, STATE_VERSION):
        raise StateError(f"customer state version {version!r} is not known")
    rules = customer.rules
    customer_id = customer.customer_id
    customer.book = SessionBook.from_state(state["b"], rules.gap_ms, rules.grace_ms)
    contacts = customer.contacts
    if version == 1:
        for raw in state["k"]:
            contact = contact_from_state_v1(raw, rules)
            contacts[contact.contact_id] = contact
        customer.candidates = {key: Candidate.from_state(raw) for key, raw in state["w"]}
        customer.dedup = DedupWindow.from_pairs(state["d"], rules.dedup_retention_ms)
    else:
        for raw in state["k"]:
            contact = contact_from_row(raw, customer_id, rules)
            contacts[contact.contact_id] = contact
        for raw in state["w"]:
            candidate = Candidate.from_state(raw)
            customer.candidates[f"{candidate.kind}:{candidate.contact_id}"] = candidate
        customer.dedup = DedupWindow.from_state(state["d"], rules.dedup_retention_ms)
    for raw in state.get("f", ()):
        final = SessionRecord(**raw)
        customer.finals[final.session_id] = final
    for sid, ended_at, contact_id, outcome in state.get("e", ()):
        customer.final_ends[sid] = (ended_at, contact_id, outcome)
    customer.needs = NeedBook.from_state(state.get("n", []), rules.need_rules)
    for at, raw in state.get("x", ()):
        contact = contact_from_row(raw, customer_id, rules)
        customer.dropped[contact.contact_id] = (at, contact)
