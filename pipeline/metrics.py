"""Every Prometheus metric cxstream exports, in one place.

:class:`Metrics` creates the metrics against an injected ``CollectorRegistry`` (tests
pass a fresh one; the worker passes the one its ``/metrics`` endpoint serves) and
offers small methods the agents and the sink call, so no caller pokes metric objects.

Conventions: base units (seconds, records), counters end in ``_total``, and labels
are low-cardinality only (channel, policy, stage, reason, table, topic, partition,
from/to channel) -- never a customer, contact or session id. Channels not in the
configured registry are reported as ``other`` so a misbehaving producer cannot
explode the series count. Labelled children are cached in dicts: the worker calls
these methods once per event, and ``labels()`` on every call costs a lock and a
tuple build each time.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

from pipeline.batch_histogram import BatchHistogram
from pipeline.contract.event import EVENT_TYPES, UNKNOWN_TYPE
from pipeline.core.records import (
    ABANDONED_UNANSWERED,
    ANSWERED_IN_TARGET,
    ANSWERED_LATE,
    BOUNCED,
    FALSE_RESOLUTION,
    NEED_FINAL,
    SESSION_FINAL,
    SESSION_SUPERSEDED,
    SLA_BREACH,
    SLA_COMPLETED,
    SLA_RETRACTED,
    SLA_WARNING,
    SWITCH_FAILURE,
    ContactSummary,
    JourneySignal,
    LateEvent,
    NeedRecord,
    OutputRecord,
    SessionRecord,
    SlaEvent,
)
from pipeline.identity_metrics import IdentityMetrics
from pipeline.settings import bounded_label
from pipeline.sink_metrics import SinkMetrics

OTHER = "other"

# First reply: chat answers in seconds, web messages within hours, and a business-
# time target can stretch to two banking days (~172800 s of calendar time).
FIRST_REPLY_BUCKETS = (
    5,
    15,
    30,
    60,
    120,
    180,
    300,
    600,
    1800,
    3600,
    7200,
    14400,
    28800,
    86400,
    172800,
)
# Event time -> processed: milliseconds when healthy, hours for late or replayed events.
PROCESSING_LATENCY_BUCKETS = (
    0.01,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
    30,
    60,
    300,
    900,
    3600,
    14400,
    86400,
)


#: What one output record moves: (series, raw label values, observed value or 1).
#: Plain data, so the stream core's process can compute it and the worker apply it.
OutputEffect = tuple[str, tuple[str | None, ...], float]


def service_level_effect(record: OutputRecord) -> OutputEffect | None:
    """The service-level count of the one summary that settles a contact, or None.

    Apart from :func:`output_effect` because a settling summary (timed work) may
    also carry a containment decision (timed work of the same contact).
    """
    if type(record) is ContactSummary and record.settled_new:
        level = record.service_level
        if level in (ANSWERED_IN_TARGET, ANSWERED_LATE, ABANDONED_UNANSWERED):
            return ("service_level", (record.channel, record.queue, record.team, level), 1)
    return None


def output_effect(record: OutputRecord) -> OutputEffect | None:
    """The series an output record moves, or None (open-session updates move none)."""
    if isinstance(record, SlaEvent):
        # Queue and team ride last; apply_output_effect bounds them to labels.*.
        if record.kind in (SLA_WARNING, SLA_BREACH, SLA_COMPLETED):
            # The metric rides after queue and team: a completed first-reply clock
            # is an answer that came after its breach (service level).
            fired = (record.channel, record.policy, record.queue, record.team, record.metric)
            return (record.kind, fired, 1)
        if record.kind == SLA_RETRACTED:
            # The last segment of a retraction's id is the kind it takes back.
            taken_back = record.sla_event_id.rpartition(":")[2]
            labels = (record.channel, record.policy, taken_back, record.queue, record.team)
            return (SLA_RETRACTED, labels, 1)
    elif isinstance(record, ContactSummary):
        # A contact's summary is sent again on every later change: its first
        # reply counts on the one summary that first carries it.
        if record.first_reply_new and record.first_reply_seconds is not None:
            return ("first_reply", (record.channel,), record.first_reply_seconds)
        # Never on the same summary as a first reply: containment is decided by
        # timed work (the repeat window), a first reply arrives with an event.
        if record.contained_new and record.contained is not None:
            return ("bot_contact", (record.channel, str(record.contained).lower()), 1)
        # The service level (service_level_effect) counts on the summary that
        # settles it, which is timed work too, never a first reply's summary.
    elif isinstance(record, JourneySignal):
        if record.kind == SWITCH_FAILURE:
            return ("switch_failure", (record.from_channel, record.to_channel), 1)
        if record.kind == FALSE_RESOLUTION:
            return ("false_resolution", (record.from_channel,), 1)
        if record.kind == BOUNCED:
            # from_channel is the need's first channel.
            return ("need_bounced", (record.from_channel,), 1)
    elif isinstance(record, NeedRecord):
        # A need's first record (version 1) opens it; its final record closes it.
        if record.status == NEED_FINAL:
            return ("need_closed", (record.first_channel, str(record.bounced).lower()), 1)
        if record.version == 1:
            return ("need_opened", (record.first_channel,), 1)
    elif isinstance(record, SessionRecord):
        if record.status == SESSION_FINAL and not record.correction:
            # A correction re-sends a journey already counted as closed.
            return ("session_closed", (), 1)
        if record.status == SESSION_SUPERSEDED:
            return ("session_superseded", (), 1)
    elif isinstance(record, LateEvent):
        channel = record.event.get("channel") if isinstance(record.event, dict) else None
        return ("late_event", (channel,), 1)
    return None


class Metrics:
    """The metrics of one process (worker or sink).

    ``channels``: the configured channel keys; any other channel value is reported
    as ``other``. ``None`` accepts every value (tests, tools that know no settings).
    ``queues``, ``teams``: ``labels.queues``/``labels.teams``; any other queue or
    team is ``other``, none at all ``none`` (settings.bounded_label), so producers
    cannot grow the label set and agents never become labels.
    """

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        channels: Iterable[str] | None = None,
        queues: Iterable[str] = (),
        teams: Iterable[str] = (),
    ) -> None:
        self.registry = registry
        self._channels = frozenset(channels) if channels is not None else None
        self._queues = tuple(queues)
        self._teams = tuple(teams)
        self._event_types = frozenset(EVENT_TYPES)
        self._children: dict[tuple[object, ...], Any] = {}

        def counter(name: str, doc: str, labels: tuple[str, ...] = ()) -> Counter:
            return Counter(name, doc, labels, registry=registry)

        def gauge(name: str, doc: str, labels: tuple[str, ...] = ()) -> Gauge:
            return Gauge(name, doc, labels, registry=registry)

        # Input side.
        self.events_consumed = counter(
            "cxstream_events_consumed_total",
            "Input events decoded, validated and processed.",
            ("channel", "type"),
        )
        self.dead_letters = counter(
            "cxstream_dead_letters_total",
            "Input records sent to the dead-letter topic; reason is the error class.",
            ("stage", "reason"),
        )
        self.late_events = counter(
            "cxstream_late_events_total",
            "Events that arrived after their session had closed (kept on the late topic).",
            ("channel",),
        )
        self.duplicate_events = counter(
            "cxstream_duplicate_events_total",
            "Events dropped because their event_id was already seen.",
            ("channel",),
        )
        self.rekeyed_events = counter(
            "cxstream_rekeyed_events_total",
            "Events that arrived under a key other than their customer id and were re-keyed.",
        )
        self.redelivered_records = counter(
            "cxstream_redelivered_records_total",
            "Input records delivered again after a restart and skipped: the state already "
            "held their effects.",
        )

        # Sessions.
        self.open_sessions = gauge("cxstream_open_sessions", "Sessions open in this worker.")
        self.sessions_closed = counter(
            "cxstream_sessions_closed_total", "Sessions emitted as final."
        )
        self.sessions_superseded = counter(
            "cxstream_sessions_superseded_total",
            "Sessions merged into another session by an out-of-order event.",
        )

        # SLA clocks.
        self.sla_warnings = counter(
            "cxstream_sla_warnings_total",
            "SLA clocks that passed the warning share of their target.",
            ("channel", "policy"),
        )
        self.sla_breaches = counter(
            "cxstream_sla_breaches_total",
            "SLA clocks that passed their target with no reply.",
            ("channel", "policy"),
        )
        self.sla_completed = counter(
            "cxstream_sla_completed_total",
            "Breached SLA clocks whose reply finally arrived.",
            ("channel", "policy"),
        )
        # Warnings and breaches above are gross: a retracted one stays counted
        # there and counts here too (net = breaches - retractions{kind="breach"}).
        self.sla_retractions = counter(
            "cxstream_sla_retractions_total",
            "SLA warnings and breaches taken back: a reply dated before them arrived "
            "after they fired (kind: what was taken back).",
            ("channel", "policy", "kind"),
        )
        self.sla_by_team = counter(
            "cxstream_sla_queue_team_events_total",
            "SLA warnings, breaches, completions and retractions (kind) per queue and team "
            "of the contact; queue/team outside labels.queues/teams read other, absent none.",
            ("channel", "queue", "team", "kind"),
        )
        # Service level = (answered - answered_late) / (answered + abandoned), per
        # channel, queue and team: the SQL views service_level* (docs/ops.md). All
        # three count a contact once, on the summary that settles its service level
        # (end + session gap + grace), so they equal SQL under any arrival order.
        self.sla_answered = counter(
            "cxstream_sla_answered_total",
            "Contacts settled as answered (a first reply came; counted once, at the settle "
            "point), per queue and team of the contact; queue/team outside "
            "labels.queues/teams read other, absent none.",
            ("channel", "queue", "team"),
        )
        self.sla_answered_late = counter(
            "cxstream_sla_answered_late_total",
            "Contacts settled as answered late (first reply after a first-reply breach in "
            "force), per queue and team like cxstream_sla_answered_total.",
            ("channel", "queue", "team"),
        )
        self.sla_abandoned = counter(
            "cxstream_sla_abandoned_total",
            "Contacts settled as abandoned (ended abandoned with no first reply), per queue "
            "and team like cxstream_sla_answered_total.",
            ("channel", "queue", "team"),
        )
        self.first_reply = Histogram(
            "cxstream_first_reply_seconds",
            "Calendar seconds from a contact's first customer message to the first reply.",
            ("channel",),
            buckets=FIRST_REPLY_BUCKETS,
            registry=registry,
        )
        self.oldest_unanswered = gauge(
            "cxstream_oldest_unanswered_seconds",
            "Age of the oldest running SLA clock per channel (0 when none runs).",
            ("channel",),
        )
        self.oldest_unanswered_ratio = gauge(
            "cxstream_sla_oldest_unanswered_deadline_ratio",
            "Oldest running SLA clock's elapsed time divided by its target (1 = breach).",
            ("channel",),
        )
        self.waiting_contacts = gauge(
            "cxstream_waiting_contacts",
            "Contacts whose customer waits for a reply now (running SLA clock), per channel.",
            ("channel",),
        )

        # Journeys.
        self.switch_failures = counter(
            "cxstream_channel_switch_failures_total",
            "Contacts that ended unresolved and were followed by a contact in another channel.",
            ("from_channel", "to_channel"),
        )
        self.false_resolutions = counter(
            "cxstream_false_resolutions_total",
            "Contacts marked resolved whose customer came back on the same topic.",
            ("channel",),
        )
        self.needs_opened = counter(
            "cxstream_needs_opened_total",
            "Needs (a customer's contacts on one need id or topic) seen for the first time, "
            "by the channel of their first contact.",
            ("first_channel",),
        )
        self.needs_closed = counter(
            "cxstream_needs_closed_total",
            "Needs closed (their window passed with no further contact), by first channel "
            "and whether they bounced.",
            ("first_channel", "bounced"),
        )
        self.needs_bounced = counter(
            "cxstream_needs_bounced_total",
            "Needs that crossed the bounce threshold (bounce.min_contacts contacts over "
            "bounce.min_channels channels before resolved), counted at the crossing contact.",
            ("first_channel",),
        )
        self.bot_contacts = counter(
            "cxstream_bot_contacts_total",
            "Bot-only contacts once their repeat window decided them; contained=true when "
            "no contact on the same topic followed within it.",
            ("channel", "contained"),
        )

        # Streaming health.
        self.consumer_lag = gauge(
            "cxstream_consumer_lag",
            "Records between the last one whose effects are in the state and the end of the "
            "partition.",
            ("topic", "partition"),
        )
        # Fed once per batch (pipeline/batch_histogram.py: a Histogram's
        # observe per event was ~5% of the worker's CPU).
        self.processing_latency = BatchHistogram(
            "cxstream_processing_latency_seconds",
            "Seconds from an event's occurred_at to the moment the worker processed it.",
            buckets=PROCESSING_LATENCY_BUCKETS,
            registry=registry,
        )
        self.stream_time = gauge(
            "cxstream_stream_time_seconds",
            "Stream time (event-time watermark) of a partition as unix seconds.",
            ("partition",),
        )

        # SQL sink (pipeline/sink_metrics.py).
        self.sink = SinkMetrics(registry)

        self.worker_info = Info(
            "cxstream_worker",
            "Version, configuration hash and stream core (compiled/interpreted) of this process.",
            registry=registry,
        )
        # Identity continuity (issue 16): fed once the worker runs identity.
        self.identity = IdentityMetrics(registry, self._channel)

    # -- helpers -------------------------------------------------------------------

    def _channel(self, channel: str | None) -> str:
        if channel is None:
            return OTHER
        if self._channels is not None and channel not in self._channels:
            return OTHER
        return channel

    def _child(self, metric: Counter | Gauge | Histogram, *values: str) -> Any:
        key = (id(metric), *values)
        child = self._children.get(key)
        if child is None:
            child = metric.labels(*values)
            self._children[key] = child
        return child

    def _inc(self, metric: Counter, *values: str, amount: float = 1) -> None:
        self._child(metric, *values).inc(amount)

    def _set(self, metric: Gauge, *values: str, value: float) -> None:
        self._child(metric, *values).set(value)

    # -- input ---------------------------------------------------------------------

    def observe_event(self, channel: str, event_type: str) -> None:
        """Count one processed input event (unknown types count as ``unknown``)."""
        kind = event_type if event_type in self._event_types else UNKNOWN_TYPE
        self._inc(self.events_consumed, self._channel(channel), kind)

    def observe_events(self, counts: Mapping[tuple[str, str], int]) -> None:
        """Count a batch of processed input events: ``(channel, type) -> count``.

        The worker counts per event in a plain dict and calls this once per
        batch; a labelled ``inc`` per event takes a lock each time.
        """
        for (channel, event_type), count in counts.items():
            kind = event_type if event_type in self._event_types else UNKNOWN_TYPE
            self._inc(self.events_consumed, self._channel(channel), kind, amount=count)

    def dead_letter(self, stage: str, reason: str) -> None:
        """Count one dead-lettered record; ``reason`` is the error class name."""
        self._inc(self.dead_letters, stage, reason)

    def duplicate_event(self, channel: str) -> None:
        self._inc(self.duplicate_events, self._channel(channel))

    def rekeyed_event(self) -> None:
        self.rekeyed_events.inc()

    def redelivered_record(self) -> None:
        self.redelivered_records.inc()

    def observe_processing_latency(self, seconds: float) -> None:
        """Record event time -> processed; negative values (clock skew) count as 0."""
        self.processing_latency.observe(max(seconds, 0.0))

    def observe_processing_latencies(self, processed_ms: int, occurred_ms: Iterable[int]) -> None:
        """Record event time -> processed for a batch processed at ``processed_ms``."""
        self.processing_latency.observe_many(
            max(processed_ms - occurred, 0) / 1000 for occurred in occurred_ms
        )

    # -- outputs -------------------------------------------------------------------

    def observe_output(self, record: OutputRecord) -> None:
        """Move the series a record of the stream core stands for.

        Open session updates move nothing: only the final (or superseded) version
        of a session counts, so redelivered updates do not inflate the counters.
        """
        effect = output_effect(record)
        if effect is not None:
            self.apply_output_effect(effect)
        effect = service_level_effect(record)
        if effect is not None:
            self.apply_output_effect(effect)

    def observe_outputs(self, records: Iterable[OutputRecord]) -> None:
        """:meth:`observe_output` for a batch of records, in one pass.

        Equal effects (same series, same labels) are counted and applied once
        with their number: per record, the label lookups and the counters' locks
        were ~10% of the worker's CPU. First-reply durations are observed one by one.
        """
        counted: dict[tuple[str, tuple[Any, ...]], int] = {}
        for record in records:
            for effect in (output_effect(record), service_level_effect(record)):
                if effect is None:
                    continue
                series, labels, _ = effect
                if series == "first_reply":
                    self.apply_output_effect(effect)
                else:
                    key = (series, labels)
                    counted[key] = counted.get(key, 0) + 1
        for (series, labels), times in counted.items():
            self.apply_output_effect((series, labels, 1), times)

    def apply_output_effect(self, effect: OutputEffect, times: int = 1) -> None:
        """Move the series of one :func:`output_effect` (``times`` equal effects at once)."""
        series, labels, value = effect
        if series == "first_reply":
            child = self._child(self.first_reply, self._channel(labels[0]))
            for _ in range(times):
                child.observe(value)
        elif series == "service_level":
            cell = self._channel_queue_team(labels[0], labels[1:3])
            level = labels[3]
            if level == ABANDONED_UNANSWERED:
                self._inc(self.sla_abandoned, *cell, amount=times)
            else:
                self._inc(self.sla_answered, *cell, amount=times)
                if level == ANSWERED_LATE:
                    self._inc(self.sla_answered_late, *cell, amount=times)
        elif series == "switch_failure":
            self._inc(
                self.switch_failures,
                self._channel(labels[0]),
                self._channel(labels[1]),
                amount=times,
            )
        elif series == "false_resolution":
            self._inc(self.false_resolutions, self._channel(labels[0]), amount=times)
        elif series == "need_opened":
            self._inc(self.needs_opened, self._channel(labels[0]), amount=times)
        elif series == "need_closed":
            self._inc(self.needs_closed, self._channel(labels[0]), str(labels[1]), amount=times)
        elif series == "need_bounced":
            self._inc(self.needs_bounced, self._channel(labels[0]), amount=times)
        elif series == "bot_contact":
            self._inc(self.bot_contacts, self._channel(labels[0]), str(labels[1]), amount=times)
        elif series == "session_closed":
            self.sessions_closed.inc(times)
        elif series == "session_superseded":
            self.sessions_superseded.inc(times)
        elif series == "late_event":
            self._inc(self.late_events, self._channel(labels[0]), amount=times)
        elif series == SLA_RETRACTED:
            kind = labels[2] if labels[2] in (SLA_WARNING, SLA_BREACH) else "other"
            self._inc(
                self.sla_retractions, self._channel(labels[0]), str(labels[1]), kind, amount=times
            )
            self._inc_queue_team(labels[0], labels[3:5], SLA_RETRACTED, times)
        else:
            counter = {
                SLA_WARNING: self.sla_warnings,
                SLA_BREACH: self.sla_breaches,
                SLA_COMPLETED: self.sla_completed,
            }[series]
            self._inc(counter, self._channel(labels[0]), str(labels[1]), amount=times)
            self._inc_queue_team(labels[0], labels[2:4], series, times)

    def _inc_queue_team(
        self, channel: str | None, queue_team: tuple[str | None, ...], kind: str, times: int = 1
    ) -> None:
        """Count an SLA effect per queue and team; an effect without them (built by
        an older caller) counts as ``none``."""
        self._inc(
            self.sla_by_team, *self._channel_queue_team(channel, queue_team), kind, amount=times
        )

    def _channel_queue_team(
        self, channel: str | None, queue_team: tuple[str | None, ...]
    ) -> tuple[str, str, str]:
        """Bounded channel, queue and team labels; missing queue/team read ``none``."""
        queue = bounded_label(queue_team[0] if queue_team else None, self._queues)
        team = bounded_label(queue_team[1] if len(queue_team) > 1 else None, self._teams)
        return self._channel(channel), queue, team

    # -- gauges --------------------------------------------------------------------

    def set_open_sessions(self, count: int) -> None:
        self.open_sessions.set(count)

    def set_oldest_unanswered(self, channel: str, seconds: float, ratio: float) -> None:
        """Age (s) of the channel's oldest running SLA clock and age / target.

        Call with ``0, 0`` when no clock runs on the channel, so the gauge does not
        keep showing a clock that has stopped.
        """
        label = self._channel(channel)
        self._set(self.oldest_unanswered, label, value=seconds)
        self._set(self.oldest_unanswered_ratio, label, value=ratio)

    def set_waiting_contacts(self, channel: str, count: int) -> None:
        """Contacts of the channel waiting for a reply now, over this worker's partitions."""
        self._set(self.waiting_contacts, self._channel(channel), value=count)

    def set_lag(self, topic: str, partition: int, lag: int) -> None:
        self._set(self.consumer_lag, topic, str(partition), value=lag)

    def set_stream_time(self, partition: int, epoch_seconds: float) -> None:
        self._set(self.stream_time, str(partition), value=epoch_seconds)

    def set_worker_info(self, version: str, config_hash: str, core: str) -> None:
        """``core`` is ``compiled`` or ``interpreted`` (:func:`pipeline.core.core_mode`)."""
        self.worker_info.info({"version": version, "config_hash": config_hash, "core": core})


_SAMPLE_SUFFIXES = {
    "counter": ("_total",),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count"),
    "summary": ("", "_sum", "_count"),
    "info": ("_info",),
}


def exported_names(registry: CollectorRegistry) -> frozenset[str]:
    """Every series name the registry can export, labelled children or not.

    Used by the dashboard and rule tests to check that queries name real metrics;
    it reads the metric families, so it does not depend on a sample having been
    observed yet.
    """
    names: set[str] = set()
    for family in registry.collect():
        for suffix in _SAMPLE_SUFFIXES.get(family.type, ("",)):
            names.add(family.name + suffix)
    return frozenset(names)
