"""Alertmanager routing written from the channel registry.

A channel is configuration (``channels:`` in the config file), so the routing of
its alerts is too: every channel's alerts (label ``channel``) go to its
``alert_receiver`` (default ``cx-<key>``), platform alerts (``scope="platform"``)
to the platform team, anything else (a channel the registry does not know) to the
platform team as well. ``deploy/alertmanager/alertmanager.yml`` is this module's
output for the defaults; a unit test keeps the two equal.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

from pipeline.errors import ConfigError
from pipeline.settings import Settings

PLATFORM_RECEIVER = "platform"
#: The compose stack's webhook catcher; production points it at the real bridges.
DEFAULT_WEBHOOK_BASE = "http://alert-webhook:8080"

HEADER = """\
# Alertmanager routing for cxstream. GENERATED from the channel registry by
#   cxstream ops alertmanager-config --output deploy/alertmanager/alertmanager.yml
# (add --config for your channels); do not edit by hand: a test compares this file
# with the generated one. A channel's alerts (label `channel`) go to its
# `alert_receiver` (default cx-<key>); platform alerts (scope="platform") and a
# channel the registry does not know go to the platform team. Receivers are
# webhooks; the URLs are placeholders for the compose stack -- point them at the
# real chat/paging bridges in production (--webhook-base).
"""

# Inhibitions do not depend on the channels.
INHIBIT_RULES: list[dict[str, Any]] = [
    # A down worker makes every other cxstream metric incomplete (its partitions'
    # gauges vanish, counters restart on rebalance), so its alert mutes the rest.
    {
        "source_matchers": ['alertname="WorkerDown"'],
        "target_matchers": ['alertname!="WorkerDown"'],
    },
    # A page already says it; drop the ticket for the same channel.
    {
        "source_matchers": ['alertname="SLABreachRateHigh"'],
        "target_matchers": ['alertname="SLAWarningsPilingUp"'],
        "equal": ["channel"],
    },
]


def channel_receivers(settings: Settings) -> dict[str, list[str]]:
    """Receiver -> its channel keys, in the registry's order."""
    receivers: dict[str, list[str]] = {}
    for channel in settings.channels.channels.values():
        receivers.setdefault(channel.receiver, []).append(channel.key)
    return receivers


def _channel_matcher(keys: list[str]) -> str:
    # Channel keys are lower_snake_case (the registry checks), so they need no escaping.
    if len(keys) == 1:
        return f'channel="{keys[0]}"'
    return f'channel=~"{"|".join(keys)}"'


def alertmanager_config(
    settings: Settings, *, webhook_base: str = DEFAULT_WEBHOOK_BASE
) -> dict[str, Any]:
    """The Alertmanager configuration for ``settings``' channels."""
    teams = channel_receivers(settings)
    if PLATFORM_RECEIVER in teams:
        # Its alerts would mix with the platform's, whose route groups differently.
        raise ValueError(
            f"channels {teams[PLATFORM_RECEIVER]}: alert_receiver {PLATFORM_RECEIVER!r} "
            "is reserved for platform alerts"
        )
    routes: list[dict[str, Any]] = [
        {
            "receiver": PLATFORM_RECEIVER,
            "matchers": ['scope="platform"'],
            "group_by": ["alertname", "topic", "instance"],
        }
    ]
    routes += [
        {"receiver": receiver, "matchers": [_channel_matcher(keys)]}
        for receiver, keys in teams.items()
    ]
    base = webhook_base.rstrip("/")
    return {
        "global": {"resolve_timeout": "5m"},
        "route": {
            "receiver": PLATFORM_RECEIVER,
            "group_by": ["alertname", "channel"],
            "group_wait": "30s",
            "group_interval": "5m",
            "repeat_interval": "4h",
            "routes": routes,
        },
        "inhibit_rules": INHIBIT_RULES,
        "receivers": [
            {
                "name": name,
                "webhook_configs": [{"url": f"{base}/{name}", "send_resolved": True}],
            }
            for name in [PLATFORM_RECEIVER, *teams]
        ],
    }


def render_alertmanager_config(
    settings: Settings, *, webhook_base: str = DEFAULT_WEBHOOK_BASE
) -> str:
    """The configuration file's text: the header, then the YAML."""
    body = yaml.safe_dump(
        alertmanager_config(settings, webhook_base=webhook_base),
        sort_keys=False,
        default_flow_style=False,
        width=100,
    )
    return HEADER + body


def ops_command(what: str, settings: Settings, output: Path | None, webhook_base: str) -> int:
    """``cxstream ops <what>``: print the file, or write it to ``output``."""
    if what != "alertmanager-config":
        raise ValueError(f"unknown ops command {what!r}")
    try:
        text = render_alertmanager_config(settings, webhook_base=webhook_base)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text, encoding="utf-8")
        print(f"ops alertmanager-config written={output}")
    return 0
