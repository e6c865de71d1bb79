"""The one settings object: frozen dataclasses, one per section of the configuration.

Everything receives a frozen :class:`Settings` (or a part of it) explicitly.
Reading the defaults, a config file and the environment into one, and checking
every key and value on the way, is :mod:`pipeline.settings_loader`
(:func:`~pipeline.settings_loader.load_settings`, and
:func:`~pipeline.settings_loader.build_settings` for tests). This module has no
I/O and no import-time side effects.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

CHANNEL_KINDS = ("physical", "digital")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True, slots=True)
class Channel:
    key: str
    kind: str
    display_name: str
    # A synchronous contact (a visit, a call, a chat, a meeting) has the customer
    # with us from its start to its end: while it is open its journey stays open.
    synchronous: bool = False
    # The Alertmanager receiver (the team) its channel alerts go to; empty means
    # ``cx-<key>``. `cxstream ops alertmanager-config` writes the routes from it.
    alert_receiver: str = ""

    @property
    def receiver(self) -> str:
        return self.alert_receiver or f"cx-{self.key}"


@dataclass(frozen=True, slots=True)
class ChannelRegistry:
    """The channels producers may send on; a new channel is a config change."""

    channels: Mapping[str, Channel]

    def __contains__(self, key: object) -> bool:
        return key in self.channels

    def get(self, key: str) -> Channel | None:
        return self.channels.get(key)

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(self.channels)

    @property
    def synchronous(self) -> frozenset[str]:
        """Keys of the synchronous channels."""
        return frozenset(key for key, channel in self.channels.items() if channel.synchronous)


@dataclass(frozen=True, slots=True)
class CalendarSpec:
    """A calendar a target is measured on.

    ``type`` is ``24x7`` or ``business``. For business calendars ``hours`` maps
    a weekday (``mon``..``sun``) to (open, close) as ``HH:MM`` local time
    (``24:00`` allowed as close); ``holidays`` lists closed-day sets: ``FI``
    (Finnish public holidays) and ``TARGET2`` (ECB TARGET2 closing days).
    """

    name: str
    type: str
    timezone: str = "UTC"
    hours: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    holidays: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class PolicySpec:
    """One response-time target: a metric on a channel (optionally one topic)."""

    name: str
    channel: str
    metric: str
    target_seconds: float
    calendar: str
    warning_share: float = 0.8
    human_only: bool = True
    topic: str | None = None
    #: The policy's version: an explicit ``version:`` key, else a short digest of
    #: its definition (:func:`policy_digest`). Every SLA event records the
    #: version of the policy its clock started under.
    version: str | None = None

    @property
    def effective_version(self) -> str:
        return self.version if self.version else policy_digest(self)


def policy_digest(spec: PolicySpec) -> str:
    """8 hex digits of SHA-256 over the fields that decide a clock (not ``version``)."""
    definition = {
        "name": spec.name,
        "channel": spec.channel,
        "metric": spec.metric,
        "target_seconds": spec.target_seconds,
        "calendar": spec.calendar,
        "warning_share": spec.warning_share,
        "human_only": spec.human_only,
        "topic": spec.topic,
    }
    canonical = json.dumps(definition, sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()[:8]


@dataclass(frozen=True, slots=True)
class LabelSettings:
    """The queues and teams that may appear as Prometheus label values.

    Any other queue or team is counted under ``other`` (:func:`bounded_label`),
    so a producer sending free text cannot grow the label set; agents never
    appear as labels.
    """

    queues: tuple[str, ...] = ()
    teams: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class OpsSettings:
    """The ops wall served by every worker (docs/ops.md, "The fleet-wide wall")."""

    #: Prometheus scraping the workers: the wall sums their waiting-now and oldest
    #: wait from it; None: the serving worker's own figures, labelled so.
    prometheus_url: str | None = None
    #: The wall's label language, ``en`` or ``fi`` (``?lang=`` overrides per screen).
    wall_language: str = "en"


OTHER_LABEL = "other"
NO_LABEL = "none"


def bounded_label(value: str | None, allowed: tuple[str, ...]) -> str:
    """``value`` if configured, ``none`` if absent, else ``other``."""
    if value is None:
        return NO_LABEL
    return value if value in allowed else OTHER_LABEL


@dataclass(frozen=True, slots=True)
class KafkaSettings:
    bootstrap: str = "127.0.0.1:9092"
    topic_prefix: str = "cx"
    input_partitions: int = 6
    output_partitions: int = 6
    replication_factor: int = 1
    retention_hours: float = 168
    #: PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL; every client the project opens
    #: uses it (see pipeline/kafka_clients.py and docs/ops.md "Security").
    security_protocol: str = "PLAINTEXT"
    #: SCRAM-SHA-512 (recommended), SCRAM-SHA-256 or PLAIN; SASL_* protocols only.
    sasl_mechanism: str = "SCRAM-SHA-512"
    sasl_username: str | None = None
    #: The password itself, or (preferred) a file holding it: keeps it out of
    #: config files and the environment of every process.
    sasl_password: str | None = None
    sasl_password_file: str | None = None
    #: CA bundle that signed the brokers' certificates (SSL and SASL_SSL).
    ssl_cafile: str | None = None
    #: Client certificate and key, for brokers that require TLS client auth.
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    ssl_check_hostname: bool = True

    def topic(self, suffix: str) -> str:
        """Full topic name, e.g. ``topic("interactions")`` -> ``cx.interactions``."""
        return f"{self.topic_prefix}.{suffix}"


@dataclass(frozen=True, slots=True)
class SqlSettings:
    url: str = "sqlite:///var/cxstream.db"
    batch_size: int = 5000
    batch_seconds: float = 1.0
    pseudonymise: bool = False
    pseudonym_key_file: str | None = None


@dataclass(frozen=True, slots=True)
class WorkerSettings:
    web_port: int = 6066
    clock: str = "live"
    #: The live clock is max(stream time, wall clock - this). 0: a breach fires on
    #: time, and a reply dated before it that arrives later retracts it
    #: (``sla.retraction_window``, pipeline/core/retraction.py).
    allowed_skew_seconds: float = 0.0
    #: How often the live clock advances to the wall clock and fires what is due
    #: (also the gauges' refresh); a breach on a quiet partition waits up to this.
    tick_seconds: float = 0.5
    #: Records per batch at most: one batch, one commit (pipeline/runtime/loop.py).
    batch_size: int = 5000
    session_update_seconds: float = 5.0
    #: ``at_least_once``: outputs acknowledged, then state, then offsets, each
    #: awaited before the next; ``exactly_once``: the three in one Kafka
    #: transaction per batch (pipeline/runtime/checkpoint.py).
    guarantee: str = "at_least_once"
    #: Exactly once: this worker's transactional id. A restarted worker must
    #: reuse it (it fences its predecessor); two live workers must not share it.
    #: Default: ``<group>-<host name>-<web port>``.
    transactional_id: str | None = None
    #: Address the worker's and the sink's web server binds to (/metrics,
    #: /healthz, /ops). Loopback by default; containers set 0.0.0.0 explicitly.
    web_bind: str = "127.0.0.1"
    #: /healthz turns unhealthy (503) when the worker holds partitions with lag
    #: and none of them advanced for this long, so an orchestrator restarts it.
    stuck_seconds: float = 60.0
    #: Consumer-group session timeout and heartbeat: how fast the group notices
    #: a dead worker and hands its partitions to the others (docs/ops.md).
    #: 6 s is the broker's default minimum (group.min.session.timeout.ms).
    session_timeout_seconds: float = 6.0
    heartbeat_interval_seconds: float = 1.0
    #: Honour end-of-input control records on the input topic. Off by default:
    #: any producer allowed to write the input topic could otherwise close every
    #: session of a partition. Backfills and replays through Kafka turn it on.
    control_records: bool = False


@dataclass(frozen=True, slots=True)
class LimitSettings:
    """Bounds that keep one record from stopping or poisoning the pipeline."""

    #: An event more than this far ahead of the wall clock when it is processed
    #: is dead-lettered (live and replay alike): one mis-set device clock must
    #: not move a partition's clock into the future.
    max_future_skew_seconds: float = 300.0
    #: Largest record the worker or the sink sends (dead letters, late-event
    #: records, outputs); larger ones are cut to fit and say so in a header.
    #: Below the broker's default message.max.bytes (1 MiB) with room for headers.
    max_record_bytes: int = 900_000


@dataclass(frozen=True, slots=True)
class ReplaySettings:
    #: Processes an offline replay runs its partitions in; 0 (``auto`` in YAML):
    #: one per usable CPU core, for inputs of at least 20,000 events.
    workers: int = 0


@dataclass(frozen=True, slots=True)
class CoreSettings:
    """Event-time rules of the stream core, in seconds."""

    session_gap_seconds: float = 1800.0
    session_grace_seconds: float = 300.0
    switch_window_seconds: float = 86400.0
    false_resolution_seconds: float = 7 * 86400.0
    dedup_retention_seconds: float = 86400.0
    # An open synchronous contact holds its journey at most this long after its start.
    max_open_contact_seconds: float = 4 * 3600.0
    # A reply dated before a fired warning/breach retracts it when it arrives at
    # most this long (partition clock) after the due time; 0 turns retraction off.
    retraction_window_seconds: float = 600.0
    # Needs: a need closes this long after its last contact; a need with at least
    # bounce_min_contacts contacts over bounce_min_channels channels before it is
    # resolved is bounced (pipeline/core/needs.py).
    need_window_seconds: float = 7 * 86400.0
    bounce_min_contacts: int = 3
    bounce_min_channels: int = 2


@dataclass(frozen=True, slots=True)
class IdentitySettings:
    """Identity continuity (issue 16, pipeline/core/identity.py), in event-time seconds."""

    #: Events of an identifier not linked to a customer wait at most this long
    #: after the first of them; then they go on as the anonymous customer.
    hold_seconds: float = 900.0
    #: ... and at most this many of them per identifier.
    max_held: int = 200
    #: Events released through identity are kept this long, so that an unlink or
    #: a late identification can re-attribute them; older ones stay where they are.
    unlink_window_seconds: float = 7 * 86400.0


@dataclass(frozen=True, slots=True)
class Settings:
    kafka: KafkaSettings
    sql: SqlSettings
    worker: WorkerSettings
    core: CoreSettings
    channels: ChannelRegistry
    calendars: Mapping[str, CalendarSpec]
    policies: tuple[PolicySpec, ...]
    replay: ReplaySettings = field(default_factory=ReplaySettings)
    limits: LimitSettings = field(default_factory=LimitSettings)
    labels: LabelSettings = field(default_factory=LabelSettings)
    ops: OpsSettings = field(default_factory=OpsSettings)
    identity: IdentitySettings = field(default_factory=IdentitySettings)
    source: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def config_hash(self) -> str:
        """Short hash of the effective configuration (exported as worker info)."""
        canonical = json.dumps(self.source, sort_keys=True, default=str)
        return hashlib.sha256(canonical.encode()).hexdigest()[:12]
