"""Sensors and schedules: source discovery, nightly re-ingestion, SQL warehouse refresh."""

from sensors.nightly import nightly_reingest
from sensors.sources_sensor import sources_sensor
from sensors.sql_refresh import sql_refresh_sensor

__all__ = ["nightly_reingest", "sources_sensor", "sql_refresh_sensor"]
