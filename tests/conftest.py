"""Fixture plugins shared by every test folder (requested fixtures only start services)."""

from hypothesis import settings

pytest_plugins = ["tests.integration.postgres_fixtures"]

# No per-example deadline: the suite runs beside brokers and databases on two
# shared cores, where one example of a calendar property took 680 ms once. Speed
# is measured by the benchmark commands, not by timing unit tests.
settings.register_profile("cxstream", deadline=None)
settings.load_profile("cxstream")
