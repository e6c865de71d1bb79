"""Output records of the stream core.

These are what the core emits and what every consumer downstream (the SQL sink,
alerting, the replay's JSONL files) reads. Times are UTC epoch milliseconds.
Each record has a natural key (``key``) that is stable across redeliveries and
restarts, so sinks can upsert idempotently.

Each record class has an Avro schema in ``schemas/<OUTPUT_NAME>/v<N>.avsc`` (the
newest version) with the same field names; ``to_dict`` returns exactly that shape.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, Final

from pipeline.slot_init import slot_setting_init

_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def _shallow_dict(record: Any) -> dict[str, Any]:
    """The record's fields as a dict (lists and dicts copied one level).

    Not ``dataclasses.asdict``: it recurses through every value generically,
    which cost more than the stream core itself in the pipeline benchmark.
    """
    cls = type(record)
    names = _FIELD_NAMES.get(cls)
    if names is None:
        names = _FIELD_NAMES[cls] = tuple(f.name for f in fields(cls))
    out = {}
    for name in names:
        value = getattr(record, name)
        if type(value) is list:
            value = list(value)
        elif type(value) is dict:
            value = dict(value)
        out[name] = value
    return out


# Session status values.
SESSION_OPEN: Final = "open"
SESSION_FINAL: Final = "final"
SESSION_SUPERSEDED: Final = "superseded"  # merged into another session; never count it

# SLA event kinds.
SLA_WARNING: Final = "warning"
SLA_BREACH: Final = "breach"
SLA_COMPLETED: Final = "completed"  # a breached clock whose reply finally arrived
# A warning or breach taken back: its reply, dated before it, arrived after it
# fired (pipeline/core/retraction.py). Carries the cancelled record's id.
SLA_RETRACTED: Final = "retracted"

# SLA metrics.
FIRST_REPLY: Final = "first_reply"
NEXT_REPLY: Final = "next_reply"

# Journey signal kinds.
SWITCH_FAILURE: Final = "switch_failure"
FALSE_RESOLUTION: Final = "false_resolution"
# A need reached bounce.min_contacts contacts over bounce.min_channels channels
# before it was resolved (pipeline/core/needs.py); one signal per need.
BOUNCED: Final = "bounced"
# A candidate kind that gives no signal: a contact whose need is checked for a
# repeat (bot-only, or resolved without a topic) without being a false resolution.
REPEAT: Final = "repeat"

# Feedback score kinds (the contract carries one score: NPS 0..10).
NPS: Final = "nps"

# A contact's service-level outcome (ContactSummary.service_level), decided once at
# its settle point (pipeline/core/contact.py): a first reply with no first-reply
# breach in force, a first reply after a breach, or ended abandoned unanswered.
# Anything else (unanswered and not abandoned) settles as None.
ANSWERED_IN_TARGET: Final = "answered_in_target"
ANSWERED_LATE: Final = "answered_late"
ABANDONED_UNANSWERED: Final = "abandoned"


@slot_setting_init
@dataclass(frozen=True, slots=True)
class SessionRecord:
    """A customer's journey: events stitched across channels, split by the gap.

    Emitted as ``open`` updates while the session is open, as ``final`` when it
    closes, and as ``superseded`` when an out-of-order event bridged it into
    another session (``superseded_by`` names the survivor). A journey belongs to
    the contacts that started in it; when one of them breaches after the journey
    closed, the final record is sent again with a higher ``version`` and
    ``correction`` true (counting consumers have counted the journey already).

    ``first_contact_resolved`` is true once the journey's first contact is known to
    have resolved its need (it ended resolved and no contact on the same topic
    followed within the repeat window); ``fcr_undecided`` is true while that is not
    known yet (the contact has not ended, or its window has not passed) and when the
    journey has no contact. The decision corrects the final record like a breach.
    ``first_outcome_resolved`` is the first contact's own outcome (the old figure).
    ``feedback`` holds every score given in the journey (dicts with ``feedback_id``,
    ``contact_id``, ``channel``, ``kind``, ``score``, ``given_at``), by time;
    ``nps_score`` is the latest NPS answer and ``nps_average`` their mean.
    """

    OUTPUT_NAME: ClassVar[str] = "session"

    session_id: str
    customer_id: str
    status: str
    started_at: int
    ended_at: int
    channel_path: list[str]
    contacts: int
    events: int
    channel_switches: int
    first_contact_resolved: bool
    resolved_at_end: bool
    switch_failures: int
    sla_breaches: int
    nps_score: int | None
    contact_ids: list[str] = field(default_factory=list)
    superseded_by: str | None = None
    version: int = 0
    correction: bool = False
    fcr_undecided: bool = False
    first_outcome_resolved: bool = False
    nps_average: float | None = None
    feedback: list[dict[str, Any]] = field(default_factory=list)

    @property
    def key(self) -> str:
        return self.session_id

    def to_dict(self) -> dict[str, Any]:
        return _shallow_dict(self)


@slot_setting_init
@dataclass(frozen=True, slots=True)
class ContactSummary:
    """One contact (call, chat, web-message thread, visit, meeting).

    Sent when the contact ends and when the journey it is in closes while it is
    still open; after that, every change (a later event of it, feedback, a breach
    of its clock) sends it again with a higher ``version``, so the newest wins.
    ``first_reply_new`` is true on exactly one summary of a contact: the first that
    carries its first reply, where counting consumers count the reply.

    The contact's need (its topic) is checked for a repeat: ``first_contact_resolved``
    is None until known, False when it ended otherwise than resolved or the customer
    came back on the same topic within the repeat window, True when the window passed
    without. ``bot_only``: only the bot answered (no human reply, no transfer);
    ``contained`` is None unless ``bot_only``, then decided like the FCR (regardless of
    the outcome); ``contained_new`` is true on the one summary that first carries it.

    ``settled`` is true once the contact's service level is decided, at its settle
    point (the partition clock passed its end plus the session gap plus the grace,
    or the core let an unended contact go): ``service_level`` is then
    ``answered_in_target``, ``answered_late``, ``abandoned`` or None (not
    applicable), and it, ``queue`` and ``team`` no longer change in later versions.
    ``settled_new`` is true on the one summary that settles it: count it there.
    """

    OUTPUT_NAME: ClassVar[str] = "contact"

    contact_id: str
    customer_id: str
    channel: str
    session_id: str | None
    started_at: int
    ended_at: int | None
    outcome: str | None
    topic: str | None
    first_reply_seconds: float | None
    first_reply_business_seconds: float | None
    breached: bool
    events: int
    version: int = 0
    first_reply_new: bool = False
    first_contact_resolved: bool | None = None
    bot_only: bool = False
    contained: bool | None = None
    contained_new: bool = False
    # The latest queue and team the contact's events named (None: none did); once
    # settled, the ones it settled with.
    queue: str | None = None
    team: str | None = None
    service_level: str | None = None
    settled: bool = False
    settled_new: bool = False
    #: When identity identified the customer the contact's events came through
    #: (the start of that link, epoch ms; issue 16); None: none did.
    identified_at: int | None = None

    @property
    def key(self) -> str:
        return self.contact_id

    def to_dict(self) -> dict[str, Any]:
        return _shallow_dict(self)


@slot_setting_init
@dataclass(frozen=True, slots=True)
class SlaEvent:
    """A warning, a breach, the completion of a breach by a late reply, or a retraction.

    ``sla_event_id`` is ``<contact_id>:<policy>:<metric>:<clock_seq>:<kind>``:
    stable for the same clock and kind, so a redelivered record upserts. A
    ``retracted`` record carries the id of the warning or breach it cancels (the
    last segment names that kind), so a keyed consumer replaces the one by the
    other; its ``fired_at`` is the clock when it was retracted.
    """

    OUTPUT_NAME: ClassVar[str] = "sla_event"

    sla_event_id: str
    kind: str
    customer_id: str
    contact_id: str
    channel: str
    policy: str
    metric: str
    clock_started_at: int
    deadline: int
    target_seconds: float
    calendar: str
    fired_at: int
    replied_at: int | None = None
    overrun_seconds: float | None = None
    # The version of the policy the clock started under (PolicySpec.version), and
    # the contact's queue and team when its events carried them.
    policy_version: str | None = None
    queue: str | None = None
    team: str | None = None
    # The contact's identified_at (issue 16): of two customers' records under one
    # sla_event_id (identity moved the contact), the sink keeps the later link's.
    identified_at: int | None = None

    @property
    def key(self) -> str:
        return self.sla_event_id

    def to_dict(self) -> dict[str, Any]:
        return _shallow_dict(self)


@slot_setting_init
@dataclass(frozen=True, slots=True)
class JourneySignal:
    """A channel-switch failure or a false resolution.

    ``switch_failure``: a contact ended unresolved/abandoned and the customer's next
    contact, in another channel, started within ``switch.window``.
    ``false_resolution``: a contact ended resolved and the customer came back on the
    same topic within the false-resolution window.
    """

    OUTPUT_NAME: ClassVar[str] = "journey_signal"

    signal_id: str
    kind: str
    customer_id: str
    from_contact_id: str
    from_channel: str
    from_outcome: str | None
    to_contact_id: str
    to_channel: str
    gap_seconds: float
    topic: str | None
    occurred_at: int

    @property
    def key(self) -> str:
        return self.signal_id

    def to_dict(self) -> dict[str, Any]:
        return _shallow_dict(self)


@slot_setting_init
@dataclass(frozen=True, slots=True)
class LateEvent:
    """An input event that arrived after the session it belongs to had closed.

    It is not applied to the closed session; it is kept (raw JSON form) on the
    late-events topic so nothing is lost.
    """

    OUTPUT_NAME: ClassVar[str] = "late_event"

    event_id: str
    customer_id: str
    occurred_at: int
    clock_at: int
    reason: str
    event: dict[str, Any]

    @property
    def key(self) -> str:
        return self.event_id

    def to_dict(self) -> dict[str, Any]:
        return _shallow_dict(self)


# Need status values.
NEED_OPEN: Final = "open"
NEED_FINAL: Final = "final"
#: Never count the row: the need's events went to another customer (re-attribution),
#: or the need was renamed after an earlier contact joined it (docs/sql.md).
NEED_RETRACTED: Final = "retracted"


@slot_setting_init
@dataclass(frozen=True, slots=True)
class NeedRecord:
    """A customer's need (case): every contact on one need key within the need window.

    The key is the producer's ``need_id`` when its events carry one, else the
    contact's ``topic``; a contact with neither belongs to no need. Sent as an
    ``open`` update at every contact end of the need and as ``final`` when the
    window (``needs.window`` after ``last_contact_at``) passed with no further
    contact; the newest ``version`` wins. ``channels`` lists each contact's
    channel by start time; ``channel_switches`` counts the changes between
    neighbours. ``first_contact_resolved`` is the FCR decision of the need's first
    contact (None: not decided yet); ``resolved`` the outcome of its last-ended
    contact. ``customer_wait_seconds`` sums the contacts' first-reply waits,
    ``handling_seconds`` the handling times the events carried (None: none did).
    ``bounced_at`` is the start of the contact that crossed the bounce threshold.
    """

    OUTPUT_NAME: ClassVar[str] = "need"

    need_id: str
    customer_id: str
    topic: str | None
    status: str
    opened_at: int
    last_contact_at: int
    closed_at: int | None
    contacts: int
    channels: list[str]
    channel_switches: int
    switch_failures: int
    first_contact_resolved: bool | None
    resolved: bool
    customer_wait_seconds: float
    handling_seconds: float | None
    sla_breaches: int
    feedback_count: int
    feedback_average: float | None
    bounced: bool
    bounced_at: int | None
    first_channel: str
    contact_ids: list[str] = field(default_factory=list)
    version: int = 0

    @property
    def key(self) -> str:
        return self.need_id

    def to_dict(self) -> dict[str, Any]:
        return _shallow_dict(self)


OutputRecord = SessionRecord | ContactSummary | SlaEvent | JourneySignal | LateEvent | NeedRecord
OUTPUT_TYPES: tuple[type[OutputRecord], ...] = (
    SessionRecord,
    ContactSummary,
    SlaEvent,
    JourneySignal,
    LateEvent,
    NeedRecord,
)
