"""Deterministic omnichannel traffic for the demo, the tests and the benchmarks.

:func:`generate` turns a :class:`SimulatorConfig` into :class:`SimItem` objects in
*delivery order*: the order a producer would send them. The traffic is built in
two stages, each with its own seeded random stream, so that changing a delivery
share does not change the journeys themselves:

1. **Journeys.** New customer journeys arrive as a Poisson process in simulated
   time whose intensity follows the bank's week (busy 08-18 Helsinki time on
   weekdays, quieter evenings and weekends, almost silent nights). Each journey
   is a script (a bot chat, a chat escalated to a human, a failed bot chat followed
   by a phone call, a web message answered next morning, ...) that lays out the
   events of one or more contacts. Events are merged across journeys in event-time
   order through a heap.
2. **Delivery.** The event-time stream is perturbed the way real producers do it:
   a few events arrive after later ones (within the grace period), a few arrive
   very late (beyond session gap + grace), some are sent twice with the same
   ``event_id``, and some items are broken (bad JSON or undecodable bytes).

Nothing here reads the wall clock, global random state or set order: the same
config always yields the same sequence.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pipeline.contract.event import InteractionEvent
from pipeline.errors import ConfigError
from pipeline.tools.sim_delivery import (
    DUPLICATE,
    IN_ORDER,
    LATE,
    LATE_MIN_LAG_MS,
    MALFORMED,
    OUT_OF_ORDER,
    OUT_OF_ORDER_MAX_LAG_MS,
    Delivery,
    SimItem,
    events_only,
)

# Stage 2 (delivery order, broken records) lives in its own module; its names are
# part of this module's interface too.
from pipeline.tools.sim_identity import anonymise

# Stage 1's journey scripts and the bank's week they follow.
from pipeline.tools.sim_journeys import (
    BRANCH,
    HOUR_MS,
    SCRIPTS,
    SECOND_MS,
    Journey,
    period_intensity,
    period_of,
)

# Monday 2026-03-02 08:00 Helsinki: a fixed start so a seed alone fixes the traffic.
DEFAULT_START_MS = int(datetime(2026, 3, 2, 6, 0, tzinfo=UTC).timestamp() * SECOND_MS)

__all__ = [
    "BANK_EVENTS_PER_JOURNEY",
    "BANK_PROFILE",
    "DUPLICATE",
    "IN_ORDER",
    "LATE",
    "LATE_MIN_LAG_MS",
    "MALFORMED",
    "OUT_OF_ORDER",
    "OUT_OF_ORDER_MAX_LAG_MS",
    "SimItem",
    "SimulatorConfig",
    "bank_profile",
    "events_only",
    "generate",
]

TOPICS = ("payments", "cards", "account", "loan", "mortgage", "investments", "insurance")
_TOPIC_WEIGHTS = (0.22, 0.2, 0.16, 0.12, 0.1, 0.1, 0.1)

DEFAULT_JOURNEY_WEIGHTS: Mapping[str, float] = {
    "chat_bot_resolved": 0.24,
    "chat_escalated": 0.13,
    "chat_switch": 0.10,
    "web_message": 0.18,
    "phone_call": 0.18,
    "web_meeting": 0.05,
    "branch_visit": 0.04,
    "false_resolution": 0.08,
    # Off by default, so the traffic of existing seeds and weights is unchanged (a
    # zero weight at the end never changes what rng.choices picks): a need bounced
    # over days, for tests of needs (issue 15).
    "bounced_over_days": 0.0,
}

# How much more or less likely a journey is in a period of the week than its base
# weight says (sim_journeys.period_of): nobody books a web meeting at 3 a.m., web
# messages pile up in the evening (and are answered next morning).
_AFFINITY: Mapping[str, Mapping[str, float]] = {
    "chat_bot_resolved": {"office": 1.0, "evening": 1.3, "weekend": 1.3, "night": 1.5},
    "chat_escalated": {"office": 1.0, "evening": 0.6, "weekend": 0.4, "night": 0.0},
    "chat_switch": {"office": 1.0, "evening": 1.2, "weekend": 1.2, "night": 1.2},
    "web_message": {"office": 1.0, "evening": 3.0, "weekend": 3.0, "night": 3.0},
    "phone_call": {"office": 1.0, "evening": 0.4, "weekend": 0.2, "night": 0.0},
    "web_meeting": {"office": 1.0, "evening": 0.0, "weekend": 0.0, "night": 0.0},
    "branch_visit": {"office": 1.0, "evening": 0.0, "weekend": 0.0, "night": 0.0},
    "false_resolution": {"office": 1.0, "evening": 1.0, "weekend": 1.0, "night": 1.0},
    "bounced_over_days": {"office": 1.0, "evening": 1.0, "weekend": 1.0, "night": 1.0},
}


@dataclass(frozen=True)
class SimulatorConfig:
    """What to simulate. Shares are per generated event; ``count`` counts every item."""

    customers: int = 1000
    count: int | None = 10_000
    seed: int = 1
    start_ms: int = DEFAULT_START_MS
    # New journeys per hour at the weekday office-hours peak; quieter periods scale down.
    arrival_rate_per_hour: float = 3000.0
    out_of_order_share: float = 0.02
    late_share: float = 0.005
    duplicate_share: float = 0.01
    malformed_share: float = 0.01
    journey_weights: Mapping[str, float] = field(
        default_factory=lambda: dict(DEFAULT_JOURNEY_WEIGHTS)
    )
    producer: str = "simulator"
    # Journeys on a Monday (Helsinki) are this many times as frequent as on other
    # weekdays: the weekend's backlog arrives. 1.0 = no Monday peak.
    monday_peak: float = 1.0
    # A falsely resolved contact's customer comes back this many hours later
    # (uniform between the two).
    false_resolution_return_hours: tuple[float, float] = (6.0, 120.0)
    # Share of channel switches made within 20 minutes of the failed contact (the
    # rest within 2 h, or 2-8 h); a quick switch stays in the same journey.
    quick_switch_share: float = 0.5
    # Issue 16: share of journeys starting with a call or chat whose first contact
    # is anonymous until identified (pipeline/tools/sim_identity.py). Off by
    # default, so the traffic of a seed stays what it was before issue 16.
    identity_share: float = 0.0

    def __post_init__(self) -> None:
        if self.customers < 1:
            raise ConfigError("customers must be at least 1")
        if self.count is not None and self.count < 0:
            raise ConfigError("count must be >= 0 or None")
        if self.arrival_rate_per_hour <= 0:
            raise ConfigError("arrival_rate_per_hour must be positive")
        if self.monday_peak <= 0:
            raise ConfigError("monday_peak must be positive")
        for name in (
            "out_of_order_share",
            "late_share",
            "duplicate_share",
            "malformed_share",
            "identity_share",
        ):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ConfigError(f"{name} must be in [0, 1)")
        unknown = sorted(set(self.journey_weights) - set(DEFAULT_JOURNEY_WEIGHTS))
        if unknown:
            raise ConfigError(f"unknown journey scripts {unknown}; known: {list(SCRIPTS)}")


# The bank profile: what `cxstream simulate` and `cxstream demo` generate unless
# told otherwise (docs/ops.md, "Simulator profile"). SimulatorConfig's own
# defaults stay the small, busy population the tests and goldens were built on
# (many repeats, many switches): good for exercising the core, not a bank.
# Measured over 60,000 events, 11 days (tests/unit/test_simulator_profile.py):
# 1.21 contacts per journey, FCR by need 70-71%, false resolutions 3.5% of
# resolved contacts, 96% of contacts digital (branch the rest), a quarter phone.
BANK_PROFILE: Mapping[str, Any] = {
    # About 5 journeys per customer per year at ~700 journeys a day.
    "customers": 50_000,
    "arrival_rate_per_hour": 60.0,
    "monday_peak": 1.3,
    "false_resolution_return_hours": (2.0, 48.0),
    # A customer the chatbot fails calls within minutes, in the same journey.
    "quick_switch_share": 0.9,
    "journey_weights": {
        "chat_bot_resolved": 0.32,
        "chat_escalated": 0.14,
        "chat_switch": 0.25,
        "web_message": 0.10,
        "phone_call": 0.12,
        "web_meeting": 0.035,
        "branch_visit": 0.005,
        "false_resolution": 0.03,
    },
}


# Events a journey of the bank profile produces on average (more contacts and
# feedback than SimulatorConfig's 6.1); turns an events/s pace into a journey
# arrival rate. A test measures it.
BANK_EVENTS_PER_JOURNEY = 7.9


def bank_profile(**fields: Any) -> SimulatorConfig:
    """A :class:`SimulatorConfig` of :data:`BANK_PROFILE`, ``fields`` overriding it."""
    return SimulatorConfig(**{**BANK_PROFILE, **fields})


def generate(config: SimulatorConfig) -> Iterator[SimItem]:
    """Yield ``config.count`` items (forever if None) in delivery order, deterministically."""
    events = _Traffic(config).events()
    items = Delivery(config).deliver(events)
    if config.count is None:
        yield from items
        return
    for produced, item in enumerate(items):
        if produced >= config.count:
            return
        yield item


class _Traffic:
    """The event-time stream: journeys arriving over simulated time, merged by time."""

    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        self.rng = random.Random(f"cxstream-journeys-{config.seed}")
        self.busy_until: dict[str, int] = {}
        self.contacts = 0
        self.events_made = 0
        self.journeys = 0  # journeys made (a measure; no effect on the traffic)
        self.script_names = [name for name in SCRIPTS if name in config.journey_weights]
        # Its own stream, so traffic without identity is what it always was.
        self.identity_rng = random.Random(f"cxstream-identity-{config.seed}")

    def next_contact_id(self) -> str:
        self.contacts += 1
        return f"k-{self.config.seed}-{self.contacts:08d}"

    def events(self) -> Iterator[InteractionEvent]:
        """Events of all journeys in event-time order (ties in creation order)."""
        heap: list[tuple[int, int, InteractionEvent]] = []
        pushed = 0
        arrival = self._next_arrival(self.config.start_ms)
        while True:
            while heap and heap[0][0] <= arrival:
                yield heapq.heappop(heap)[2]
            for event in self._journey(arrival):
                pushed += 1
                heapq.heappush(heap, (event.occurred_at, pushed, event))
            arrival = self._next_arrival(arrival)

    def _next_arrival(self, after_ms: int) -> int:
        # Thinning: draw at the peak rate, keep a draw with the period's intensity
        # relative to that peak. With monday_peak 1.0 the arithmetic (x * 1.0,
        # x / 1.0) is exact, so explicit configs give the same traffic as before.
        monday_peak = self.config.monday_peak
        peak = max(1.0, monday_peak)
        mean_gap_ms = HOUR_MS / (self.config.arrival_rate_per_hour * peak)
        at = after_ms
        while True:
            at += max(1, int(self.rng.expovariate(1.0) * mean_gap_ms))
            if self.rng.random() < period_intensity(at, monday_peak) / peak:
                return at

    def _journey(self, at: int) -> list[InteractionEvent]:
        script = self._pick_script(at)
        if script is None:
            return []
        customer_id = self._pick_customer(at)
        topic = self.rng.choices(TOPICS, _TOPIC_WEIGHTS)[0]
        journey = Journey(self, customer_id, topic)
        SCRIPTS[script](journey, at)
        made = []
        for occurred_at, draft in journey.drafts:
            self.events_made += 1
            event_id = f"e-{self.config.seed}-{self.events_made:08d}"
            made.append(
                InteractionEvent(
                    event_id=event_id,
                    occurred_at=occurred_at,
                    producer=f"{self.config.producer}-{draft['channel']}",
                    **draft,
                )
            )
        self.busy_until[customer_id] = max(e.occurred_at for e in made)
        share = self.config.identity_share
        if share > 0 and self.identity_rng.random() < share:
            other = f"c-{self.identity_rng.randint(1, self.config.customers):06d}"
            made = anonymise(made, self.identity_rng, other)
        self.journeys += 1
        return made

    def _pick_script(self, at: int) -> str | None:
        period = period_of(at)
        weights = []
        for name in self.script_names:
            weight = self.config.journey_weights[name] * _AFFINITY[name][period]
            if name == "branch_visit" and not BRANCH.is_open(at):
                weight = 0.0
            weights.append(weight)
        if sum(weights) <= 0:
            return None
        return self.rng.choices(self.script_names, weights)[0]

    def _pick_customer(self, at: int) -> str:
        # Prefer a customer with no journey in progress, so journeys of one
        # customer follow each other; with a small population overlap is accepted.
        customer_id = ""
        for _ in range(8):
            customer_id = f"c-{self.rng.randint(1, self.config.customers):06d}"
            if self.busy_until.get(customer_id, 0) < at:
                break
        return customer_id
