"""Shared fixtures of the integration tests: one real Kafka broker per session.

- ``kafka_bootstrap`` (session): the broker's bootstrap string. Uses the broker named
  by ``CXSTREAM_TEST_BOOTSTRAP`` when set; otherwise starts a local KRaft broker
  (``pipeline.tools.broker.LocalKafka``) for the session and stops it at the end.
- ``unique_prefix`` (function): a fresh topic prefix, so tests never share topics.
- ``kafka_settings`` (function): ``KafkaSettings`` pointing at that broker and prefix.
- ``make_topics`` (function): factory that creates topics under that prefix.

Every test collected below this folder is marked ``integration``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from uuid import uuid4

import pytest

from pipeline.settings import KafkaSettings
from pipeline.tools.broker import LocalKafka
from pipeline.topics import TopicSpec, ensure_topics, project_topics

BOOTSTRAP_ENV = "CXSTREAM_TEST_BOOTSTRAP"
# Test topics are thrown away with the broker; an hour is plenty.
TEST_RETENTION_MS = 3600 * 1000

MakeTopics = Callable[..., list[str]]


def pytest_configure(config: pytest.Config) -> None:
    # kafka-python 3.0.12 reads its protocol schemas with the deprecated
    # importlib.resources.read_text/open_text; with warnings as errors, importing
    # its admin client would fail. Narrowed to exactly those two messages.
    config.addinivalue_line(
        "filterwarnings", "ignore:(read_text|open_text) is deprecated:DeprecationWarning"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = config.rootpath / "tests" / "integration"
    for item in items:
        if item.path.is_relative_to(here):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Bootstrap servers of the session's Kafka broker (``"127.0.0.1:PORT"``)."""
    external = os.environ.get(BOOTSTRAP_ENV)
    if external:
        yield external
        return
    kafka = LocalKafka(tmp_path_factory.mktemp("kafka"))
    try:
        yield kafka.start()
    finally:
        kafka.stop()


@pytest.fixture
def unique_prefix() -> str:
    """A topic prefix no other test uses, e.g. ``t3f9a0c12de``."""
    return f"t{uuid4().hex[:10]}"


@pytest.fixture
def kafka_settings(kafka_bootstrap: str, unique_prefix: str) -> KafkaSettings:
    """Kafka settings for the session broker with this test's ``unique_prefix``."""
    return KafkaSettings(bootstrap=kafka_bootstrap, topic_prefix=unique_prefix)


@pytest.fixture
def make_topics(kafka_bootstrap: str, kafka_settings: KafkaSettings) -> Iterator[MakeTopics]:
    """Factory ``make_topics(*suffixes, partitions=None) -> list[str]``.

    - ``make_topics("in", "out", partitions=6)`` creates ``<unique_prefix>.in`` and
      ``<unique_prefix>.out`` with 6 partitions each (``partitions`` defaults to 1)
      and returns their full names in the order given.
    - ``make_topics()`` with no suffixes creates every project topic
      (``pipeline.topics.project_topics``) for ``kafka_settings``, so a worker built
      from those settings finds all its topics; ``partitions`` then overrides every
      topic's partition count, and ``None`` keeps the project's counts.

    Topics exist with a leader per partition when it returns. They are deleted when
    the test ends (best effort: a failed delete does not fail the test).
    """
    created: list[str] = []

    def make(*suffixes: str, partitions: int | None = None) -> list[str]:
        if suffixes:
            count = 1 if partitions is None else partitions
            specs = {
                kafka_settings.topic(suffix): TopicSpec(count, TEST_RETENTION_MS)
                for suffix in suffixes
            }
        else:
            specs = dict(project_topics(kafka_settings))
            if partitions is not None:
                specs = {
                    name: TopicSpec(partitions, spec.retention_ms, spec.cleanup_policy)
                    for name, spec in specs.items()
                }
        created.extend(ensure_topics(kafka_settings, specs))
        return list(specs)

    yield make
    if created:
        _delete_topics(kafka_bootstrap, created)


def _delete_topics(bootstrap: str, names: list[str]) -> None:
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    # Leftover topics only cost the session broker some memory; never fail a test here.
    with contextlib.suppress(KafkaError, OSError):
        admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="cxstream-test-cleanup")
        try:
            admin.delete_topics(names, timeout_ms=10_000, raise_errors=False)
        finally:
            admin.close()
