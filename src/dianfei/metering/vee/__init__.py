"""Validation, estimation and editing (VEE) of meter data."""
