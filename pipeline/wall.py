"""The fleet-wide ops wall: the ``/ops/wall.json`` document, assembled.

History figures come from the SQL store (:mod:`pipeline.wall_queries`), the
fleet-wide live figures from Kafka (:mod:`pipeline.wall_kafka`), and the one
figure that only a worker knows (the oldest unanswered item) from the serving
worker's metrics when there is one, labelled as such. docs/ops.md, "The
fleet-wide wall", defines every figure. The page is ``pipeline/static/wall.html``;
it is served by every worker (``agents/ops_page.py``) and by ``cxstream wall``
(:mod:`pipeline.wall_server`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine

from pipeline.settings import KafkaSettings, Settings
from pipeline.wall_kafka import FleetFigures, fleet_figures
from pipeline.wall_prometheus import WallLive, wall_live
from pipeline.wall_queries import (
    AnswerFigures,
    answer_figures,
    bounces,
    group_columns,
    hourly_trend,
    sla_counts,
    switch_failures,
)
from pipeline.wall_windows import DEFAULT_SHIFTS, DEFAULT_TIMEZONE, TREND_HOURS, wall_windows

LANGUAGES = ("en", "fi")


@dataclass(frozen=True, slots=True)
class WallChannel:
    key: str
    display_name: str
    target_seconds: float | None  # the smallest first-reply target; None: no policy


@dataclass(frozen=True, slots=True)
class WallConfig:
    """What the wall needs from the settings, built once by :func:`wall_config`."""

    channels: tuple[WallChannel, ...]
    timezone: str = DEFAULT_TIMEZONE
    shifts: tuple[str, ...] = DEFAULT_SHIFTS
    lang: str = "en"
    trend_hours: int = TREND_HOURS

    @property
    def targets(self) -> dict[str, float]:
        return {c.key: c.target_seconds for c in self.channels if c.target_seconds is not None}


def wall_config(
    settings: Settings, *, lang: str = "en", shifts: Sequence[str] = DEFAULT_SHIFTS
) -> WallConfig:
    """Channels in display order (web messages first, like ``/ops``), their targets,
    and the calendar's time zone (the banking calendar's, else Europe/Helsinki)."""
    if lang not in LANGUAGES:
        raise ValueError(f"wall language {lang!r}: choose one of {', '.join(LANGUAGES)}")
    targets: dict[str, float] = {}
    for policy in settings.policies:
        if policy.metric == "first_reply" and policy.topic is None:
            current = targets.get(policy.channel, policy.target_seconds)
            targets[policy.channel] = min(current, policy.target_seconds)
    keys = sorted(settings.channels.keys, key=lambda key: key != "web_message")
    channels = []
    for key in keys:
        channel = settings.channels.get(key)
        name = channel.display_name if channel is not None else key
        channels.append(WallChannel(key, name, targets.get(key)))
    calendar = settings.calendars.get("banking_hours")
    timezone = calendar.timezone if calendar is not None else DEFAULT_TIMEZONE
    return WallConfig(tuple(channels), timezone, tuple(shifts), lang)


def _answers(figures: AnswerFigures | None) -> dict[str, Any]:
    figures = figures or AnswerFigures(0, 0, 0, 0.0)
    return {
        "answered": figures.answered,
        "within_target": figures.within_target,
        "abandoned": figures.abandoned,
        "service_level": figures.service_level,
        "average_speed_of_answer": figures.average_speed_of_answer,
        "abandonment": figures.abandonment,
    }


def _group_rows(
    conn: Connection,
    recent: datetime,
    today: datetime,
    now: datetime,
    targets: Mapping[str, float],
    group: str,
) -> list[dict[str, Any]]:
    """One row per queue (or team) seen today: service level 15 min and today, breaches today.

    Rows with no queue (older events, or a channel without queues) are the group ``""``.
    """
    recent_figures = answer_figures(conn, recent, now, targets, group)
    today_figures = answer_figures(conn, today, now, targets, group)
    breaches = sla_counts(conn, today, now, group)
    names = sorted(set(recent_figures) | set(today_figures) | set(breaches))
    return [
        {
            "name": name,
            "recent": _answers(recent_figures.get(name)),
            "today": _answers(today_figures.get(name)),
            "breaches_today": breaches.get(name, {}).get("breach", 0),
        }
        for name in names
    ]


def build_wall(
    conn: Connection,
    config: WallConfig,
    now: datetime,
    fleet: FleetFigures,
    *,
    oldest_unanswered: Mapping[str, float] | None = None,
    served_by: str = "wall",
    live: WallLive | None = None,
) -> dict[str, Any]:
    """The wall document for ``now`` (aware).

    ``live``: contacts waiting now and the oldest wait per channel, fleet-wide
    (Prometheus) or the serving worker's own (:func:`pipeline.wall_prometheus.wall_live`).
    Without it, ``oldest_unanswered`` (the serving worker's, None on the standalone
    wall) as before.
    """
    if live is None:
        live = WallLive(
            None if oldest_unanswered is None else "worker",
            None if oldest_unanswered is None else {},
            None if oldest_unanswered is None else dict(oldest_unanswered),
        )
    oldest_unanswered = live.oldest_seconds
    waiting_now = live.waiting
    w = wall_windows(now, config.timezone, config.shifts, config.trend_hours)
    targets = config.targets
    recent = answer_figures(conn, w.recent, w.now, targets)
    today = answer_figures(conn, w.today, w.now, targets)
    shift_sla = sla_counts(conn, w.shift, w.now)
    today_sla = sla_counts(conn, w.today, w.now)
    switches = switch_failures(conn, w.last_hour, w.now)
    bounced = bounces(conn, w.last_hour, w.now)
    trend = hourly_trend(conn, w.trend, config.trend_hours)
    groups = [g for g in group_columns(conn) if g != "channel"]
    by_group = {
        group: _group_rows(conn, w.recent, w.today, w.now, targets, group) for group in groups
    }

    known = [c.key for c in config.channels]
    seen = set(recent) | set(today) | set(today_sla) | set(switches) | set(trend)
    channels = list(config.channels) + [WallChannel(k, k, None) for k in sorted(seen - set(known))]
    zero = {"warning": 0, "breach": 0}
    cards = []
    for channel in channels:
        points = trend.get(channel.key, [])
        cards.append(
            {
                "channel": channel.key,
                "display_name": channel.display_name,
                "target_seconds": channel.target_seconds,
                "recent": _answers(recent.get(channel.key)),
                "today": _answers(today.get(channel.key)),
                "warnings_shift": shift_sla.get(channel.key, zero)["warning"],
                "breaches_shift": shift_sla.get(channel.key, zero)["breach"],
                "warnings_today": today_sla.get(channel.key, zero)["warning"],
                "breaches_today": today_sla.get(channel.key, zero)["breach"],
                "switch_failures_last_hour": switches.get(channel.key, 0),
                # None: the store has no bounce table yet (the page leaves the row out).
                "bounces_last_hour": None if bounced is None else bounced.get(channel.key, 0),
                "trend_contacts": [p.contacts_started for p in points] or [0] * config.trend_hours,
                "trend_breaches": [p.sla_breaches for p in points] or [0] * config.trend_hours,
                "oldest_unanswered_seconds": None
                if oldest_unanswered is None
                else oldest_unanswered.get(channel.key, 0.0),
                "waiting_now": None if waiting_now is None else waiting_now.get(channel.key, 0.0),
            }
        )
    return {
        "generated_at": w.now.timestamp(),
        "lang": config.lang,
        "served_by": served_by,
        # Whose waiting-now and oldest wait: "fleet", "worker" or None (not shown).
        "live_scope": live.scope,
        "live_note": live.note,
        "timezone": config.timezone,
        "windows": {
            "recent_start": w.recent.timestamp(),
            "today_start": w.today.timestamp(),
            "shift_start": w.shift.timestamp(),
            "trend_start": w.trend.timestamp(),
        },
        "health": {
            "consumer_lag": fleet.consumer_lag,
            "workers": fleet.workers,
            "dead_letters_per_minute": fleet.dead_letters_per_minute,
        },
        "dead_letter_top_reason": fleet.top_reason,
        "groups": by_group,
        "channels": cards,
    }


def read_wall(
    engine: Engine,
    config: WallConfig,
    kafka: KafkaSettings | None,
    *,
    oldest_unanswered: Mapping[str, float] | None = None,
    waiting_now: Mapping[str, float] | None = None,
    served_by: str = "wall",
    prometheus_url: str | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """One wall document now (``now``: the wall clock, else the given aware time, as
    tests pin it): one read transaction for every SQL figure, so the figures are one
    consistent reading; Kafka figures unknown without ``kafka``; waiting-now and
    oldest wait fleet-wide from ``prometheus_url`` when it answers."""
    fleet = fleet_figures(kafka) if kafka is not None else FleetFigures(None, None)
    live = wall_live(
        prometheus_url,
        None if oldest_unanswered is None else dict(oldest_unanswered),
        None if waiting_now is None else dict(waiting_now),
    )
    with engine.connect() as conn, conn.begin():
        return build_wall(
            conn,
            config,
            now if now is not None else datetime.now(UTC),
            fleet,
            served_by=served_by,
            live=live,
        )
