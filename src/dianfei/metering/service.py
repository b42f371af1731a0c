"""Entry points of the metering domain: storing register reads (billing, imports), reading them for
smart prepayment (collections), remote switching."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine

from dianfei.core.errors import ValidationError
from dianfei.db.bulk import write_frame
from dianfei.metering.registers import READ_SOURCES, REGISTERS

if TYPE_CHECKING:
    import polars as pl

READ_COLUMNS = ("meter_id", "read_at", "register", "value", "source")


def store_reads(conn: Connection, reads: pl.DataFrame) -> int:
    """Append register reads (values in 0.01 units, instants UTC) in the caller's transaction.

    Reads already stored for the same (meter, register, instant) are refused by the unique index;
    callers that may replay use the import path, which de-duplicates first.
    """
    import polars as pl

    missing = [c for c in READ_COLUMNS if c not in reads.columns]
    if missing:
        raise ValidationError(f"reads frame lacks columns: {', '.join(missing)}")
    bad = reads.filter(~pl.col("register").is_in(list(REGISTERS))
                       | ~pl.col("source").is_in(list(READ_SOURCES)))
    if bad.height:
        row = bad.row(0, named=True)
        raise ValidationError(
            f"read of meter {row['meter_id']} at {row['read_at']}: unknown register "
            f"{row['register']!r} or source {row['source']!r}")
    return write_frame(conn, "register_reads", reads.select(READ_COLUMNS))


# Remote switching (远程拉合闸) for collections' suspensions and reconnections: see metering.control
from dianfei.metering.control import CommandResult as CommandResult  # noqa: E402
from dianfei.metering.control import RemoteSwitch as RemoteSwitch  # noqa: E402
from dianfei.metering.control import remote_switch as remote_switch  # noqa: E402

# Register reads for smart prepayment (collections): the reads of the active meters of open
# accounts of one payment mode, set-based.


def reads_of_mode_between(engine: Engine, payment_mode: str, lo: datetime,
                          hi: datetime) -> pl.DataFrame:
    """meter_id, register, read_at, value of the reads of ``payment_mode`` accounts' active
    meters taken in (lo, hi]; reads the bill run estimated are left out (a cut-off follows the
    meter, never an estimate)."""
    from dianfei.metering import repository

    return repository.reads_of_mode_between(engine, payment_mode, lo, hi)


def reads_of_meters_between(engine: Engine, meter_ids: list[str], lo: datetime,
                            hi: datetime) -> pl.DataFrame:
    """:func:`reads_of_mode_between` of the meters ``meter_ids`` (the caller read them already)."""
    from dianfei.metering import repository

    return repository.reads_of_meters_between(engine, meter_ids, lo, hi)


def reads_at(engine: Engine, meter_ids: list[str], instants: list[datetime]) -> pl.DataFrame:
    """meter_id, register, read_at, value of the reads of ``meter_ids`` taken exactly at one of
    ``instants`` (opening reads of a set of meters)."""
    from dianfei.metering import repository

    return repository.reads_at(engine, meter_ids, instants)



# Estimated register reads for billing (估计读数): the last read + the intervals since, under the
# coverage rule of [vee] bill_estimate_max_share; see metering.estimated_reads
from dianfei.metering.estimated_reads import describe_basis as describe_basis  # noqa: E402
from dianfei.metering.estimated_reads import estimate_basis as estimate_basis  # noqa: E402
from dianfei.metering.estimated_reads import (  # noqa: E402
    estimate_register_reads as estimate_register_reads,
)
from dianfei.metering.estimated_reads import store_estimated_reads as store_estimated_reads  # noqa: E402


def account_reads(engine: Engine, account_id: str, since: datetime) -> pl.DataFrame:
    """meter_id, register, read_at, value (0.01 units), source of the reads since ``since`` of
    every meter the account has had, oldest first (an account's timeline)."""
    from dianfei.metering import repository

    return repository.account_reads(engine, account_id, since)


# The file-import machinery (CSV/GBK/Parquet streaming, column parsing with reasons, quarantine,
# ``FILE.rejected.csv``, batches): billing's bills and payments' payments history imports use it
# with their own loaders, so every import keeps the same guarantees.
from dianfei.metering.imports import as_text as as_text  # noqa: E402
from dianfei.metering.imports import flag_date as flag_date  # noqa: E402
from dianfei.metering.imports import import_table_file as import_table_file  # noqa: E402
from dianfei.metering.imports import rejected_path as rejected_path  # noqa: E402
from dianfei.metering.imports import same_fields as same_fields  # noqa: E402
from dianfei.metering.ingest import LINE as LINE  # noqa: E402
from dianfei.metering.ingest import RAW as RAW  # noqa: E402
from dianfei.metering.ingest import Counts as Counts  # noqa: E402
from dianfei.metering.ingest import IngestResult as IngestResult  # noqa: E402
from dianfei.metering.ingest import RejectSink as RejectSink  # noqa: E402
from dianfei.metering.ingest import rejected_columns as rejected_columns  # noqa: E402
from dianfei.metering.parsing import DETAIL as DETAIL  # noqa: E402
from dianfei.metering.parsing import REASON as REASON  # noqa: E402
from dianfei.metering.parsing import flag as flag  # noqa: E402
from dianfei.metering.parsing import parse_decimal_units as parse_decimal_units  # noqa: E402
from dianfei.metering.parsing import parse_instants as parse_instants  # noqa: E402
from dianfei.metering.parsing import quoted as quoted  # noqa: E402
from dianfei.metering.parsing import require_text as require_text  # noqa: E402
from dianfei.metering.parsing import start_reasons as start_reasons  # noqa: E402

# Supply stations' metered supply per month (台区供电量, ``dianfei import stations``): what risk's
# station line-loss signal compares with the station's customers' billed energy
from dianfei.metering.stations import import_stations as import_stations  # noqa: E402
from dianfei.metering.stations import station_supply as station_supply  # noqa: E402
