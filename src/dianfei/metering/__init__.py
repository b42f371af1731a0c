"""Meter data: register reads (and later intervals, VEE, DL/T 645, MQTT)."""
