"""Queries on risk's own tables (risk_models, risk_warnings); all of its SQL lives here."""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, text

from dianfei.db.frames import read_frame

if TYPE_CHECKING:
    import polars as pl


def add_model(conn: Connection, row: dict[str, Any]) -> None:
    from sqlalchemy import insert

    from dianfei.risk.models import RiskModel

    conn.execute(insert(RiskModel).values(**row))


def models(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT version, kind, trained_at, cutoff, window_from, n_train, n_valid, features, "
            "metrics, auc, path FROM risk_models ORDER BY trained_at DESC, version DESC")).mappings()
        return [dict(r) for r in rows]


def count_models(conn: Connection, prefix: str) -> int:
    return int(conn.execute(text("SELECT COUNT(*) FROM risk_models WHERE version LIKE :p"),
                            {"p": prefix + "%"}).scalar_one())


def replace_warnings(conn: Connection, day: date, frame: pl.DataFrame) -> None:
    from dianfei.db.bulk import write_frame

    conn.execute(text("DELETE FROM risk_warnings WHERE day = :d"), {"d": day})
    if frame.height:
        write_frame(conn, "risk_warnings", frame)


def warnings(engine: Engine, day: date) -> pl.DataFrame:
    import polars as pl

    return read_frame(
        engine, "SELECT day, account_id, kind, probability, previous, band, scorer, model_version, "
        "reasons_zh, reasons_en FROM risk_warnings WHERE day = :d ORDER BY probability DESC, account_id",
        {"d": day}, dates=("day",),
        schema={"account_id": pl.String, "kind": pl.String, "probability": pl.Float64,
                "previous": pl.Float64, "band": pl.String, "scorer": pl.String,
                "model_version": pl.String, "reasons_zh": pl.String, "reasons_en": pl.String})
