"""Fixture plugins shared by every test folder (requested fixtures only start services)."""

pytest_plugins = ["tests.integration.postgres_fixtures"]
