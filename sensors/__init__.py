"""Sensors and schedules: source discovery and nightly re-ingestion."""

from sensors.nightly import nightly_reingest
from sensors.sources_sensor import sources_sensor

__all__ = ["nightly_reingest", "sources_sensor"]
