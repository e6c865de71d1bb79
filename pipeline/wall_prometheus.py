"""The wall's live figures summed over the fleet, read from Prometheus.

Every worker exports, over the partitions it holds, the contacts waiting for a
reply now (``cxstream_waiting_contacts``) and the age of the oldest wait
(``cxstream_oldest_unanswered_seconds``). Only Prometheus, scraping every worker,
sees them all: the wall asks its HTTP API (``/api/v1/query``, an instant query)
for the sum and the maximum per channel. Stdlib only, with a short timeout, so a
Prometheus that does not answer costs the wall at most that and never breaks it
(:func:`fleet_live_figures` raises :class:`PrometheusUnavailable`; the caller
falls back to the serving worker's own figures).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

WAITING_QUERY = "sum by (channel) (cxstream_waiting_contacts)"
OLDEST_QUERY = "max by (channel) (cxstream_oldest_unanswered_seconds)"
TIMEOUT_SECONDS = 2.0


class PrometheusUnavailable(Exception):
    """Prometheus did not answer, or answered something that is not a vector."""


@dataclass(frozen=True, slots=True)
class LiveFigures:
    """Per channel: contacts waiting now, and the age (s) of the oldest wait."""

    waiting: dict[str, float]
    oldest_seconds: dict[str, float]


def query_by_channel(
    base_url: str, query: str, *, timeout: float = TIMEOUT_SECONDS
) -> dict[str, float]:
    """channel -> value of an instant ``query`` whose result is a vector by channel."""
    url = base_url.rstrip("/") + "/api/v1/query?" + urllib.parse.urlencode({"query": query})
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            body: Any = json.load(response)
    except (OSError, ValueError) as exc:  # URLError and timeouts are OSErrors
        raise PrometheusUnavailable(f"{base_url}: {exc}") from exc
    if not isinstance(body, dict) or body.get("status") != "success":
        raise PrometheusUnavailable(f"{base_url}: query {query!r} failed: {body!r:.200}")
    data = body.get("data") or {}
    if data.get("resultType") != "vector":
        raise PrometheusUnavailable(f"{base_url}: query {query!r} gave no vector")
    values: dict[str, float] = {}
    for item in data.get("result") or []:
        try:
            channel = str(item["metric"].get("channel", ""))
            values[channel] = float(item["value"][1])
        except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
            raise PrometheusUnavailable(f"{base_url}: malformed sample {item!r:.200}") from exc
    return values


def fleet_live_figures(base_url: str, *, timeout: float = TIMEOUT_SECONDS) -> LiveFigures:
    """Waiting now (sum over workers) and oldest wait (max over workers) per channel."""
    return LiveFigures(
        waiting=query_by_channel(base_url, WAITING_QUERY, timeout=timeout),
        oldest_seconds=query_by_channel(base_url, OLDEST_QUERY, timeout=timeout),
    )


@dataclass(frozen=True, slots=True)
class WallLive:
    """What the wall shows live, and whose figures they are.

    ``scope``: ``fleet`` (from Prometheus), ``worker`` (the serving worker's own
    partitions) or None (neither: the standalone wall without Prometheus).
    ``note``: why the fleet figures are missing although a Prometheus is set.
    """

    scope: str | None
    waiting: dict[str, float] | None
    oldest_seconds: dict[str, float] | None
    note: str | None = None


def wall_live(
    prometheus_url: str | None,
    own_oldest: dict[str, float] | None,
    own_waiting: dict[str, float] | None,
    *,
    timeout: float = TIMEOUT_SECONDS,
) -> WallLive:
    """Fleet figures from Prometheus when one is set and answers, else the worker's own."""
    note = None
    if prometheus_url:
        try:
            fleet = fleet_live_figures(prometheus_url, timeout=timeout)
        except PrometheusUnavailable as exc:
            note = f"prometheus_unavailable: {exc}"
        else:
            return WallLive("fleet", fleet.waiting, fleet.oldest_seconds)
    if own_oldest is None:
        return WallLive(None, None, None, note)
    return WallLive("worker", own_waiting or {}, own_oldest, note)
