"""Dashboards and rules query only what exists.

Every PromQL expression (Grafana panels, template variables, recording and alert
rules) may name only series that ``pipeline.metrics.Metrics`` exports or a recording
rule records; every SQL panel may name only tables and columns of the SQL sink's
SQLAlchemy metadata. A renamed metric or column then breaks a test, not a dashboard.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from pipeline.metrics import Metrics, exported_names
from pipeline.sink.models import Base

REPO = Path(__file__).resolve().parents[2]
DASHBOARDS = sorted((REPO / "deploy" / "grafana" / "dashboards").glob("*.json"))
RULE_FILES = sorted((REPO / "deploy" / "prometheus" / "rules").glob("*.yml"))

# Series Prometheus makes itself for every target.
PROMETHEUS_BUILTINS = frozenset({"up", "scrape_duration_seconds", "scrape_samples_scraped"})
PROMQL_KEYWORDS = frozenset(
    {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right"}
    | {"offset", "bool", "inf", "nan", "Inf", "NaN"}
)
SQL_WORDS = frozenset(
    [
        "select",
        "from",
        "where",
        "group",
        "by",
        "order",
        "having",
        "limit",
        "as",
        "and",
        "or",
        "not",
        "null",
        "is",
        "in",
        "asc",
        "desc",
        "sum",
        "count",
        "avg",
        "min",
        "max",
        "nullif",
        "round",
        "coalesce",
        "filter",
        "case",
        "when",
        "then",
        "else",
        "end",
        "distinct",
        "float",
        "numeric",
        "int",
        "bigint",
        "true",
        "false",
        "join",
        "left",
        "inner",
        "on",
        "interval",
    ]
)


def promql_metric_names(expr: str) -> set[str]:
    """Series names a PromQL expression reads (functions, labels, keywords removed)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"\$\{?\w+\}?", " ", text)
    names = set()
    for match in re.finditer(r"(?<![\w.])[a-zA-Z_:][a-zA-Z0-9_:]*", text):
        word = match.group(0)
        if text[match.end() :].lstrip().startswith("(") or word in PROMQL_KEYWORDS:
            continue
        names.add(word)
    return names


def sql_tables(sql: str) -> set[str]:
    return set(re.findall(r"\b(?:from|join)\s+([a-z_][a-z0-9_]*)", sql, flags=re.IGNORECASE))


def sql_identifiers(sql: str) -> set[str]:
    """Bare identifiers of a query: neither SQL words, literals, aliases nor macros."""
    text = re.sub(r"'[^']*'", " ", sql)
    text = re.sub(r"\$__\w+", " ", text)
    aliases = set(re.findall(r"\bas\s+([a-z_][a-z0-9_]*)", text, flags=re.IGNORECASE))
    words = set(re.findall(r"(?<![\w.])[a-zA-Z_][a-zA-Z0-9_]*", text))
    return {w for w in words if w.lower() not in SQL_WORDS and w not in aliases}


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def dashboard_targets(kind: str) -> list[tuple[str, str, dict[str, Any]]]:
    found = []
    for path in DASHBOARDS:
        dashboard = json.loads(path.read_text(encoding="utf-8"))
        for panel in panels(dashboard):
            for target in panel.get("targets", []):
                if target["datasource"]["type"] == kind:
                    found.append((path.name, panel["title"], target))
    return found


def rule_expressions() -> list[tuple[str, str]]:
    return [
        (rule.get("record") or rule["alert"], rule["expr"])
        for path in RULE_FILES
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]
        for rule in group["rules"]
    ]


@pytest.fixture(scope="module")
def known_series() -> frozenset[str]:
    recorded = {
        rule["record"]
        for path in RULE_FILES
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]
        for rule in group["rules"]
        if "record" in rule
    }
    return exported_names_of_metrics() | recorded


def exported_names_of_metrics() -> frozenset[str]:
    registry = CollectorRegistry()
    Metrics(registry)
    return exported_names(registry)


def test_metric_name_extraction_skips_functions_labels_and_keywords() -> None:
    expr = (
        'label_replace(sum by (channel, le) (rate(a_total{x="b_total"}[5m])) > 3 * '
        'b:rec:rate5m offset 1h and on (job) up, "c", "$1", "d", "(.*)") > 1e3'
    )
    assert promql_metric_names(expr) == {"a_total", "b:rec:rate5m", "up"}


def test_sql_identifier_extraction_drops_words_literals_aliases_and_macros() -> None:
    sql = (
        "SELECT $__timeGroupAlias(fired_at, '1h'), channel AS metric, COUNT(*) AS value "
        "FROM sla_events WHERE kind = 'breach' AND $__timeFilter(fired_at) GROUP BY 1, 2"
    )
    assert (sql_tables(sql), sql_identifiers(sql)) == (
        {"sla_events"},
        {"fired_at", "channel", "sla_events", "kind"},
    )


def test_both_dashboards_are_present_with_queries() -> None:
    titles = sorted(json.loads(p.read_text(encoding="utf-8"))["title"] for p in DASHBOARDS)
    assert titles == ["cxstream — CX trends", "cxstream — live operations"]
    assert len(dashboard_targets("prometheus")) >= 20
    assert len(dashboard_targets("grafana-postgresql-datasource")) >= 10


def test_every_promql_panel_names_only_exported_or_recorded_series(
    known_series: frozenset[str],
) -> None:
    unknown = {
        (name, title, series)
        for name, title, target in dashboard_targets("prometheus")
        for series in promql_metric_names(target["expr"])
        if series not in known_series | PROMETHEUS_BUILTINS
    }
    assert unknown == set()


def test_template_variables_query_exported_series(known_series: frozenset[str]) -> None:
    queries = [
        variable["definition"]
        for path in DASHBOARDS
        for variable in json.loads(path.read_text(encoding="utf-8"))["templating"]["list"]
        if variable["type"] == "query"
    ]
    # label_values(<series>, <label>): the first argument is the series.
    names = {n for q in queries for n in re.findall(r"label_values\((\w+)\s*,", q)}
    assert queries != []
    assert (len(names), names - known_series) == (len(queries), set())


def test_every_rule_expression_names_only_exported_or_recorded_series(
    known_series: frozenset[str],
) -> None:
    unknown = {
        (rule, series)
        for rule, expr in rule_expressions()
        for series in promql_metric_names(expr)
        if series not in known_series | PROMETHEUS_BUILTINS
    }
    assert unknown == set()


def test_every_sql_panel_reads_only_sink_tables_and_columns() -> None:
    tables = Base.metadata.tables
    problems = []
    for name, title, target in dashboard_targets("grafana-postgresql-datasource"):
        sql = target["rawSql"]
        used_tables = sql_tables(sql)
        missing = used_tables - set(tables)
        columns = {c.name for t in used_tables & set(tables) for c in tables[t].columns}
        unknown = sql_identifiers(sql) - columns - used_tables
        if missing or unknown or not used_tables:
            problems.append((name, title, sorted(missing), sorted(unknown)))
    assert problems == []


def test_panels_use_the_provisioned_datasource_uids() -> None:
    provisioned = yaml.safe_load(
        (REPO / "deploy/grafana/provisioning/datasources/cxstream.yml").read_text(encoding="utf-8")
    )
    uids = {(d["type"], d["uid"]) for d in provisioned["datasources"]}
    used = {
        (panel["datasource"]["type"], panel["datasource"]["uid"])
        for path in DASHBOARDS
        for panel in panels(json.loads(path.read_text(encoding="utf-8")))
        if "datasource" in panel
    }
    assert used == uids


def test_panel_ids_are_unique_per_dashboard() -> None:
    duplicated = []
    for path in DASHBOARDS:
        ids = [p["id"] for p in panels(json.loads(path.read_text(encoding="utf-8")))]
        duplicated += [(path.name, i) for i in set(ids) if ids.count(i) > 1]
    assert duplicated == []


def test_every_alert_links_an_existing_runbook_section() -> None:
    headings = re.findall(
        r"^#{2,4} (.+)$", (REPO / "docs/ops.md").read_text(encoding="utf-8"), re.M
    )
    anchors = {re.sub(r"[^a-z0-9 -]", "", h.lower()).replace(" ", "-") for h in headings}
    alerts = [
        rule
        for path in RULE_FILES
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]
        for rule in group["rules"]
        if "alert" in rule
    ]
    broken = [
        rule["alert"]
        for rule in alerts
        if rule["annotations"]["runbook_url"] != f"docs/ops.md#{rule['alert'].lower()}"
        or rule["alert"].lower() not in anchors
        or not {"summary", "description"} <= set(rule["annotations"])
    ]
    assert (len(alerts), broken) == (10, [])


def _panel(dashboard: str, title: str) -> dict[str, Any]:
    for path in DASHBOARDS:
        if path.name == dashboard:
            for panel in panels(json.loads(path.read_text(encoding="utf-8"))):
                if panel["title"] == title:
                    return panel
    raise AssertionError(f"{dashboard} has no panel {title!r}")


def _runnable(sql: str) -> str:
    """A panel's SQL without Grafana's time filter (every row is in range)."""
    return re.sub(r"\$__timeFilter\(\w+\)", "1 = 1", sql)


def test_the_live_dashboard_shows_service_level_and_bounce_share_from_the_recording_rules() -> None:
    expressions = {
        title: _panel("cxstream-live.json", title)["targets"][0]["expr"]
        for title in (
            "Service level (1h), by channel",
            "Service level (1h) per channel, queue and team",
            "Need bounce share (1h), by first channel",
        )
    }
    assert [promql_metric_names(expr) for expr in expressions.values()] == [
        {"channel:cxstream_sla_service_level:ratio1h"},
        {"channel_queue_team:cxstream_sla_service_level:ratio1h"},
        {"first_channel:cxstream_needs_bounce_share:ratio1h"},
    ]


def test_the_trends_service_level_panel_gives_the_figures_of_the_service_level_view(
    tmp_path: Path,
) -> None:
    import sqlite3

    from pipeline.replay import replay_events
    from pipeline.replay_sql import write_records_to_sql
    from pipeline.settings_loader import build_settings
    from tests.unit.test_service_level import CHAT_60S, _events

    database = tmp_path / "cx.db"
    settings = build_settings({**CHAT_60S, "sql": {"url": f"sqlite:///{database}"}})
    write_records_to_sql(replay_events(_events(), settings, partitions=2).records, settings)
    sql = _panel(
        "cxstream-trends.json", "Service level per channel, queue and team (selected range)"
    )
    bounce = [
        _panel("cxstream-trends.json", f"Need bounce rate by {by} (selected range)")
        for by in ("first channel", "topic")
    ]
    with sqlite3.connect(database) as db:
        shown = db.execute(_runnable(sql["targets"][0]["rawSql"])).fetchall()
        view = db.execute(
            "SELECT channel, queue, team, answered_within_target, answered, abandoned,"
            " service_level FROM service_level"
        ).fetchall()
        for panel in bounce:  # no needs in this traffic: the queries run, empty
            assert db.execute(_runnable(panel["targets"][0]["rawSql"])).fetchall() == []
    assert sorted(shown) == sorted(view)
    assert len(shown) == 4
