"""The wall document and the standalone ``cxstream wall`` server, on SQLite rows."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import create_engine, insert

from pipeline.cli import build_parser
from pipeline.settings_loader import build_settings
from pipeline.sink.store import SqlStore
from pipeline.wall import read_wall, wall_config
from pipeline.wall_queries import CONTACTS, SLA_EVENTS
from pipeline.wall_server import WallServer
from tests.unit.test_wall_queries import contact, sla_event

# Noon UTC today (14:00 in Helsinki): "today" and "this shift" of the wall are
# local, so figures placed up to 2 h before the wall's now stay in them whenever
# the tests run (at 00:08 in Helsinki, "today" was 8 minutes old).
MIDDAY = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)


def filled_store(tmp_path: Path, now: datetime) -> str:
    url = f"sqlite:///{tmp_path / 'wall.db'}"
    store = SqlStore(url)
    store.create_schema()
    store.dispose()
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(
            insert(CONTACTS),
            [
                # phone target 3 min: one within 5 min ago, one too slow 2 h ago (today
                # only: 12:00 UTC is 14:00 in Helsinki), one abandoned 10 min ago.
                contact("p1", "phone", now - timedelta(minutes=5), first_reply_seconds=60.0),
                contact("p2", "phone", now - timedelta(hours=2), first_reply_seconds=600.0),
                contact("p3", "phone", now - timedelta(minutes=10), outcome="abandoned"),
            ],
        )
        conn.execute(
            insert(SLA_EVENTS),
            [
                sla_event("p2", "breach", "phone", now - timedelta(hours=2)),  # before 15:00 shift
                sla_event("p4", "warning", "phone", now - timedelta(minutes=30)),
            ],
        )
    engine.dispose()
    return url


def test_the_wall_document_holds_every_figure_per_channel(tmp_path: Path) -> None:
    settings = build_settings({})
    url = filled_store(tmp_path, MIDDAY)
    engine = create_engine(url)
    doc = read_wall(engine, wall_config(settings), None, now=MIDDAY)
    engine.dispose()

    cards = {card["channel"]: card for card in doc["channels"]}
    assert [c["channel"] for c in doc["channels"]] == [
        "web_message",
        "branch",
        "phone",
        "chat",
        "web_meeting",
    ]
    phone = cards["phone"]
    assert phone["target_seconds"] == 180.0
    assert phone["recent"]["answered"] == 1 and phone["recent"]["abandoned"] == 1
    assert phone["recent"]["service_level"] == 0.5
    assert phone["recent"]["average_speed_of_answer"] == 60.0
    assert phone["recent"]["abandonment"] == 0.5
    assert doc["health"] == {"consumer_lag": None, "workers": None, "dead_letters_per_minute": None}
    assert phone["oldest_unanswered_seconds"] is None  # no worker serves it
    assert cards["branch"]["recent"]["service_level"] is None
    assert len(phone["trend_contacts"]) == 8


def test_the_standalone_server_serves_the_page_and_the_document(tmp_path: Path) -> None:
    settings = build_settings({})
    url = filled_store(tmp_path, datetime.now(UTC))
    engine = create_engine(url)
    server = WallServer(("127.0.0.1", 0), engine, wall_config(settings, lang="fi"), None)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        with urllib.request.urlopen(base + "/ops/wall", timeout=5) as response:
            page = response.read().decode()
        with urllib.request.urlopen(base + "/ops/wall.json", timeout=5) as response:
            doc = json.loads(response.read())
    finally:
        server.shutdown()
        server.server_close()
        engine.dispose()
    assert "<title>cxstream · ops wall</title>" in page
    assert "http://" not in page.replace('xmlns="http://', "")  # nothing from a CDN
    assert doc["lang"] == "fi"
    assert {c["channel"] for c in doc["channels"]} >= {"phone", "chat"}


def test_a_store_without_tables_answers_503(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'empty.db'}")
    server = WallServer(("127.0.0.1", 0), engine, wall_config(build_settings({})), None)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/ops/wall.json"
        try:
            urllib.request.urlopen(url, timeout=5)
            status = 200
        except urllib.error.HTTPError as exc:
            status = exc.code
    finally:
        server.shutdown()
        server.server_close()
        engine.dispose()
    assert status == 503


def test_the_wall_command_binds_loopback_by_default() -> None:
    args = build_parser().parse_args(["wall", "--db", "sqlite:///x.db"])
    # No --lang or --prometheus: ops.wall_language ("en") and ops.prometheus_url (none).
    assert (args.bind, args.port, args.lang, args.shifts, args.prometheus) == (
        "127.0.0.1",
        6070,
        None,
        "07:00,15:00,23:00",
        None,
    )


def test_dead_letters_per_minute_count_the_last_60_seconds_and_name_the_top_reason() -> None:
    from pipeline.contract.event import ms_to_iso
    from pipeline.wall_kafka import dead_letter_rate, lag_from_offsets

    now_ms = 1_772_440_000_000

    def letter(age_ms: int, stage: str, error: str) -> list[tuple[str, bytes | None]]:
        return [
            ("cx.dlq.time", ms_to_iso(now_ms - age_ms).encode()),
            ("cx.dlq.stage", stage.encode()),
            ("cx.dlq.error.class", error.encode()),
            ("other", b"x"),
        ]

    letters = [
        letter(1_000, "decode", "ContractError"),
        letter(59_000, "decode", "ContractError"),
        letter(30_000, "validate", "ValidationError"),
        letter(61_000, "validate", "ValidationError"),  # older than a minute
        letter(61_000, "validate", "ValidationError"),
        [("cx.dlq.stage", b"decode")],  # no stamp: not in a rate
    ]
    assert dead_letter_rate(letters, now_ms) == (3, "decode: ContractError")
    assert dead_letter_rate([], now_ms) == (0, None)
    # end minus committed per partition; a partition never committed counts whole.
    assert lag_from_offsets({0: 10, 1: 5, 2: 7}, {0: 4, 1: 5}) == 6 + 0 + 7


def test_queues_get_their_own_rows_when_the_schema_has_the_columns(tmp_path: Path) -> None:
    from sqlalchemy import inspect, text

    url = filled_store(tmp_path, MIDDAY)
    engine = create_engine(url)
    with engine.begin() as conn:
        # What migration 0005 adds (issue 17): the queue of a contact and of its SLA
        # events; added here by hand where the schema does not have it yet.
        for table in ("contacts", "sla_events"):
            if "queue" not in {c["name"] for c in inspect(conn).get_columns(table)}:
                conn.execute(text(f"ALTER TABLE {table} ADD COLUMN queue VARCHAR(64)"))
        conn.execute(text("UPDATE contacts SET queue = 'cards' WHERE contact_id IN ('p1', 'p3')"))
        conn.execute(text("UPDATE sla_events SET queue = 'loans'"))
    doc = read_wall(engine, wall_config(build_settings({})), None, now=MIDDAY)
    engine.dispose()

    rows = {row["name"]: row for row in doc["groups"]["queue"]}
    assert set(rows) == {"", "cards", "loans"}
    # cards: p1 answered in 60 s (target 180 s), p3 abandoned, both in the last 15 min.
    assert rows["cards"]["recent"]["service_level"] == 0.5
    assert rows["cards"]["breaches_today"] == 0
    assert rows["loans"]["recent"]["answered"] == 0


def test_cxstream_wall_serves_a_database_from_the_command_line(tmp_path: Path) -> None:
    import subprocess
    import sys

    url = filled_store(tmp_path, datetime.now(UTC))
    command = [sys.executable, "-m", "pipeline.cli", "wall", "--db", url, "--port", "0"]
    process = subprocess.Popen(
        [*command, "--no-kafka", "--lang", "fi"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()  # "wall serving url=http://127.0.0.1:PORT/ops/wall"
        assert line.startswith("wall serving url=http://127.0.0.1:"), line
        address = line.strip().split("url=", 1)[1]
        with urllib.request.urlopen(address + ".json", timeout=10) as response:
            doc = json.loads(response.read())
    finally:
        process.terminate()
        process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()
    assert doc["lang"] == "fi"
    assert doc["health"]["workers"] is None  # --no-kafka
    assert {c["channel"]: c for c in doc["channels"]}["phone"]["recent"]["answered"] == 1


def test_one_kafka_reading_serves_every_wall_for_two_seconds_and_failures_read_unknown(
    monkeypatch,
) -> None:
    from pipeline import wall_kafka
    from pipeline.settings import KafkaSettings

    calls: list[str] = []

    def read(kafka: KafkaSettings) -> wall_kafka.FleetFigures:
        calls.append(kafka.topic_prefix)
        if kafka.topic_prefix == "down":
            raise OSError("broker down")
        return wall_kafka.FleetFigures(5, 2, 0, None)

    monkeypatch.setattr(wall_kafka, "_read", read)
    monkeypatch.setattr(wall_kafka, "_cache", {})
    up = KafkaSettings(topic_prefix="up")
    assert wall_kafka.fleet_figures(up) == wall_kafka.FleetFigures(5, 2, 0, None)
    assert wall_kafka.fleet_figures(up) == wall_kafka.FleetFigures(5, 2, 0, None)
    assert calls == ["up"]
    down = KafkaSettings(topic_prefix="down")
    assert wall_kafka.fleet_figures(down) == wall_kafka.FleetFigures(None, None)
