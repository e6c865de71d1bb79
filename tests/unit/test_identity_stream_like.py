"""A stream-like run of identity traffic (batches, open updates, state written per
batch, restarts from the written state) counts what the replay counts (issue 16).

What the worker will do once its identity wiring lands, without Kafka: the
identity stage per identity partition, the customers' processors per input
partition, every state (identifiers and customers) written at the end of each
batch and read back at two restarts, as after a SIGKILL."""

from __future__ import annotations

import json

from pipeline.core.identity import IdentityRules
from pipeline.core.identity_stage import CustomerEvent, IdentityStage
from pipeline.core.partitioning import partition_for
from pipeline.core.processor import PartitionProcessor
from pipeline.replay import collapse, replay_events, standing
from pipeline.settings_loader import build_settings
from pipeline.tools.simulator import SimulatorConfig, generate

SETTINGS = build_settings()
PARTITIONS = 3


def _events() -> list:
    config = SimulatorConfig(count=3000, seed=9, identity_share=0.5, malformed_share=0.0)
    return [item.event for item in generate(config) if item.event is not None]


def _stream_like(events: list, *, batch: int = 250) -> list:
    rules = IdentityRules.from_settings(SETTINGS.identity)
    restart_at = {len(events) // 3, 2 * len(events) // 3}
    customer_table: dict[str, bytes] = {}
    identity_table: dict[int, dict[str, str]] = {}
    clocks: dict[int, int] = {}
    identity_clocks: dict[int, int] = {}
    processors: dict[int, PartitionProcessor] = {}
    stage = IdentityStage(rules, PARTITIONS)
    records: list = []

    def processor(partition: int) -> PartitionProcessor:
        if partition not in processors:
            processors[partition] = PartitionProcessor.from_settings(SETTINGS, partition)
        return processors[partition]

    def deliver(routed_items) -> None:
        for routed in routed_items:
            target = processor(partition_for(routed.customer_key, PARTITIONS))
            if isinstance(routed, CustomerEvent):
                apply = target.process_released if routed.released else target.process
                records.extend(apply(routed.event))
            else:
                records.extend(target.unattribute(routed.customer_key, routed.event_ids))

    def commit() -> None:
        for partition in sorted(processors):
            records.extend(processors[partition].flush_updates())
            for customer_id, data in processors[partition].take_dirty().items():
                if data is None:
                    customer_table.pop(customer_id, None)
                else:
                    customer_table[customer_id] = data
            clock = processors[partition].clock_ms
            if clock is not None:
                clocks[partition] = clock
        for partition in range(PARTITIONS):
            table = identity_table.setdefault(partition, {})
            for key, state in stage.take_dirty(partition).items():
                if state is None:
                    table.pop(key, None)
                else:
                    table[key] = json.dumps(state)  # as the changelog stores it
            clock = stage.clock_ms(partition)
            if clock is not None:
                identity_clocks[partition] = clock

    for index, event in enumerate(events):
        if index in restart_at:
            commit()
            processors.clear()
            for partition, clock in clocks.items():
                processor(partition).load_clock(clock)
            for customer_id, data in customer_table.items():
                processor(partition_for(customer_id, PARTITIONS)).load_state(customer_id, data)
            stage = IdentityStage(rules, PARTITIONS)
            for partition, clock in identity_clocks.items():
                stage.load_clock(partition, clock)
            for partition, table in identity_table.items():
                for key, state in table.items():
                    stage.load_state(partition, key, json.loads(state))
        deliver(stage.process(event))
        if index % batch == batch - 1:
            commit()
    input_end = max(e.occurred_at for e in events)
    deliver(stage.end_of_input(input_end))
    for partition in range(PARTITIONS):
        records.extend(processor(partition).end_of_input(input_end))
    return records


def _counted(records: list) -> dict:
    """Every row that counts (pipeline.replay.standing), but ``identified_at`` of
    contacts and SLA events: these runs hand routed events to the processors
    directly, without the time of identification the worker's re-keyed records
    carry (test_identity_wiring.py covers it)."""
    rows = standing(collapse(records))
    for name in ("contact", "sla_event"):
        for row in rows[name].values():
            row.pop("identified_at")
    return rows


def test_a_stream_like_run_with_restarts_counts_identity_traffic_as_the_replay_does():
    events = _events()
    replayed = replay_events(events, SETTINGS, partitions=PARTITIONS)
    assert replayed.identity["unlinks"] >= 1 and replayed.identity["links"] > 20
    assert _counted(_stream_like(events)) == _counted(replayed.records)


def _rekeyed_late(events: list, lag: int) -> list:
    """The records identity routes (releases, unattributions) reach each customer
    partition ``lag * (PARTITIONS - p)`` input events after they were made, as the
    ``interactions-rekeyed`` topic delivers them: in order per partition, in no
    order across partitions; the other events go straight on."""
    stage = IdentityStage(IdentityRules.from_settings(SETTINGS.identity), PARTITIONS)
    processors = {p: PartitionProcessor.from_settings(SETTINGS, p) for p in range(PARTITIONS)}
    queues: dict[int, list] = {p: [] for p in range(PARTITIONS)}
    records: list = []

    def deliver(routed) -> None:
        target = processors[partition_for(routed.customer_key, PARTITIONS)]
        if isinstance(routed, CustomerEvent):
            apply = target.process_released if routed.released else target.process
            records.extend(apply(routed.event))
        else:
            records.extend(target.unattribute(routed.customer_key, routed.event_ids))

    def drain(until: int) -> None:
        for queue in queues.values():
            while queue and queue[0][0] <= until:
                deliver(queue.pop(0)[1])

    for index, event in enumerate(events):
        for routed in stage.process(event):
            if isinstance(routed, CustomerEvent) and not routed.released:
                deliver(routed)
            else:
                partition = partition_for(routed.customer_key, PARTITIONS)
                queues[partition].append((index + lag * (PARTITIONS - partition), routed))
        drain(index)
    input_end = max(e.occurred_at for e in events)
    for routed in stage.end_of_input(input_end):
        queues[partition_for(routed.customer_key, PARTITIONS)].append((0, routed))
    drain(len(events) + lag * PARTITIONS)
    for partition in range(PARTITIONS):
        records.extend(processors[partition].end_of_input(input_end))
    return records


def test_re_keyed_records_arriving_later_and_across_partitions_out_of_order_count_the_same():
    events = _events()
    replayed = replay_events(events, SETTINGS, partitions=PARTITIONS)
    assert replayed.reattribution["events_unattributed"] > 10  # unlinks are exercised
    expected = _counted(replayed.records)
    for lag in (3, 40):
        assert _counted(_rekeyed_late(events, lag)) == expected, lag
