"""The stream loop's settings: one frozen object, built once and passed in."""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Literal

from pipeline.settings import Settings
from pipeline.topics import IDENTITY, INTERACTIONS, REKEYED

#: ``at_least_once``: outputs acknowledged -> state -> offsets committed, each
#: awaited before the next. ``exactly_once``: the same three in one transaction.
Guarantee = Literal["at_least_once", "exactly_once"]

AT_LEAST_ONCE: Guarantee = "at_least_once"
EXACTLY_ONCE: Guarantee = "exactly_once"


@dataclass(frozen=True, slots=True)
class LoopConfig:
    """What the loop needs beyond the pipeline's :class:`~pipeline.settings.Settings`."""

    input_topic: str
    group_id: str
    #: Compacted topic holding the customers' states and each partition's
    #: position, one changelog partition per input partition.
    changelog_topic: str
    guarantee: Guarantee = AT_LEAST_ONCE
    #: Names this worker's transactional producer; a restarted worker with the
    #: same id fences its predecessor and aborts its open transaction.
    transactional_id: str | None = None
    #: Records per batch at most (``worker.batch_size``): one batch, one commit.
    max_batch: int = 5000
    #: How long ``getmany`` waits for records when there are none.
    poll_timeout_s: float = 0.1
    #: How long a batch may be topped up with records already fetched.
    fill_s: float = 0.05
    #: Identity continuity (issue 16): the topics the loop also consumes, in the
    #: same group, and the identity processors' changelog. None: the input only.
    identity_topic: str | None = None
    rekeyed_topic: str | None = None
    identity_changelog_topic: str | None = None

    def __post_init__(self) -> None:
        if self.guarantee == EXACTLY_ONCE and not self.transactional_id:
            raise ValueError("exactly_once needs a transactional_id")


def loop_config(settings: Settings) -> LoopConfig:
    """The worker's loop configuration, from the one settings object."""
    from pipeline.runtime.changelog import (
        identity_changelog_topic,
        process_group,
        state_changelog_topic,
    )

    kafka = settings.kafka
    worker = settings.worker
    group = process_group(kafka)
    guarantee: Guarantee = EXACTLY_ONCE if worker.guarantee == EXACTLY_ONCE else AT_LEAST_ONCE
    return LoopConfig(
        input_topic=kafka.topic(INTERACTIONS),
        group_id=group,
        changelog_topic=state_changelog_topic(kafka),
        guarantee=guarantee,
        transactional_id=worker.transactional_id
        or f"{group}-{socket.gethostname()}-{worker.web_port}",
        max_batch=worker.batch_size,
        identity_topic=kafka.topic(IDENTITY),
        rekeyed_topic=kafka.topic(REKEYED),
        identity_changelog_topic=identity_changelog_topic(kafka),
    )
