"""Reads the configuration into the one :class:`~pipeline.settings.Settings`.

:func:`load_settings` is the only place that reads the environment and config
files; tests build settings with :func:`build_settings` from a plain dict and
never touch ``os.environ``. Every section and key is checked on the way: an
unknown key names its closest known neighbour, a value of the wrong type names
the setting (:class:`~pipeline.errors.ConfigError`).

Precedence, lowest first: ``pipeline/defaults.yaml``, the config file
(``--config`` or ``CXSTREAM_CONFIG``), environment variables
``CXSTREAM_<SECTION>_<KEY>`` for scalar keys (e.g. ``CXSTREAM_KAFKA_BOOTSTRAP``).
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import functools
import re
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from pipeline.errors import ConfigError
from pipeline.settings import (
    CHANNEL_KINDS,
    NO_LABEL,
    OTHER_LABEL,
    WEEKDAYS,
    CalendarSpec,
    Channel,
    ChannelRegistry,
    CoreSettings,
    IdentitySettings,
    KafkaSettings,
    LabelSettings,
    LimitSettings,
    OpsSettings,
    PolicySpec,
    ReplaySettings,
    Settings,
    SqlSettings,
    WorkerSettings,
)

DEFAULTS_FILE = Path(__file__).with_name("defaults.yaml")

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
    """The packaged defaults, a fresh copy each call (parsed once per process:
    YAML parsing is pure Python here and a command builds its settings up to
    three times)."""
    return copy.deepcopy(_packaged_defaults())


@functools.cache
def _packaged_defaults() -> dict[str, Any]:
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
SECTION_TYPES: dict[str, type] = {
    "kafka": KafkaSettings,
    "sql": SqlSettings,
    "worker": WorkerSettings,
    "ops": OpsSettings,
}
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
    # time: past session.gap + session.grace it would be late there and dropped.
    # Switch pairs and bounces wait the hold after the contact that decides them
    # (CoreRules.settle_ms), and must be decided before that contact's journey
    # closes (gap + grace after it at the earliest): so at most the gap.
    gap = core.session_gap_seconds
    if hold > gap:
        raise ConfigError(
            f"identity.hold ({hold:g} s) must be at most session.gap_minutes ({gap:g} s): "
            "events released after a longer hold could be late for their customer, and "
            "switch failures and bounces, which wait the hold, would be decided after "
            "the journey closed"
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
