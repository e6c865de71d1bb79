"""Codec throughput on one core: ``cxstream bench codec``."""

from __future__ import annotations

import random
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from pipeline.contract.codec import EventCodec, RecordCodec
from pipeline.contract.event import (
    AGENT,
    AGENT_REPLY,
    BOT,
    CONTACT_ENDED,
    CONTACT_STARTED,
    CUSTOMER,
    CUSTOMER_MESSAGE,
    FEEDBACK,
    OUTCOMES,
    InteractionEvent,
)

CHANNELS = ("branch", "phone", "chat", "web_meeting", "web_message")
TOPICS = ("card_lost", "loan_application", "online_bank_login", "payment_dispute", None)
START_MS = 1_772_438_400_000  # 2026-03-02T08:00:00Z


def sample_events(count: int, seed: int = 7) -> list[InteractionEvent]:
    """``count`` realistic events: contacts of 6 events each, across the channels."""
    rng = random.Random(seed)
    events: list[InteractionEvent] = []
    contact = 0
    while len(events) < count:
        contact += 1
        customer = f"cust-{rng.randrange(200_000):06d}"
        channel = rng.choice(CHANNELS)
        topic = rng.choice(TOPICS)
        contact_id = f"{channel}-{contact:08d}"
        at = START_MS + contact * 1_000
        replier = BOT if channel == "chat" else AGENT
        steps: list[tuple[str, str, dict[str, Any]]] = [
            (CONTACT_STARTED, CUSTOMER, {}),
            (CUSTOMER_MESSAGE, CUSTOMER, {}),
            (AGENT_REPLY, replier, {"agent_id": f"agent-{rng.randrange(500):03d}"}),
            (CUSTOMER_MESSAGE, CUSTOMER, {}),
            (CONTACT_ENDED, replier, {"outcome": rng.choice(OUTCOMES)}),
            (FEEDBACK, CUSTOMER, {"score": rng.randrange(11)}),
        ]
        for step, (kind, actor, extra) in enumerate(steps):
            events.append(
                InteractionEvent(
                    event_id=f"{contact_id}-{step}-{rng.getrandbits(64):016x}",
                    occurred_at=at + step * rng.randrange(1_000, 120_000),
                    customer_id=customer,
                    channel=channel,
                    contact_id=contact_id,
                    type=kind,
                    actor=actor,
                    topic=topic,
                    attributes={"queue": f"{channel}-{topic or 'general'}"},
                    producer=f"{channel}-gateway/1.4",
                    **extra,
                )
            )
    return events[:count]


def _rates(count: int, work: Callable[[], object]) -> tuple[float, float]:
    """Events per wall-clock second and per CPU second of this process.

    The CPU-time rate is what one core sustains even when other processes share
    the machine; the wall-clock rate is what was observed.
    """
    wall, cpu = time.perf_counter(), time.process_time()
    work()
    return count / (time.perf_counter() - wall), count / (time.process_time() - cpu)


def sample_contact_dicts(count: int) -> list[dict[str, Any]]:
    """``count`` contact summaries as the worker encodes them (``to_dict()``), repeated as needed.

    The stream core's summaries of a replay of :func:`sample_events` (imported
    here: the codec does not depend on the core or the replay otherwise).
    """
    from pipeline.replay import replay_events
    from pipeline.settings_loader import build_settings

    result = replay_events(sample_events(max(count // 2, 600)), build_settings({}), 1, workers=1)
    summaries = [r.to_dict() for r in result.records if r.OUTPUT_NAME == "contact"]
    if not summaries:
        raise RuntimeError("the sample replay gave no contact summaries")
    return [summaries[i % len(summaries)] for i in range(count)]


def bench_codec(events: int = 50_000, *, quiet: bool = False) -> dict[str, float]:
    """Encode and decode ``events`` realistic events; returns events/s for each.

    Also encodes ``events`` contact summary dicts (the output record the worker
    writes most, ``RecordCodec("contact").encode(summary.to_dict())``).
    Runs in this process (one core). A warm-up pass over a tenth of the events
    runs first so the figures exclude first-call costs.
    """
    codec = EventCodec()
    sample = sample_events(events)
    warm = sample[: max(1, events // 10)]
    for event in warm:
        codec.decode(codec.encode(event))
    encoded: list[bytes] = []
    encode_rate, encode_cpu = _rates(events, lambda: encoded.extend(map(codec.encode, sample)))
    # Decoded events are dropped as a worker drops them after processing: keeping
    # 50k of them alive would mostly measure the garbage collector.
    decode_rate, decode_cpu = _rates(events, lambda: deque(map(codec.decode, encoded), maxlen=0))
    contacts = sample_contact_dicts(events)
    contact_codec = RecordCodec("contact")
    deque(map(contact_codec.encode, contacts[: max(1, events // 10)]), maxlen=0)
    _, contact_cpu = _rates(events, lambda: deque(map(contact_codec.encode, contacts), maxlen=0))
    result = {
        "events": float(events),
        "encode_events_per_s": round(encode_rate),
        "decode_events_per_s": round(decode_rate),
        "encode_events_per_cpu_s": round(encode_cpu),
        "decode_events_per_cpu_s": round(decode_cpu),
        "contact_encode_per_cpu_s": round(contact_cpu),
    }
    if not quiet:
        print(
            f"codec encode_events_per_s={result['encode_events_per_s']:.0f} "
            f"decode_events_per_s={result['decode_events_per_s']:.0f} "
            f"(per cpu second: encode={result['encode_events_per_cpu_s']:.0f} "
            f"decode={result['decode_events_per_cpu_s']:.0f}; "
            f"contact summary encode={result['contact_encode_per_cpu_s']:.0f})"
        )
    return result
