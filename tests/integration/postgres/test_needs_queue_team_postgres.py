"""Migrations 0004-0006 on a real PostgreSQL (issue 15): needs, bounce signals and
the stats per queue and team, written by the sink and read back."""

from __future__ import annotations

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, text

from pipeline.replay import replay_events
from pipeline.replay_sql import write_records_to_sql
from pipeline.settings_loader import build_settings
from pipeline.sink.migrate import alembic_config
from pipeline.tools.simulator import SimulatorConfig, generate
from tests.unit.test_service_level_metrics import _tagged
from tests.unit.test_sink_queue_team_stats import COUNTERS, ROLL_UP

pytestmark = [pytest.mark.integration, pytest.mark.postgres]

# Slow arrivals over days, weighted towards needs that bounce between channels.
SIM = SimulatorConfig(customers=60, count=1500, seed=15, arrival_rate_per_hour=60)


def test_a_fresh_postgres_migrated_to_head_stores_needs_bounces_and_queue_team_stats(
    pg_database_url: str,
) -> None:
    settings = build_settings({"sql": {"url": pg_database_url}})
    events = [_tagged(item.event) for item in generate(SIM) if item.event is not None]
    # write_records_to_sql migrates the empty database to head first.
    write_records_to_sql(replay_events(events, settings, partitions=2).records, settings)
    engine = create_engine(pg_database_url)
    try:
        with engine.connect() as db:
            head = db.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
            need = db.execute(
                text(
                    "SELECT n.need_id, n.first_contact_id, n.contacts, n.channel_path,"
                    " v.queue, v.team, c.queue, c.team FROM needs n"
                    " JOIN need_queue_team v ON v.need_id = n.need_id"
                    " JOIN contacts c ON c.contact_id = n.first_contact_id"
                    " WHERE n.status = 'final' ORDER BY n.contacts DESC, n.need_id LIMIT 1"
                )
            ).one()
            bounce = db.execute(
                text(
                    "SELECT b.signal_id, b.from_channel, b.to_channel, n.bounced"
                    " FROM bounce_signals b JOIN needs n ON n.customer_id = b.customer_id"
                    " AND n.bounced ORDER BY b.signal_id LIMIT 1"
                )
            ).one()
            stats = db.execute(
                text(
                    "SELECT bucket_start, channel, queue, team, contacts_started"
                    " FROM queue_team_stats WHERE bucket_size = 'hour' AND queue IS NOT NULL"
                    " AND team IS NOT NULL ORDER BY contacts_started DESC, bucket_start LIMIT 1"
                )
            ).one()
            rolled_up = {tuple(row) for row in db.execute(text(ROLL_UP))}
            channel_stats = {
                tuple(row)
                for row in db.execute(
                    text(
                        "SELECT bucket_size, bucket_start, channel, "
                        + ", ".join(COUNTERS)
                        + " FROM channel_stats WHERE "
                        + " OR ".join(f"{name} <> 0" for name in COUNTERS)
                    )
                )
            }
    finally:
        engine.dispose()
    # The newest migration, whichever that is now (0004-0006 are the ones this
    # test reads; later ones must keep them working).
    assert head == ScriptDirectory.from_config(alembic_config()).get_current_head()
    _, first_contact, contacts, path, queue, team, contact_queue, contact_team = need
    assert first_contact is not None and contacts >= 2 and ">" in path
    assert (queue, team) == (contact_queue, contact_team)
    assert bounce[3] is True and bounce[1] and bounce[2]
    assert stats[4] > 0 and isinstance(stats[4], int)

    def rounded(rows: set[tuple]) -> set[tuple]:
        return {tuple(round(v, 6) if isinstance(v, float) else v for v in r) for r in rows}

    assert len(rolled_up) > 20
    assert rounded(rolled_up) == rounded(channel_stats)
