"""A shorter fetch long-poll for Faust's consumer: resumed partitions are read at once.

Why this exists: faust-streaming 0.15 builds its aiokafka consumer with
``fetch_max_wait_ms=1500`` written into the code
(``faust/transport/drivers/aiokafka.py``, ``_create_worker_consumer``; no
setting reaches it). The broker holds a fetch with nothing new for up to that
long, and aiokafka sends no other fetch to that broker while one is in flight
(``aiokafka/consumer/fetcher.py``, ``_get_actions_per_node``: a node in
``_in_flight`` is skipped). A partition that is resumed, seeked or newly
assigned therefore waits for the pending long-poll to come back first. A
takeover does that twice: the changelog partitions are resumed for table
recovery, then the input partitions after it. Measured in
``tests/integration/test_failover.py``: up to 1.5 s before the changelog was
read and up to 1.5 s more before the first input batch (the "unexplained 3 s"
of a takeover). The same pause/seek/resume penalty is known from other
clients (confluentinc/confluent-kafka-javascript#285, fixed by a shorter
wait).

:class:`ShortFetchWaitConsumerThread` builds the aiokafka consumer with
:data:`FETCH_MAX_WAIT_MS` instead (installed by ``agents/faust_consumer.py``). The cost is only
when a worker is idle: one empty fetch per broker every 100 ms instead of every
1.5 s; while records flow a fetch returns as soon as it has data either way.
Touches Faust's protected consumer-thread factory and aiokafka's
``_fetch_max_wait_ms`` (read by ``AIOKafkaConsumer.start``); pinned to
faust-streaming 0.15.3 and aiokafka 0.14, tested in ``tests/unit/test_fetch_wait.py``.
"""

from __future__ import annotations

from typing import Any

from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

#: The broker answers an empty fetch after at most this long (aiokafka's own
#: default is 500 ms, Faust's 1500 ms).
FETCH_MAX_WAIT_MS = 100


class ShortFetchWaitConsumerThread(AIOKafkaConsumerThread):
    """Faust's consumer thread, its aiokafka consumer built with the shorter wait."""

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        # Read once, by start(), to build the fetcher: set before the start.
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS
        return consumer
