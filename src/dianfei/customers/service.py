"""Entry points of the customers domain: loading a population, looking customers up."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import Connection, func, select

from dianfei.core.crypto import PiiCipher
from dianfei.core.errors import ValidationError
from dianfei.customers.models import CUSTOMER_CLASSES, PAYMENT_MODES, Customer
from dianfei.db.bulk import write_frame

if TYPE_CHECKING:
    import polars as pl

CUSTOMER_COLUMNS = (
    "customer_id", "name", "customer_class", "region_id", "station_id", "collector_id",
    "address", "phone", "id_number", "tariff_id", "low_income", "protected", "payment_mode",
    "opened_on",
)
METER_COLUMNS = ("meter_id", "customer_id", "multiplier", "digits", "installed_on")


def count_customers(conn: Connection) -> int:
    return int(conn.execute(select(func.count()).select_from(Customer)).scalar_one())


def load_population(
    conn: Connection,
    cipher: PiiCipher,
    *,
    regions: pl.DataFrame,
    stations: pl.DataFrame,
    collectors: pl.DataFrame,
    customers: pl.DataFrame,
    meters: pl.DataFrame,
) -> int:
    """Store a whole population (regions → stations → collectors → customers → accounts →
    service points → meters → tariff assignments) in the caller's transaction.

    One account and one service point per customer, with the customer's id: the common case in a
    county branch. Phone and ID numbers are encrypted before they reach the database.
    """
    import polars as pl

    missing = [c for c in CUSTOMER_COLUMNS if c not in customers.columns]
    if missing:
        raise ValidationError(f"customers frame lacks columns: {', '.join(missing)}")
    bad_class = customers.filter(~pl.col("customer_class").is_in(list(CUSTOMER_CLASSES)))
    if bad_class.height:
        raise ValidationError(
            f"customer {bad_class['customer_id'][0]}: unknown customer_class "
            f"{bad_class['customer_class'][0]!r} (expected one of {', '.join(CUSTOMER_CLASSES)})"
        )
    bad_mode = customers.filter(~pl.col("payment_mode").is_in(list(PAYMENT_MODES)))
    if bad_mode.height:
        raise ValidationError(f"customer {bad_mode['customer_id'][0]}: unknown payment_mode")

    write_frame(conn, "regions", regions.select("region_id", "name"))
    write_frame(conn, "supply_stations", stations.select("station_id", "region_id", "name"))
    write_frame(conn, "collectors", collectors.select("collector_id", "name", "station_id"))
    enc = customers.with_columns(
        pl.Series("phone_enc", [cipher.encrypt(p) for p in customers["phone"].to_list()],
                  dtype=pl.String),
        pl.Series("id_number_enc",
                  [cipher.encrypt(p) for p in customers["id_number"].to_list()],
                  dtype=pl.String),
    )
    write_frame(conn, "customers", enc.select(
        "customer_id", "name", "customer_class", "region_id", "station_id", "collector_id",
        "address", "phone_enc", "id_number_enc", "low_income", "protected", "payment_mode",
        "opened_on",
    ))
    write_frame(conn, "accounts", customers.select(
        pl.col("customer_id").alias("account_id"), "customer_id", "opened_on"))
    sp_cols = [pl.col("customer_id").alias("service_point_id"),
               pl.col("customer_id").alias("account_id"), "address"]
    sp_cols.append(pl.col("capacity_kva") if "capacity_kva" in customers.columns
                   else pl.lit(None, pl.Int64).alias("capacity_kva"))
    sp_cols.append(pl.col("demand_basis") if "demand_basis" in customers.columns
                   else pl.lit(None, pl.String).alias("demand_basis"))
    write_frame(conn, "service_points", customers.select(sp_cols))
    meter_cols = [
        "meter_id",
        pl.col("customer_id").alias("service_point_id"),
        pl.col("customer_id").alias("account_id"),
        pl.col("comm_address") if "comm_address" in meters.columns
        else pl.lit(None, pl.String).alias("comm_address"),
        "multiplier", "digits",
        pl.col("registers") if "registers" in meters.columns else pl.lit("total").alias("registers"),
        "installed_on",
    ]
    unknown = meters.join(customers.select("customer_id"), on="customer_id", how="anti")
    if unknown.height:
        raise ValidationError(
            f"meter {unknown['meter_id'][0]}: unknown customer {unknown['customer_id'][0]}")
    write_frame(conn, "meters", meters.select(meter_cols))
    write_frame(conn, "tariff_assignments", customers.select(
        pl.col("customer_id").alias("account_id"), "tariff_id",
        pl.col("opened_on").alias("effective_from")))
    return customers.height
