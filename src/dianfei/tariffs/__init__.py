"""Tariffs (电价): versioned tariff files, the scalar reference rater and the columnar rater.

Public entry points live in ``dianfei.tariffs.service``. Importing this package does not import
Polars; ``rate_frame`` imports it when called.
"""
