"""Sensors and schedules: source discovery, nightly re-ingestion, SQL warehouse refresh, re-evaluation."""

from sensors.evaluation_automation import evaluation_sensor
from sensors.nightly import nightly_reingest
from sensors.sources_sensor import sources_sensor
from sensors.sql_refresh import sql_refresh_sensor

__all__ = ["evaluation_sensor", "nightly_reingest", "sources_sensor", "sql_refresh_sensor"]
