"""The one settings object.

:func:`load_settings` is the only place that reads the environment and config
files. Everything else receives a frozen :class:`Settings` (or a part of it)
explicitly; tests build one with :func:`build_settings` from a plain dict and
never touch ``os.environ``.

Precedence, lowest first: ``pipeline/defaults.yaml``, the config file
(``--config`` or ``CXSTREAM_CONFIG``), environment variables
``CXSTREAM_<SECTION>_<KEY>`` for scalar keys (e.g. ``CXSTREAM_KAFKA_BOOTSTRAP``).
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import hashlib
import json
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pipeline.errors import ConfigError

DEFAULTS_FILE = Path(__file__).with_name("defaults.yaml")
CHANNEL_KINDS = ("physical", "digital")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str | int | float) -> float:
    """``"2h"`` -> 7200.0; a bare number is seconds."""
    if isinstance(text, int | float):
        return float(text)
    match = _DURATION.match(str(text))
    if not match:
        raise ConfigError(f"{text!r} is not a duration; write e.g. 90s, 3m, 2h or 2d")
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


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
    batch_size: int = 1000
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


def _deep_merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from exc
    if not isinstance(loaded, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top level")
    return loaded


def default_config() -> dict[str, Any]:
    return _read_yaml(DEFAULTS_FILE)


def _env_overrides(environ: Mapping[str, str], defaults: Mapping[str, Any]) -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    for section, values in defaults.items():
        if not isinstance(values, Mapping):
            continue
        for key, default in values.items():
            name = f"CXSTREAM_{section}_{key}".upper()
            if name not in environ or isinstance(default, Mapping | list):
                continue
            raw = environ[name]
            try:
                value = yaml.safe_load(raw) if raw else raw
            except yaml.YAMLError as exc:
                raise ConfigError(f"{name}={raw!r} does not parse: {exc}") from exc
            section_type = SECTION_TYPES.get(section)
            if section_type is not None and key in _field_types(section_type):
                try:
                    _check_type(f"{section}.{key}", value, _field_types(section_type)[key])
                except ConfigError as exc:
                    raise ConfigError(f"{name}: {exc}") from exc
            overrides.setdefault(section, {})[key] = value
    return overrides


def load_settings(
    config_file: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Build the settings from defaults, a config file, the environment and overrides."""
    import os

    env = os.environ if environ is None else environ
    config = default_config()
    path = config_file or env.get("CXSTREAM_CONFIG")
    if path:
        config = _deep_merge(config, _read_yaml(Path(path)))
    config = _deep_merge(config, _env_overrides(env, config))
    if overrides:
        config = _deep_merge(config, overrides)
    return build_settings(config)


def build_settings(config: Mapping[str, Any] | None = None) -> Settings:
    """Build settings from a config dict merged over the defaults (used by tests)."""
    merged = _deep_merge(default_config(), config or {})
    try:
        return _build(merged)
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"invalid configuration: {exc}") from exc


#: Sections read into a settings dataclass: their keys and types are its fields.
SECTION_TYPES: dict[str, type] = {}
#: Sections whose keys are free (a name per channel, calendar or policy).
OPEN_SECTIONS = ("channels", "calendars", "sla_policies")


def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _unknown(where: str, key: str, known: typing.Iterable[str]) -> ConfigError:
    close = difflib.get_close_matches(key, list(known), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else f"; known: {', '.join(sorted(known))}"
    return ConfigError(f"unknown setting {where}{key}{hint}")


_TYPE_WORDS = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}


def _check_type(where: str, value: Any, hint: Any) -> None:
    """Raise ConfigError naming ``where`` unless ``value`` fits the annotation ``hint``."""
    allowed = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    if value is None and type(None) in allowed:
        return
    for kind in allowed:
        if kind is bool and isinstance(value, bool):
            return
        if kind is int and isinstance(value, int) and not isinstance(value, bool):
            return
        if kind is float and isinstance(value, int | float) and not isinstance(value, bool):
            return
        if kind is str and isinstance(value, str):
            return
    wanted = " or ".join(_TYPE_WORDS.get(kind, "null") for kind in allowed)
    raise ConfigError(f"{where} must be {wanted}, not {value!r}")


def _section(cls: type[Any], name: str, raw: Any) -> Any:
    """A settings dataclass from its section, every key known and of the right type."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{name} must be a mapping of settings, not {raw!r}")
    fields = _field_types(cls)
    values = {}
    for key, value in raw.items():
        if key not in fields:
            raise _unknown(f"{name}.", key, fields)
        _check_type(f"{name}.{key}", value, fields[key])
        values[key] = float(value) if fields[key] is float else value
    return cls(**values)


def _check_known_keys(config: Mapping[str, Any]) -> None:
    """Every section and every key of a rule section exists in the defaults."""
    defaults = default_config()
    for section, values in config.items():
        if section not in defaults:
            close = difflib.get_close_matches(section, list(defaults), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"unknown section {section!r} in the configuration{hint}")
        if section in OPEN_SECTIONS or section in SECTION_TYPES:
            continue
        if isinstance(values, Mapping):
            for key in values:
                if key not in defaults[section]:
                    raise _unknown(f"{section}.", key, defaults[section])


def _build(config: Mapping[str, Any]) -> Settings:
    _check_known_keys(config)
    kafka = _section(KafkaSettings, "kafka", config.get("kafka", {}))
    sql = _section(SqlSettings, "sql", config.get("sql", {}))
    worker = _section(WorkerSettings, "worker", config.get("worker", {}))
    if worker.clock not in ("live", "stream"):
        raise ConfigError(f"worker.clock must be 'live' or 'stream', not {worker.clock!r}")
    if worker.guarantee not in ("at_least_once", "exactly_once"):
        raise ConfigError(
            f"worker.guarantee must be 'at_least_once' or 'exactly_once', not {worker.guarantee!r}"
        )
    if worker.batch_size < 1:
        raise ConfigError("worker.batch_size must be at least 1")
    replay = _build_replay(config.get("replay", {}))
    limits = _build_limits(config.get("limits", {}))
    labels = _build_labels(config.get("labels", {}))
    ops = _section(OpsSettings, "ops", config.get("ops", {}))
    if ops.wall_language not in ("en", "fi"):
        raise ConfigError(f"ops.wall_language must be 'en' or 'fi', not {ops.wall_language!r}")
    _check_kafka_security(kafka)
    session = config.get("session", {})
    switch = config.get("switch", {})
    dedup = config.get("dedup", {})
    retraction_window = parse_duration(config.get("sla", {}).get("retraction_window", "10m"))
    if retraction_window < 0:
        raise ConfigError("sla.retraction_window must not be negative")
    core = CoreSettings(
        session_gap_seconds=float(session.get("gap_minutes", 30)) * 60,
        session_grace_seconds=float(session.get("grace_minutes", 5)) * 60,
        switch_window_seconds=float(switch.get("window_hours", 24)) * 3600,
        false_resolution_seconds=float(switch.get("false_resolution_days", 7)) * 86400,
        dedup_retention_seconds=float(dedup.get("retention_hours", 24)) * 3600,
        max_open_contact_seconds=parse_duration(session.get("max_open_contact", "4h")),
        retraction_window_seconds=retraction_window,
        need_window_seconds=parse_duration(config.get("needs", {}).get("window", "7d")),
        bounce_min_contacts=int(config.get("bounce", {}).get("min_contacts", 3)),
        bounce_min_channels=int(config.get("bounce", {}).get("min_channels", 2)),
    )
    identity = _build_identity(config.get("identity", {}), core)
    channels = _build_channels(config.get("channels", {}))
    calendars = _build_calendars(config.get("calendars", {}))
    policies = tuple(
        _build_policy(raw, channels, calendars) for raw in config.get("sla_policies", [])
    )
    names = [p.name for p in policies]
    if len(names) != len(set(names)):
        raise ConfigError(f"sla_policies: names must be unique, got {names}")
    return Settings(
        kafka=kafka,
        sql=sql,
        worker=worker,
        core=core,
        channels=channels,
        calendars=calendars,
        policies=policies,
        replay=replay,
        limits=limits,
        labels=labels,
        ops=ops,
        identity=identity,
        source=config,
    )


def _build_replay(raw: Mapping[str, Any]) -> ReplaySettings:
    workers = raw.get("workers", "auto")
    if workers == "auto":
        workers = 0
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        raise ConfigError(f"replay.workers must be auto or a number of processes, not {workers!r}")
    return ReplaySettings(workers=workers)


def _build_identity(raw: Mapping[str, Any], core: CoreSettings) -> IdentitySettings:
    """The ``identity`` section; the hold must end before a released event is late."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"identity must be a mapping of settings, not {raw!r}")
    hold = parse_duration(raw.get("hold", "15m"))
    max_held = raw.get("max_held", 200)
    unlink_window = parse_duration(raw.get("unlink_window", "7d"))
    if hold <= 0:
        raise ConfigError("identity.hold must be positive")
    # A held event reaches its customer's processor up to the hold after its own
    # time; past session.gap + session.grace it would be late there and dropped.
    lateness = core.session_gap_seconds + core.session_grace_seconds
    if hold >= lateness:
        raise ConfigError(
            f"identity.hold ({hold:g} s) must be shorter than session.gap_minutes + "
            f"session.grace_minutes ({lateness:g} s): events released after a longer "
            "hold would be late for their customer"
        )
    if isinstance(max_held, bool) or not isinstance(max_held, int) or max_held < 1:
        raise ConfigError(
            f"identity.max_held must be a whole number of events >= 1, not {max_held!r}"
        )
    if unlink_window < 0:
        raise ConfigError("identity.unlink_window must not be negative")
    return IdentitySettings(
        hold_seconds=hold, max_held=max_held, unlink_window_seconds=unlink_window
    )


SECTION_TYPES.update(kafka=KafkaSettings, sql=SqlSettings, worker=WorkerSettings, ops=OpsSettings)

SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN")


def _check_kafka_security(kafka: KafkaSettings) -> None:
    if kafka.security_protocol not in SECURITY_PROTOCOLS:
        raise ConfigError(
            f"kafka.security_protocol must be one of {SECURITY_PROTOCOLS}, "
            f"not {kafka.security_protocol!r}"
        )
    if kafka.security_protocol.startswith("SASL_"):
        if kafka.sasl_mechanism not in SASL_MECHANISMS:
            raise ConfigError(
                f"kafka.sasl_mechanism must be one of {SASL_MECHANISMS}, "
                f"not {kafka.sasl_mechanism!r}"
            )
        if not kafka.sasl_username:
            raise ConfigError(f"kafka.sasl_username is needed with {kafka.security_protocol}")
        if not kafka.sasl_password and not kafka.sasl_password_file:
            raise ConfigError(
                f"kafka.sasl_password or kafka.sasl_password_file is needed with "
                f"{kafka.security_protocol}"
            )


def _build_limits(raw: Mapping[str, Any]) -> LimitSettings:
    skew = parse_duration(raw.get("max_future_skew", "5m"))
    if skew <= 0:
        raise ConfigError("limits.max_future_skew must be positive")
    size = raw.get("max_record_bytes", 900_000)
    if isinstance(size, bool) or not isinstance(size, int) or size < 10_000:
        raise ConfigError(f"limits.max_record_bytes must be a number >= 10000, not {size!r}")
    return LimitSettings(max_future_skew_seconds=skew, max_record_bytes=size)


def _build_labels(raw: Mapping[str, Any]) -> LabelSettings:
    values: dict[str, tuple[str, ...]] = {}
    for key in ("queues", "teams"):
        names = raw.get(key) or []
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ConfigError(f"labels.{key} must be a list of names, not {names!r}")
        if OTHER_LABEL in names or NO_LABEL in names:
            raise ConfigError(f"labels.{key}: {OTHER_LABEL!r} and {NO_LABEL!r} are reserved")
        values[key] = tuple(names)
    return LabelSettings(queues=values["queues"], teams=values["teams"])


def _build_channels(raw: Mapping[str, Any]) -> ChannelRegistry:
    channels: dict[str, Channel] = {}
    for key, spec in raw.items():
        spec = spec or {}
        kind = spec.get("kind", "digital")
        if kind not in CHANNEL_KINDS:
            raise ConfigError(f"channels.{key}.kind must be one of {CHANNEL_KINDS}, not {kind!r}")
        if not re.fullmatch(r"[a-z][a-z0-9_]*", key):
            raise ConfigError(f"channel key {key!r} must be lower_snake_case")
        synchronous = spec.get("synchronous", False)
        if not isinstance(synchronous, bool):
            raise ConfigError(f"channels.{key}.synchronous must be true or false")
        receiver = spec.get("alert_receiver") or ""
        if not isinstance(receiver, str) or not re.fullmatch(r"[A-Za-z0-9_.-]*", receiver):
            raise ConfigError(f"channels.{key}.alert_receiver must be a name of [A-Za-z0-9_.-]")
        channels[key] = Channel(
            key=key,
            kind=kind,
            display_name=spec.get("display_name", key),
            synchronous=synchronous,
            alert_receiver=receiver,
        )
    if not channels:
        raise ConfigError("channels: at least one channel must be configured")
    return ChannelRegistry(channels)


def _build_calendars(raw: Mapping[str, Any]) -> dict[str, CalendarSpec]:
    calendars = {"24x7": CalendarSpec(name="24x7", type="24x7")}
    for name, spec in raw.items():
        kind = spec.get("type", "business")
        if kind not in ("24x7", "business"):
            raise ConfigError(f"calendars.{name}.type must be 24x7 or business")
        hours: dict[str, tuple[str, str]] = {}
        for day, span in (spec.get("hours") or {}).items():
            if day not in WEEKDAYS:
                raise ConfigError(f"calendars.{name}.hours: {day!r} is not one of {WEEKDAYS}")
            opens, closes = span
            hours[day] = (str(opens), str(closes))
        calendars[name] = CalendarSpec(
            name=name,
            type=kind,
            timezone=spec.get("timezone", "UTC"),
            hours=hours,
            holidays=tuple(spec.get("holidays") or ()),
        )
    return calendars


def _build_policy(
    raw: Mapping[str, Any], channels: ChannelRegistry, calendars: Mapping[str, CalendarSpec]
) -> PolicySpec:
    policy = PolicySpec(
        name=raw["name"],
        channel=raw["channel"],
        metric=raw.get("metric", "first_reply"),
        target_seconds=parse_duration(raw["target"]),
        calendar=raw.get("calendar", "24x7"),
        warning_share=float(raw.get("warning_share", 0.8)),
        human_only=bool(raw.get("human_only", True)),
        topic=raw.get("topic"),
        version=None if raw.get("version") is None else str(raw["version"]),
    )
    where = f"sla_policies.{policy.name}"
    if policy.channel not in channels:
        raise ConfigError(f"{where}.channel {policy.channel!r} is not a configured channel")
    if policy.calendar not in calendars:
        raise ConfigError(f"{where}.calendar {policy.calendar!r} is not a configured calendar")
    if policy.metric not in ("first_reply", "next_reply"):
        raise ConfigError(f"{where}.metric must be first_reply or next_reply")
    if not 0 < policy.warning_share < 1:
        raise ConfigError(f"{where}.warning_share must be between 0 and 1")
    if policy.target_seconds <= 0:
        raise ConfigError(f"{where}.target must be positive")
    return policy
