"""The Faust applications of cxstream.

Two roles, two consumer groups, two processes:

* ``process`` (``cxstream worker``): the stream core. The app hosts the batch
  loop of ``pipeline/runtime`` (agents/process.py), which consumes the input
  topic in the group ``cxstream-<prefix>-process``, keeps per-customer state in
  a compacted changelog topic, and emits sessions, contact summaries, SLA
  events and journey signals. The app itself is ``...-process-host``.
* ``sink`` (``cxstream sink``): consumes the output topics and upserts them into
  SQL in batches.

They are separate groups because they scale and fail independently: a database
outage pauses the sink while the stream core keeps alerting.
"""

from __future__ import annotations

from pathlib import Path

import faust
import mode

from agents.faust_consumer import use_worker_consumer
from pipeline.kafka_clients import faust_broker_credentials
from pipeline.settings import Settings


def build_app(
    settings: Settings, *, role: str, web_port: int | None = None, web_enabled: bool = True
) -> faust.App:
    """A configured, agent-less Faust app; agents are registered by the role modules."""
    kafka = settings.kafka
    worker = settings.worker
    # The process role's records are read by its loop's own consumer, in the
    # group cxstream-<prefix>-process; the app must not join that group.
    app_id = f"cxstream-{kafka.topic_prefix}-{role}" + ("-host" if role == "process" else "")
    faust_dirs = Path("var") / "faust"
    faust_dirs.mkdir(parents=True, exist_ok=True)  # Faust makes only the last level
    app = faust.App(
        app_id,
        # Faust's own directory (it makes one even for in-memory tables): under
        # var/ with the other local state, not "<app id>-data" in the current
        # directory, where every test run and benchmark left one behind.
        datadir=str(faust_dirs / app_id),
        broker=f"kafka://{kafka.bootstrap.replace(',', ';kafka://')}",
        # SASL/SCRAM and TLS for every client Faust opens (consumer, producer, admin).
        broker_credentials=faust_broker_credentials(kafka),
        # Tables live in memory and are rebuilt from their changelog topics on
        # start; rocksdb would need the current event to pick a partition DB,
        # which the wall-clock timer does not have.
        store="memory://",
        topic_partitions=kafka.input_partitions,
        topic_replication_factor=kafka.replication_factor,
        # Outputs are not attached to offsets: the agent awaits their delivery
        # itself before it writes state (see pipeline/streaming.py).
        processing_guarantee="at_least_once",
        broker_commit_every=1000,
        broker_commit_interval=1.0,
        table_standby_replicas=0,
        # A crashed agent crashes the worker instead of being restarted: a
        # restarted agent waits for a stream core that is gone and the worker
        # stays up consuming nothing (agents/crash_exit.py, robinhood/faust#301).
        agent_supervisor=mode.CrashingSupervisor,
        # Failover (docs/ops.md, "Failover"): the group notices a dead worker
        # after the session timeout (6 s by default, the broker's minimum;
        # Faust's 60 s made a takeover take 62-73 s) and the survivors hear of
        # the rebalance at their next heartbeat. The rebalance timeout is how
        # long the coordinator waits for members to rejoin; a member killed
        # *during* a rebalance is dropped only after it, so it gets the session
        # timeout too (Faust's 60 s would stall such a takeover for a minute).
        # A live member rejoins as soon as its revocation handler returned,
        # which waits for at most two batches in flight.
        broker_session_timeout=worker.session_timeout_seconds,
        broker_heartbeat_interval=worker.heartbeat_interval_seconds,
        broker_rebalance_timeout=worker.session_timeout_seconds,
        web_enabled=web_enabled,
        web_port=web_port if web_port is not None else worker.web_port,
        web_bind=worker.web_bind,
        web_in_thread=False,
        # Read-only pages only: Faust's built-in views are off. /router and
        # /table expose the cluster's topology and the table's data (the state
        # of every customer); the stats, graph and performance views show
        # internals. Only "/" (Faust's plain {"status": "OK"}) and our own
        # pages (/metrics, /healthz, /ops) remain, all GET.
        web_router_enabled=False,
        web_tables_enabled=False,
        web_stats_enabled=False,
        web_graph_enabled=False,
        web_metrics_enabled=False,
        producer_acks=-1,
        producer_linger_ms=5,
        consumer_auto_offset_reset="earliest",
        stream_wait_empty=False,
    )
    # Resumed partitions are fetched at once, not after Faust's 1.5 s long-poll
    # (up to 3 s of every takeover), and a commit that failed in a rebalance is
    # not taken for done (agents/faust_consumer.py).
    use_worker_consumer(app)
    return app
