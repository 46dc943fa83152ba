"""The collector's tests run against a real PostgreSQL (tests/postgres.py) and Mosquitto."""

from postgres import pg_dsn_fixture, pg_server

__all__ = ["pg_dsn_fixture", "pg_server"]
